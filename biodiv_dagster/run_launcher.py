"""Dagster run workers forked from a warm server (config/dagster.yaml ``run_launcher``).

Dagster's DefaultRunLauncher has the code server spawn a fresh interpreter per run, which imports Dagster, our
definitions and, for a registration run, MLflow: 3-5 s of CPU per run, and a backfill of N partitions makes 2N
runs (training, then registration). That was most of the platform's fixed cost per small partition. Here each
run is what Dagster's container launchers run, ``python -m dagster api execute_run <args>``, but started through
the warm process server (azureml_steps._warm, kind ``run``): a fresh process forked from a server that has
imported those third-party libraries once. Our own code is imported anew by every run (the job is loaded
from its origin, as Dagster does), so an edited definition is never stale. ``BIODIV_WARM_STEPS=0`` starts
the plain command. The worker's pid is a run tag: run monitoring (``run_monitoring`` in dagster.yaml) fails
a run whose worker died, and ``terminate`` signals it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import ConfigurableClassData

from biodiv_dagster.launcher import warm
from biodiv_dagster.training.orphans import LAUNCHER_TAG, launcher_alive

WORKER_TAG = "biodiv/run_worker"  # "<pid>:<start time in clock ticks>": a pid alone may be reused


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]  # field 22 of stat(5); a zombie has finished


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run as ``python -m dagster api execute_run`` forked from the warm run server."""

    def __init__(self, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self._workers: dict[str, subprocess.Popen] = {}  # started by this process, reaped when they end
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data)

    def _reap(self) -> None:
        for run_id, worker in list(self._workers.items()):
            if worker.poll() is not None:
                del self._workers[run_id]

    def launch_run(self, context: LaunchRunContext) -> None:
        self._reap()
        run = context.dagster_run
        origin = context.job_code_origin
        if origin is None:
            raise dg.DagsterInvariantViolationError(f"run {run.run_id} has no job code origin to load it from")
        args = ExecuteRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref(), set_exit_code_on_failure=True
        )
        *entry, api, execute_run, serialized = args.get_command_args()
        ours = entry == ["dagster"] or (
            entry[1:] == ["-m", "dagster"] and os.path.realpath(entry[0]) == os.path.realpath(sys.executable)
        )
        if ours:  # the `dagster` of this interpreter, as the code origin asks (its console script or -m)
            command = warm.command("dagster", [api, execute_run, serialized], kind="run")
        else:  # another interpreter (a code location in another environment): its own plain process
            command = [*entry, api, execute_run, serialized]
        # Its own session: a Ctrl-C in the terminal of `biodiv ui` reaches the daemon, which stops the runs
        # through the instance; the workers must not all die of the same signal halfway through a step.
        worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        self._workers[run.run_id] = worker
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: f"{worker.pid}:{_start_ticks(worker.pid)}"})

    def _worker_pid(self, run: dg.DagsterRun) -> int | None:
        """The worker's pid if that process is still the one this run started."""
        pid, _, ticks = run.tags.get(WORKER_TAG, "").partition(":")
        if not pid.isdigit():
            return None
        return int(pid) if _start_ticks(int(pid)) == ticks else None

    def terminate(self, run_id: str) -> bool:
        self._reap()
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = self._worker_pid(run)
        if pid is None:
            return False
        self._instance.report_run_canceling(run)
        os.kill(pid, signal.SIGTERM)  # the warm client relays it; `execute_run` stops the run as interrupted
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        self._reap()
        if WORKER_TAG not in run.tags and LAUNCHER_TAG in run.tags:
            # Executed in process by `biodiv run`/`main`, past this launcher: alive while that process is. (Was
            # UNKNOWN, which the daemon's run monitoring fails: a UI open beside a `biodiv run` marked its run
            # FAILED mid-step, and the registration sensor then registered a model whose scores did not exist yet.)
            tag = run.tags[LAUNCHER_TAG]
            if launcher_alive(tag):
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the process that executed it ({tag}) is gone")
        if WORKER_TAG not in run.tags:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker recorded for this run")
        if self._worker_pid(run) is not None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, "the run worker process is gone (killed, or out of memory)")
