"""WarmRunLauncher: Dagster run workers forked from the warm run server, monitored and terminable."""

import os
import signal
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest
import run_launcher_jobs
from dagster._core.launcher import WorkerStatus

from biodiv_dagster.run_launcher import WORKER_TAG, WarmRunLauncher

TESTS = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # a run server of this test's own
    # tempfile caches the temp folder at its first use: without this, the launcher (in this process) would
    # share an earlier test's server under /tmp, which may be idling out just as a run arrives (the run then
    # goes the plain way, correctly, but not forked).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])))
    launcher = {"module": "biodiv_dagster.run_launcher", "class": "WarmRunLauncher"}
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as instance:
        yield instance
    for pid_file in Path(tmp_path / "tmp").glob("biodiv-warm-*/*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def _launch(instance, marker: Path, sleep: float = 0.0) -> dg.DagsterRun:
    recon = dg.reconstructable(run_launcher_jobs.note_pid_job)
    run = instance.create_run_for_job(
        job_def=run_launcher_jobs.note_pid_job,
        run_config={"ops": {"note_pid": {"config": {"marker": str(marker), "sleep": sleep}}}},
        job_code_origin=recon.get_python_origin(),
    )
    return instance.launch_run(run.run_id, workspace=None)


def _wait(predicate, timeout=180.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_runs_execute_in_processes_forked_from_the_warm_run_server(instance, tmp_path):
    assert isinstance(instance.run_launcher, WarmRunLauncher)
    markers = [tmp_path / "first.txt", tmp_path / "second.txt"]
    runs = [_launch(instance, marker) for marker in markers]
    for run in runs:
        _wait(lambda run=run: instance.get_run_by_id(run.run_id).is_finished, what="the run to finish")
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    parents = {int(marker.read_text().split("|")[1]) for marker in markers}
    clients = {int(instance.get_run_by_id(run.run_id).tags[WORKER_TAG].split(":")[0]) for run in runs}
    assert not parents & clients and os.getpid() not in parents  # forked by the server's supervisors


def test_a_killed_worker_is_reported_failed_and_a_live_one_can_be_terminated(instance, tmp_path):
    launcher = instance.run_launcher
    run = _launch(instance, tmp_path / "marker.txt", sleep=120)
    _wait((tmp_path / "marker.txt").exists, what="the run to start its op")
    run = instance.get_run_by_id(run.run_id)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    assert launcher.terminate(run.run_id)
    _wait(lambda: instance.get_run_by_id(run.run_id).is_finished, what="the terminated run to end")
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED

    killed = _launch(instance, tmp_path / "killed.txt", sleep=120)
    _wait((tmp_path / "killed.txt").exists, what="the second run to start its op")
    killed = instance.get_run_by_id(killed.run_id)
    os.kill(int(killed.tags[WORKER_TAG].split(":")[0]), signal.SIGKILL)
    _wait(lambda: launcher.check_run_worker_health(killed).status == WorkerStatus.FAILED, what="a FAILED health")


def test_an_in_process_biodiv_run_is_healthy_while_its_process_lives(instance):
    """A `biodiv run` executes its runs in its own process (tag biodiv/launcher, no worker): run monitoring must
    see them RUNNING while that process lives (was UNKNOWN, which the daemon fails: a UI open beside a
    `biodiv run` marked its training run FAILED mid-step) and FAILED once it is gone."""
    from biodiv_dagster.training.orphans import LAUNCHER_TAG, launcher_tag

    launcher = instance.run_launcher
    alive = dg.DagsterRun(job_name="train_models", run_id="in-process-alive", tags=launcher_tag())
    assert launcher.check_run_worker_health(alive).status == WorkerStatus.RUNNING
    host = launcher_tag()[LAUNCHER_TAG].split(":")[0]
    dead_tag = f"{host}:{os.getpid()}:1.00"  # this pid, another start time: the process it named is gone
    dead = dg.DagsterRun(job_name="train_models", run_id="in-process-gone", tags={LAUNCHER_TAG: dead_tag})
    health = launcher.check_run_worker_health(dead)
    assert health.status == WorkerStatus.FAILED and "is gone" in health.msg
