"""Runs left STARTED by a killed `biodiv run` / `biodiv main`: marked FAILED the next time the CLI or UI starts.

In-process runs have no run worker the daemon could watch (run monitoring covers daemon-launched runs), so each
carries a tag naming the process that executes it: host, pid and that process's start time (a pid is reused,
the pair is not). A run of this host whose process is gone is failed, with the reason in the event log.
"""

from __future__ import annotations

import os
import socket

import dagster as dg

LAUNCHER_TAG = "biodiv/launcher"
UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]


def _identity(pid: int) -> str | None:
    import psutil

    try:
        return f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:  # gone (or a zombie we may not inspect)
        return None


def launcher_tag() -> dict[str, str]:
    """The tag an in-process run carries: this process."""
    return {LAUNCHER_TAG: _identity(os.getpid()) or f"{socket.gethostname()}:{os.getpid()}:0"}


def launcher_alive(tag: str) -> bool:
    """Whether the process a ``biodiv/launcher`` tag names is still running (another host's: assumed so)."""
    host, _, rest = tag.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's process: not ours to judge
    return _identity(int(pid)) == tag


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILED every unfinished in-process run whose executing process is gone; their run ids."""
    records = instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED), limit=200)
    failed = []
    for record in records:
        run = record.dagster_run
        tag = run.tags.get(LAUNCHER_TAG)
        if not tag or launcher_alive(tag):
            continue
        instance.report_run_failed(
            run, f"The process that executed this run ({tag}) is gone (killed?): marked FAILED on the next start."
        )
        failed.append(run.run_id)
    return failed
