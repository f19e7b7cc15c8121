"""A real `dagster-daemon` with the project's dagster.yaml: a dead run worker, and a daemon that is SIGKILLed.

The launcher side (WarmRunLauncher.check_run_worker_health) is unit-tested in tests/dagster/launcher; here the
daemon's run monitoring acts on it: a run whose worker was SIGKILLed is marked FAILED, and a daemon restarted
after `kill -9` of the daemon itself finds the run it was watching (its worker gone too) and the runs queued
while it was down: the first is marked FAILED, the others are launched and succeed; no run stays STARTED.
The instance is config/dagster.yaml with only the intervals shortened (seconds instead of 30 s), and the runs
are the tiny job of tests/run_launcher_jobs.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from train_step_hold import hold_folder

from biodiv_core import settings
from biodiv_dagster.run_launcher import WORKER_TAG

TESTS = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _instance_config() -> dict:
    config = yaml.safe_load((settings.REPO_ROOT / "config" / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] and config["run_launcher"]["class"] == "WarmRunLauncher"
    config["run_monitoring"].update(poll_interval_seconds=1, start_timeout_seconds=60)
    config["run_queue"]["max_concurrent_runs"] = 1  # the queued runs wait for the one that is running
    return config


@pytest.fixture
def daemon_env(tmp_path) -> dict[str, str]:
    home = Path(os.environ["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_config()))
    (tmp_path / "tmp").mkdir()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_file": {"relative_path": str(TESTS / "run_launcher_jobs.py"), "location_name": "tiny"}}
                ]
            }
        )
    )
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path / "tmp"),  # warm run servers of this test's own
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(TESTS), str(settings.REPO_ROOT), os.environ.get("PYTHONPATH")])
        ),
        "BIODIV_TEST_WORKSPACE": str(workspace),
    }
    yield env
    for pid_file in (tmp_path / "tmp").glob("biodiv-warm-*/*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def _start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    # No instance opened first: the daemon may create the SQLite storage while a `biodiv run` does, under the lock
    # of the storage class config/dagster.yaml names (test_reliability_fresh_home.py).
    with open(log, "a") as handle:
        # Its own process group: the test can stop the daemon with the code server it spawns.
        return subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", env["BIODIV_TEST_WORKSPACE"]],
            env=env,
            cwd=settings.REPO_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(daemon: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(daemon.pid, sig)
    except ProcessLookupError:
        pass
    daemon.wait(timeout=60)


def _launch(env: dict[str, str], job: str, *options: str) -> str:
    """`dagster job launch` (what the UI's Launch does): with the project's queued run coordinator, it joins the run
    queue and the daemon launches it."""
    run_id = str(uuid.uuid4())
    command = [str(BIN / "dagster"), "job", "launch", "-w", env["BIODIV_TEST_WORKSPACE"], "-j", job, *options]
    completed = subprocess.run(
        [*command, "--run-id", run_id],
        env=env,
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return run_id


def _submit(env: dict[str, str], marker: Path, sleep: float) -> str:
    config = {"ops": {"note_pid": {"config": {"marker": str(marker), "sleep": sleep}}}}
    return _launch(env, "note_pid_job", "--config-json", json.dumps(config))


def _status(run_id: str) -> dg.DagsterRunStatus:
    with dg.DagsterInstance.get() as instance:
        return instance.get_run_by_id(run_id).status


def _wait(predicate, what: str, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; daemon log:\n{log.read_text()[-4000:]}"
        time.sleep(0.25)


def _kill_worker(run_id: str) -> None:
    with dg.DagsterInstance.get() as instance:
        pid = int(instance.get_run_by_id(run_id).tags[WORKER_TAG].split(":")[0])
    os.kill(pid, signal.SIGKILL)


def _failure_message(run_id: str) -> str:
    with dg.DagsterInstance.get() as instance:
        events = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        return " ".join(event.message or "" for event in events)


def test_the_daemon_fails_a_run_whose_worker_died_and_a_restarted_daemon_resumes_the_queue(daemon_env, tmp_path):
    log = tmp_path / "daemon.log"
    daemon = _start_daemon(daemon_env, log)
    try:
        # 1. A run worker SIGKILLed mid-op under a running daemon: run monitoring marks the run FAILED.
        first = _submit(daemon_env, tmp_path / "first.txt", sleep=600)
        _wait((tmp_path / "first.txt").exists, "the first run to start its op", log)
        _kill_worker(first)
        _wait(lambda: _status(first) == dg.DagsterRunStatus.FAILURE, "the dead worker's run to be FAILED", log)
        assert "run worker process is gone" in _failure_message(first)

        # 2. The daemon itself killed with -9 while a run executes; two more runs are queued while it is down,
        # and the running one's worker dies too (nobody watches it).
        second = _submit(daemon_env, tmp_path / "second.txt", sleep=600)
        _wait((tmp_path / "second.txt").exists, "the second run to start its op", log)
        _stop(daemon, signal.SIGKILL)
        queued = [_submit(daemon_env, tmp_path / f"queued-{i}.txt", sleep=0) for i in range(2)]
        _kill_worker(second)
        assert _status(second) == dg.DagsterRunStatus.STARTED  # no daemon: nothing has noticed yet
        assert {_status(run_id) for run_id in queued} == {dg.DagsterRunStatus.QUEUED}

        # 3. A new daemon on the same instance: the orphaned run is FAILED, the queue drains.
        daemon = _start_daemon(daemon_env, log)
        _wait(lambda: _status(second) == dg.DagsterRunStatus.FAILURE, "the orphaned run to be FAILED", log)
        for run_id in queued:
            _wait(lambda run_id=run_id: _status(run_id).value in ("SUCCESS", "FAILURE"), "a queued run to end", log)
            assert _status(run_id) == dg.DagsterRunStatus.SUCCESS
        with dg.DagsterInstance.get() as instance:
            unfinished = instance.get_runs(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED])
            )
        assert unfinished == []
    finally:
        _stop(daemon, signal.SIGKILL)


# --- the UI's daemon and `biodiv run` on one partition -------------------------------------------------------

PARTITION = "everglades|cygnus-buccinator"
MODEL = "lgbm-everglades-cygnus-buccinator"


def test_a_daemon_run_and_a_biodiv_run_of_one_partition_never_deploy_an_older_version_over_a_newer_one(tmp_path):
    """The UI path (daemon-launched training, the registration sensor's registration run) and the CLI path (in
    process, past the run queue) share the per-partition locks of deployment/serial.py: each model is registered
    once, and what the endpoint serves only moves forward."""
    from cli_process import biodiv_command, run_args
    from mlflow import MlflowClient

    from biodiv_core.data.generate import generate_datastore
    from biodiv_dagster.deployment.sensor import registration_run_requests

    store = tmp_path / "data"
    generate_datastore(store, sites=["everglades"], species=["Cygnus buccinator"], rows=300, seed=5, raster_size=0)
    home = Path(os.environ["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text((settings.REPO_ROOT / "config" / "dagster.yaml").read_text())
    (tmp_path / "tmp").mkdir()
    # `biodiv run`'s train step waits until the UI's run has started: the two training runs overlap whatever the
    # machine's speed (`dagster job launch` alone takes seconds).
    hold = hold_folder(tmp_path)
    release = tmp_path / "release"
    tiny = {"BIODIV_MAX_EVALS": "1", "BIODIV_N_FOLDS": "2", "BIODIV_NUM_THREADS": "1"}
    env = {
        **os.environ,
        **tiny,
        "TMPDIR": str(tmp_path / "tmp"),
        "BIODIV_DATA_ROOT": str(store),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(settings.REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "BIODIV_TEST_WORKSPACE": str(settings.REPO_ROOT / "workspace.yaml"),
    }
    log = tmp_path / "daemon.log"
    daemon = _start_daemon(env, log)
    cli = None
    try:
        cli = subprocess.Popen(
            biodiv_command(*run_args(store)),
            env={
                **env,
                "PYTHONPATH": os.pathsep.join([str(hold), env["PYTHONPATH"]]),
                "BIODIV_TEST_HOLD": "1",
                "BIODIV_TEST_HOLD_UNTIL": str(release),
            },
            cwd=settings.REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def partition_exists() -> bool:
            with dg.DagsterInstance.get() as instance:
                return instance.has_dynamic_partition("site", "everglades") and instance.has_dynamic_partition(
                    "species", "cygnus-buccinator"
                )

        _wait(partition_exists, "`biodiv run` to add the partition", log)
        ui_run = _launch(
            env,
            "train_models",
            "--tags",
            json.dumps(
                {
                    "dagster/partition": PARTITION,
                    "dagster/partition/site": "everglades",
                    "dagster/partition/species": "cygnus-buccinator",
                }
            ),
        )

        def ui_run_started() -> bool:  # its start_time is set (STARTED), not only dequeued (STARTING)
            with dg.DagsterInstance.get() as instance:
                record = instance.get_run_record_by_id(ui_run)
                return record is not None and record.start_time is not None

        _wait(ui_run_started, "the daemon to start the UI's run", log)
        release.touch()
        out, err = cli.communicate(timeout=900)
        assert cli.returncode == 0, err[-3000:]
        summary = json.loads(out)

        def settled() -> bool:
            with dg.DagsterInstance.get() as instance:
                runs = instance.get_runs()
                registrations = [r for r in runs if r.job_name == "register_and_deploy_job"]
                return (
                    instance.get_run_by_id(ui_run).is_finished
                    and len(registrations) == 2
                    and all(r.is_finished for r in runs)
                )

        _wait(settled, "the daemon's training and registration runs to finish", log, timeout=900)
    finally:
        release.touch()
        if cli is not None and cli.poll() is None:
            cli.kill()
        _stop(daemon, signal.SIGTERM)

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert all(run.is_success for run in runs), [(r.job_name, r.status) for r in runs]
        deployments = instance.fetch_materializations(dg.AssetKey("batch_deployment"), limit=10, ascending=True).records
        assert registration_run_requests(instance, None)[0] == []  # each model registered once
        trainings = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(job_name="train_models"))}
    assert len(trainings) == 2
    cli_training = next(r for run_id, r in trainings.items() if run_id != ui_run)
    assert trainings[ui_run].start_time < cli_training.end_time  # they did run at the same time
    client = MlflowClient(settings.mlflow_tracking_uri())
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert sorted(int(v.version) for v in versions) == [1, 2] and len({v.source for v in versions}) == 2
    assert summary["registered_version"] in ("1", "2")
    assert int(client.get_model_version_by_alias(MODEL, "deployed").version) == 2
    [record] = list(settings.endpoints_dir().glob("*.json"))
    assert json.loads(record.read_text())["version"] == "2"
    served = [int(r.asset_materialization.metadata["deployed_version"].value) for r in deployments]
    assert len(served) == 2 and served == sorted(served)  # what the endpoint serves only moves forward
