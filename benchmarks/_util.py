"""Shared by the benchmarks: timing, child-process CPU and peak memory, isolated local state, JSON output.

Not a benchmark itself (run_all.py skips files starting with "_").
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class Clock:
    """Wall and CPU seconds of a block: this process, plus children it waited for (subprocess steps)."""

    def __enter__(self):
        self._wall, self._cpu, self._children = time.perf_counter(), time.process_time(), children_cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.self_cpu = time.process_time() - self._cpu
        self.children_cpu = children_cpu() - self._children
        self.cpu = self.self_cpu + self.children_cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_with_rusage(command: list[str], env: dict | None = None, cwd: str | None = None) -> dict:
    """Run a command; wall, CPU (user+sys of its whole waited-for tree) and max RSS from wait4."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=False
    )
    # Drain output in threads so a chatty child cannot block on a full pipe while we sit in wait4.
    import threading

    chunks: dict[str, list[str]] = {"out": [], "err": []}
    readers = [
        threading.Thread(target=lambda s=stream, k=key: chunks[k].append(s.read()), daemon=True)
        for stream, key in ((process.stdout, "out"), (process.stderr, "err"))
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    for reader in readers:
        reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "max_rss_mib": usage.ru_maxrss / 1024,
        "returncode": process.returncode,
        "stdout": "".join(chunks["out"]),
        "stderr": "".join(chunks["err"]),
    }


def machine_busy_cpu() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@contextmanager
def isolated_state(prefix: str, keep: bool = False):
    """A fresh BIODIV_HOME / DAGSTER_HOME / MLflow store for this process and the steps it starts."""
    base = Path(tempfile.mkdtemp(prefix=f"biodiv-bench-{prefix}-"))
    saved = {k: os.environ.get(k) for k in ("BIODIV_HOME", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", "BIODIV_DATA_ROOT")}
    os.environ["BIODIV_HOME"] = str(base / "home")
    os.environ["DAGSTER_HOME"] = str(base / "home" / "dagster")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'home' / 'mlflow.db'}"
    os.environ.pop("BIODIV_DATA_ROOT", None)
    (base / "home" / "dagster").mkdir(parents=True)
    try:
        yield base
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not keep:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


def machine() -> dict:
    """What the figures were measured on (the README quotes it)."""
    from biodiv_core.threads import available_cores

    info = {"cores": available_cores(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except (OSError, ValueError):
        pass
    return info


def emit(result: dict, as_json: bool) -> dict:
    if as_json:
        print(json.dumps(result, default=str), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:36s} {value}")
    return result


def rounded(value: float, digits: int = 3) -> float:
    return round(float(value), digits)
