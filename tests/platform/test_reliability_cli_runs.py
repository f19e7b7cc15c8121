"""Runs of one partition through real `biodiv` processes: two at once, and one SIGKILLed mid-step.

Two `biodiv run`s of one partition on one BIODIV_HOME used to both report the *same* model_uri, make four
registration runs for two models and deploy each version twice (in-process runs bypass the run queue's
`biodiv/registration` limit); on a fresh BIODIV_HOME one of them died creating the Dagster SQLite storage ("table
run_tags already exists"). A SIGKILLed `biodiv run` left its step running and its Dagster run STARTED forever.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from cli_process import biodiv, biodiv_command, run_args
from train_step_hold import hold_folder

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore

MODEL = "lgbm-everglades-cygnus-buccinator"
PARTITION = "everglades|cygnus-buccinator"


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=300, seed=5)
    return root


def _popen(args, env=None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        biodiv_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=settings.REPO_ROOT,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def test_two_runs_of_one_partition_at_once_each_report_and_register_their_own_model(store):
    # A fresh BIODIV_HOME (no Dagster storage yet): both processes create the instance at the same moment.
    shutil_home = settings.dagster_home()
    assert not (shutil_home / "history").exists()
    processes = [_popen(run_args(store)) for _ in range(2)]
    outputs = [process.communicate(timeout=900) for process in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    summaries = [json.loads(out) for out, _ in outputs]

    instance = dg.DagsterInstance.get()
    models = instance.fetch_materializations(dg.AssetKey("deployable_model"), limit=10).records
    assert len(models) == 2
    by_correlation = {
        r.asset_materialization.metadata["correlation_id"].value: r.asset_materialization.metadata["model_uri"].value
        for r in models
    }
    # Each run reports its own model (was: both the same model_uri), found by its own correlation id.
    assert len({s["model_uri"] for s in summaries}) == 2
    for summary in summaries:
        assert by_correlation[summary["correlation_id"]] == summary["model_uri"]
    assert sorted(s["registered_version"] for s in summaries) == ["1", "2"]

    # Each model registered once: one registration run per deployable_model event (was: four for two).
    registrations = instance.get_runs(dg.RunsFilter(job_name="register_and_deploy_job"))
    assert len(registrations) == 2 and all(run.is_success for run in registrations)
    storage_ids = {run.tags["biodiv/deployable_model_storage_id"] for run in registrations}
    assert storage_ids == {str(r.storage_id) for r in models}

    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri())
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert sorted(v.version for v in versions) == [1, 2] and len({v.source for v in versions}) == 2
    # The newest version is the one deployed; the older one never went back over it.
    assert client.get_model_version_by_alias(MODEL, "deployed").version == 2
    [record] = list(settings.endpoints_dir().glob("*.json"))
    assert json.loads(record.read_text())["version"] == "2"
    deployments = instance.fetch_materializations(dg.AssetKey("batch_deployment"), limit=10, ascending=True).records
    served = [int(r.asset_materialization.metadata["deployed_version"].value) for r in deployments]
    assert len(served) == 2 and served == sorted(served)  # what the endpoint serves only moves forward
    deployed_flags = [r.asset_materialization.metadata["deployed"].value for r in deployments]
    assert deployed_flags.count(True) <= 2  # each version deployed at most once

    # The daemon (`biodiv ui` afterwards) registers nothing again.
    from biodiv_dagster.deployment.sensor import registration_run_requests

    requests, _ = registration_run_requests(instance, None)
    assert requests == []


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("warm", ["1", "0"], ids=["warm_step", "plain_step"])
def test_sigkill_of_biodiv_run_takes_its_step_down_and_the_next_start_fails_the_run(store, tmp_path, warm):
    marker = tmp_path / "marker"
    env = {
        "PYTHONPATH": f"{hold_folder(tmp_path)}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "BIODIV_TEST_HOLD": "1",  # the train step, until the test kills `biodiv run`
        "BIODIV_TEST_HOLD_MARKER": str(marker),
        "BIODIV_WARM_STEPS": warm,
    }
    process = _popen(run_args(store), env=env)
    try:

        def started():
            assert process.poll() is None, process.communicate()[1][-3000:]
            return marker.exists() and marker.read_text().split()

        step_pid, mlflow_run = _wait_for(started, 300, "the train step")
        process.kill()  # SIGKILL: no handler, no cleanup in biodiv itself
        process.communicate(timeout=30)
        # The step notices within a second, unwinds like a cancel and exits.
        _wait_for(lambda: not _alive(int(step_pid)), 30, "the orphaned step to exit")
    finally:
        if process.poll() is None:
            process.kill()

    from mlflow import MlflowClient

    assert MlflowClient(settings.mlflow_tracking_uri()).get_run(mlflow_run).info.status == "FAILED"
    # The half-written outputs of the killed step were removed (temp folders included).
    for asset in ("best_parameters", "train_test_split"):
        left = list((settings.storage_root() / asset).rglob("*"))
        assert [p for p in left if p.is_file() or ".tmp-" in p.name] == [], left
    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs(dg.RunsFilter(job_name="train_models"))
    assert run.status == dg.DagsterRunStatus.STARTED  # nobody was left to say otherwise

    # The next CLI start marks it FAILED, saying why.
    completed = biodiv("sync", "--data-root", str(store))
    assert completed.returncode == 0, completed.stderr
    assert f"marked run {run.run_id} FAILED" in completed.stderr
    run = instance.get_run_by_id(run.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    # And it is not failed twice.
    assert "marked run" not in biodiv("sync", "--data-root", str(store)).stderr
