"""Shared by the benchmarks: timing, child-process CPU and own peak memory, isolated local state, JSON output.

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
    """Run a command; wall and CPU (user+sys of its whole waited-for tree, from wait4).

    No memory figure: wait4's ru_maxrss of a child is at least this process's own peak RSS before it started
    the child (see _memory_probe.py), so it is only returned as ``wait4_max_rss_mib`` to show that. Use
    ``run_measured`` for a Python child's own memory.
    """
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
        "wait4_max_rss_mib": usage.ru_maxrss / 1024,  # NOT the child's own: >= our peak RSS before it
        "returncode": process.returncode,
        "stdout": "".join(chunks["out"]),
        "stderr": "".join(chunks["err"]),
    }


MEMORY_PROBE = Path(__file__).resolve().with_name("_memory_probe.py")
MEMORY_SITE = Path(__file__).resolve().with_name("_memory_site")


def run_measured(args: list[str], env: dict | None = None, cwd: str | None = None, tree: bool = False) -> dict:
    """Run ``python <args>`` (``["-c", code, ...]``, ``["-m", module, ...]`` or ``[script, ...]``) in a fresh
    interpreter under ``_memory_probe``: what ``run_with_rusage`` gives, plus the child's own memory, read by
    the child itself from /proc/self/status at its exit, so nothing of this process's RSS is in it.

    ``memory`` is the probe's report (None if the child wrote none: killed, or os._exit); its figures in MiB:
    ``peak_rss_mib`` (VmHWM at exit), ``start_rss_mib`` (the bare interpreter, before the target imported
    anything), ``marks`` (RSS where the target called ``_memory_probe.mark(name)``), ``exit_rss_mib``.
    ``peak_rss_mib`` and ``start_rss_mib`` are also copied to the top level.

    ``tree=True``: every Python process the child starts (and the child itself) reports its own figures too,
    through ``benchmarks/_memory_site/sitecustomize.py`` on PYTHONPATH; ``tree`` is the list of those reports
    (each with its ``argv``), in pid order. Processes that are not Python, or end by os._exit or a signal, are
    missing from it.
    """
    import shutil

    folder = Path(tempfile.mkdtemp(prefix="biodiv-bench-memory-"))
    try:
        report = folder / "memory.json"
        child_env = dict(os.environ if env is None else env)
        child_env["BIODIV_BENCH_MEMORY_FILE"] = str(report)
        if tree:
            (folder / "tree").mkdir()
            child_env["BIODIV_BENCH_MEMORY_DIR"] = str(folder / "tree")
            path = [str(MEMORY_SITE), *(p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p)]
            child_env["PYTHONPATH"] = os.pathsep.join(path)
        result = run_with_rusage([sys.executable, str(MEMORY_PROBE), *args], env=child_env, cwd=cwd)
        memory = json.loads(report.read_text()) if report.is_file() else None
        if tree:
            reports = [json.loads(f.read_text()) for f in (folder / "tree").glob("*.json")]
            result["tree"] = sorted(reports, key=lambda r: r["pid"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["memory"] = memory
    result["peak_rss_mib"] = memory["peak_rss_mib"] if memory else None
    result["start_rss_mib"] = memory["start_rss_mib"] if memory else None
    return result


def own_rss_mib(key: str = "VmRSS") -> float:
    """This process's resident size now (MiB, /proc/self/status VmRSS), or its peak so far (``key="VmHWM"``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def added_peak_mib(result: dict, mark: str | None = None) -> float:
    """The child's peak RSS above its RSS at ``mark`` (e.g. "imports"), or above its start without one."""
    memory = result["memory"]
    if memory is None:
        raise RuntimeError(f"the measured child wrote no memory report (exit code {result['returncode']})")
    base = memory["marks"][mark]["rss_mib"] if mark else memory["start_rss_mib"]
    return memory["peak_rss_mib"] - base


def machine_busy_cpu() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def state_env(home: Path, data_root: Path) -> dict:
    """This environment pointed at a fresh local state in ``home`` (created): BIODIV_HOME, Dagster instance,
    MLflow store, the data store ``data_root``, and its own TMPDIR, so its warm servers are its own too; no
    thread or tuning overrides inherited from the caller's shell."""
    (home / "dagster").mkdir(parents=True)
    (home / "tmp").mkdir()
    env = {
        **os.environ,
        "BIODIV_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "BIODIV_DATA_ROOT": str(data_root),
        "BIODIV_STEP_LOG_LEVEL": "WARNING",
        "TMPDIR": str(home / "tmp"),
    }
    for key in ("BIODIV_NUM_THREADS", "OMP_NUM_THREADS", "BIODIV_MAX_EVALS", "BIODIV_N_FOLDS"):
        env.pop(key, None)
    return env


def warm_servers(tmpdir: str | os.PathLike, stop: bool = False) -> float:
    """CPU seconds the warm step servers under ``tmpdir`` used so far (each itself plus the step processes it
    forked and reaped): they are daemons, in no benchmark's process tree. ``stop``: terminate them too."""
    import signal

    cpu = 0.0
    for pid_file in Path(tmpdir).glob("biodiv-warm-*/*.pid"):
        try:
            pid = int(pid_file.read_text())
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
            if stop:
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
    return cpu


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
