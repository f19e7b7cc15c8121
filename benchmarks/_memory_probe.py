"""Run a Python program and report its own peak memory from inside, at exit (used by ``_util.run_measured``).

    python benchmarks/_memory_probe.py -m package.module [args...]
    python benchmarks/_memory_probe.py -c "code" [args...]
    python benchmarks/_memory_probe.py path/to/script.py [args...]

runs the target as ``python -m`` / ``-c`` / a script would (``__main__``, ``sys.argv``, ``sys.path[0]``) and, at
exit, writes JSON to the file named by $BIODIV_BENCH_MEMORY_FILE: VmHWM and VmRSS from /proc/self/status (MiB),
the RSS when this probe started (before the target imported anything), and any ``mark(name)`` the target made
(``import _memory_probe; _memory_probe.mark("imports")`` records the RSS at that point).

Why VmHWM from inside, and not ru_maxrss from wait4 / RUSAGE_CHILDREN: measured on this project's VM (Linux 6.18,
Python 3.11; benchmarks/README.md "Memory figures"), a parent holding 514 MiB that starts a fresh ``python -c``
allocating 10 MiB gets ru_maxrss 510-514 MiB for it from wait4 -- through subprocess (vfork), os.fork + execv and
os.posix_spawn alike -- and the child's own getrusage(RUSAGE_SELF) says the same. exec() folds the old address
space's high-water mark into the process's signal->maxrss, which is what ru_maxrss reports. Under vfork
(subprocess, posix_spawn) the old address space IS the parent's, so the floor is the parent's own peak so far
(VmHWM), even after it freed the memory: a parent that had freed its 500 MiB (RSS 14 MiB, VmHWM 514 MiB) still got
514 MiB for a bare ``python -c pass`` through subprocess and posix_spawn (13 MiB through fork + execv: fork's copy
starts from the parent's current RSS; ``python benchmarks/_rusage_demo.py`` prints these). A small launcher in
between would only lower that floor to the launcher's own size. VmHWM belongs to the address space itself, and
exec() starts a new one: in the 10 MiB child it read 11-13 MiB at start and 21-23 MiB at exit. So the child reads
it itself, after the target is done.

Only the probed process is measured by the report above. Its children (``children_ru_maxrss_mib``, the
largest waited-for descendant's ru_maxrss) inherit the probed process's own size at fork, the same way. For a
tree of Python processes (a Dagster run and the step processes it starts), ``run_measured(..., tree=True)``
also puts ``benchmarks/_memory_site`` on PYTHONPATH with $BIODIV_BENCH_MEMORY_DIR: its ``sitecustomize``
makes every Python process of the tree write its own report (``<pid>.json``, with its argv) into that folder
at exit (``install_tree_report``), then loads whatever sitecustomize came next on the path.

Reports are written by atexit handlers registered before the target runs, so they run after the target's
own handlers and after non-daemon threads ended; a process ended by os._exit or a signal writes no report
(``run_measured`` then returns ``memory: None``).
"""

from __future__ import annotations

import atexit
import builtins
import json
import os
import resource
import runpy
import sys
import time
import types

ENV = "BIODIV_BENCH_MEMORY_FILE"
TREE_ENV = "BIODIV_BENCH_MEMORY_DIR"
_STATE: dict = {"marks": {}}


def status_mib() -> dict[str, float]:
    """VmRSS and VmHWM of this process (MiB) from /proc/self/status (Linux)."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024  # kB
    return out


def mark(name: str) -> None:
    """Record this process's RSS (and high-water mark so far) now, under ``name``, for the report."""
    now = status_mib()
    _STATE["marks"][name] = {"rss_mib": now["VmRSS"], "hwm_mib": now["VmHWM"], "time": time.time()}


def _report(path: str) -> None:
    now = status_mib()
    report = {
        "pid": os.getpid(),
        "target": _STATE.get("target"),
        "argv": list(sys.argv),
        "start_rss_mib": _STATE["start"]["VmRSS"],
        "start_hwm_mib": _STATE["start"]["VmHWM"],
        "marks": _STATE["marks"],
        "exit_rss_mib": now["VmRSS"],
        "peak_rss_mib": now["VmHWM"],
        # Both include the pre-exec address space (the parent's, see the module docstring): kept only to show it.
        "self_ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_ru_maxrss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    partial = f"{path}.partial"
    with open(partial, "w") as out:
        json.dump(report, out)
    os.replace(partial, path)  # the reader never sees half a report


def install_tree_report(folder: str) -> None:
    """Make this process write its own report to ``folder/<pid>.json`` at exit (from _memory_site's sitecustomize)."""
    _STATE.setdefault("start", status_mib())
    atexit.register(_report, os.path.join(folder, f"{os.getpid()}.json"))


def _run(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: _memory_probe.py -m module | -c code | script.py [args...]")
    if argv[0] == "-m":
        _STATE["target"] = ["-m", argv[1]]
        sys.argv = [argv[1], *argv[2:]]  # runpy replaces argv[0] with the module's path, as python -m does
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        _STATE["target"] = ["-c"]
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        exec(compile(argv[1], "<string>", "exec"), main.__dict__)
    else:
        _STATE["target"] = [argv[0]]
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.realpath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    _STATE["start"] = status_mib()
    # The target reaches this module as `import _memory_probe` (for mark()) once __main__ is its own.
    sys.modules["_memory_probe"] = sys.modules["__main__"]
    report_to = os.environ.pop(ENV, None)  # not for the target's own children
    if report_to:
        atexit.register(_report, report_to)
    _run(sys.argv[1:])
