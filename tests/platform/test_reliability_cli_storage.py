"""A disk that fills (or turns read-only) in a LATER step of `biodiv run`, through the real `biodiv` process.

Was: the run failed with one clear line, but the steps that had finished before the fault stayed materialized:
`prepared_data`, `best_parameters`, `train_test_split` (and `deployable_model` when `scores` failed) were the
partition's latest, their folders on disk, and the registration sensor of a running daemon would have registered
the failed run's model. Now the run's outputs are retracted (biodiv_dagster/retraction.py).
"""

from __future__ import annotations

import json
import os
import textwrap

import dagster as dg
import pytest
from cli_process import assert_clean_user_error, biodiv, files_in, run_args
from mlflow import MlflowClient
from reliability_helpers import valid_tables, write_store

from biodiv_core import settings
from biodiv_core.errors import NotFoundError
from biodiv_dagster.deployment.sensor import registration_run_requests
from biodiv_dagster.deployment.upstream import latest_record
from biodiv_dagster.retraction import MLFLOW_RETRACTED_TAG, RETRACTED_TAG

PARTITION = "everglades|cygnus-buccinator"
TRAINING_ASSETS = ["prepared_data", "best_parameters", "train_test_split", "scores", "deployable_model"]

# The step named by BIODIV_TEST_FULL_STEP cannot publish its output folder (the rename out of its temp folder fails
# with BIODIV_TEST_ERRNO); every other step and the Dagster instance write normally.
LATE_FULL_DISK = textwrap.dedent(
    """
    import errno, os, sys
    _step = os.environ.get("BIODIV_TEST_FULL_STEP")
    if _step and os.environ.get("BIODIV_STEP_PARENT_PID") and f"azureml_steps.{_step}" in sys.orig_argv:
        import biodiv_core.atomic as atomic
        _replace = os.replace
        def _full(src, dst, *a, **k):
            if ".tmp-" in os.path.basename(str(src)):
                code = getattr(errno, os.environ["BIODIV_TEST_ERRNO"])
                raise OSError(code, os.strerror(code), str(src))
            return _replace(src, dst, *a, **k)
        atomic.os.replace = _full
    """
)


def _fault_env(tmp_path, step: str, errno_name: str) -> dict[str, str]:
    faults = tmp_path / "faults"
    faults.mkdir(exist_ok=True)
    (faults / "sitecustomize.py").write_text(LATE_FULL_DISK)
    return {
        "PYTHONPATH": f"{faults}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "BIODIV_TEST_FULL_STEP": step,
        "BIODIV_TEST_ERRNO": errno_name,
    }


def _mlflow_runs(client: MlflowClient, dagster_run_id: str):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.dagster_run_id = '{dagster_run_id}'")


def _assert_retracted(instance: dg.DagsterInstance, run: dg.DagsterRun, materialized: set[str]) -> None:
    """Each asset the failed run materialized has a `retracted` observation; its folder is gone; no MLflow run of it
    is RUNNING and each is tagged; nothing registered, and a registration sensor tick would request nothing."""
    assert run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(RETRACTED_TAG)
    made = {
        entry.asset_materialization.asset_key.to_user_string(): entry.asset_materialization
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert set(made) == materialized
    for asset, materialization in made.items():
        assert not os.path.exists(str(materialization.metadata["path"].value)), asset
        [observation] = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[PARTITION]), limit=1
        ).records
        metadata = observation.asset_observation.metadata
        assert metadata["retracted_run_id"].value == run.run_id and metadata["output_removed"].value, asset
        assert "No space left on device" in metadata["reason"].value
    client = MlflowClient(settings.mlflow_tracking_uri())
    runs = _mlflow_runs(client, run.run_id)
    assert runs and all(r.info.status != "RUNNING" and MLFLOW_RETRACTED_TAG in r.data.tags for r in runs)
    assert client.search_registered_models() == []
    # A daemon's registration sensor ticking now would register nothing of it.
    assert registration_run_requests(instance, None)[0] == []


def test_a_disk_that_fills_in_the_scores_step_leaves_no_earlier_output_of_the_run(tmp_path):
    write_store(tmp_path / "data", *valid_tables(60))
    completed = biodiv(*run_args(tmp_path / "data"), env=_fault_env(tmp_path, "score", "ENOSPC"))
    assert_clean_user_error(completed, "failed in scores", "No space left on device", "free space")

    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs()
    _assert_retracted(instance, run, {"prepared_data", "best_parameters", "train_test_split", "deployable_model"})
    assert files_in(settings.storage_root()) == []  # temp folders included
    assert files_in(settings.endpoints_dir()) == []
    for asset in TRAINING_ASSETS:  # nothing is the partition's latest: the next run starts from scratch
        with pytest.raises(NotFoundError):
            latest_record(instance, asset, PARTITION)


def test_a_read_only_disk_in_the_model_step_falls_back_to_the_last_good_run(tmp_path):
    write_store(tmp_path / "data", *valid_tables(60))
    good = biodiv(*run_args(tmp_path / "data"))
    assert good.returncode == 0, good.stderr[-3000:]
    good_summary = json.loads(good.stdout)
    instance = dg.DagsterInstance.get()
    good_run_ids = {r.run_id for r in instance.get_runs()}
    kept = {asset: latest_record(instance, asset, PARTITION) for asset in TRAINING_ASSETS}
    endpoints = {p: p.read_text() for p in files_in(settings.endpoints_dir())}  # deployed if past the gate

    completed = biodiv(*run_args(tmp_path / "data"), env=_fault_env(tmp_path, "train_to_deploy", "EROFS"))
    assert_clean_user_error(completed, "failed in deployable_model", "Read-only file system")

    [run] = [r for r in instance.get_runs() if r.run_id not in good_run_ids]
    _assert_retracted_but_registered_before(instance, run)
    for asset, record in kept.items():  # the good run's outputs are the latest again, and still on disk
        assert latest_record(instance, asset, PARTITION).storage_id == record.storage_id, asset
        assert os.path.exists(str(record.asset_materialization.metadata["path"].value)), asset
    model = MlflowClient(settings.mlflow_tracking_uri()).get_registered_model(good_summary["model_name"])
    assert [str(v.version) for v in model.latest_versions] == [str(good_summary["registered_version"])]
    assert {p: p.read_text() for p in files_in(settings.endpoints_dir())} == endpoints


def _assert_retracted_but_registered_before(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    assert run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(RETRACTED_TAG)
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        assert not os.path.exists(str(entry.asset_materialization.metadata["path"].value))
    runs = _mlflow_runs(MlflowClient(settings.mlflow_tracking_uri()), run.run_id)
    assert runs and all(r.info.status != "RUNNING" and MLFLOW_RETRACTED_TAG in r.data.tags for r in runs)
    assert registration_run_requests(instance, None)[0] == []
