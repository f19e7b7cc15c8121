"""Why the benchmarks read a child's memory from inside it: what ru_maxrss and VmHWM say for a 10 MiB child
started by a parent that holds (or held, then freed) 500 MiB. Not a benchmark (run_all.py skips "_" files).

    python benchmarks/_rusage_demo.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _util import own_rss_mib, run_measured

CHILD = "block = b'\\x01' * (10 * 2**20)"


def wait4_maxrss(how: str) -> float:
    command = [sys.executable, "-c", CHILD]
    if how == "subprocess (vfork)":
        pid = subprocess.Popen(command).pid
    elif how == "os.fork + os.execv":
        pid = os.fork()
        if pid == 0:
            os.execv(command[0], command)
    else:
        pid = os.posix_spawn(command[0], command, os.environ)
    return os.wait4(pid, 0)[2].ru_maxrss / 1024


def rows(state: str) -> list[dict]:
    out = []
    parent = {"parent_rss_mib": round(own_rss_mib(), 1), "parent_hwm_mib": round(own_rss_mib("VmHWM"), 1)}
    for how in ("subprocess (vfork)", "os.fork + os.execv", "os.posix_spawn"):
        out.append({"parent": state, **parent, "started_by": how, "wait4_ru_maxrss_mib": round(wait4_maxrss(how), 1)})
    probed = run_measured(["-c", CHILD])["memory"]
    out.append(
        {
            "parent": state,
            **parent,
            "started_by": "run_measured (subprocess)",
            "child_self_ru_maxrss_mib": round(probed["self_ru_maxrss_mib"], 1),
            "child_vmhwm_at_start_mib": round(probed["start_hwm_mib"], 1),
            "child_vmhwm_at_exit_mib": round(probed["peak_rss_mib"], 1),
        }
    )
    return out


def main() -> None:
    ballast = b"\x01" * (500 * 2**20)
    for row in rows("holds 500 MiB"):
        print(json.dumps(row))
    del ballast
    for row in rows("freed its 500 MiB"):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
