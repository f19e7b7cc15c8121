"""AzureML jobs that fail on storage, through the fake workspace that runs each job's command for real.

Was: a job whose step found its output mount full or read-only, or whose output upload AzureML refused, failed as
"AzureML job ... ended Failed. step error: ... AzureML: ..." with no storage flag: the run's finished outputs
stayed the partition's latest (on the local path they are retracted). Now the failure is the local path's: one line
`Step <step> failed: cannot write <datastore URI> (<reason>): ...`, `storage_error` metadata, no retry, and
`retract_if_storage_failure` (what `biodiv run`/`main` and the daemon's `storage_failure_sensor` call) retracts it.
"""

import dagster as dg
import pytest
from azureml_helpers import fake_workspace  # noqa: F401 - fixture
from mlflow import MlflowClient

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore
from biodiv_core.errors import NotFoundError
from biodiv_dagster.azure_data import upload_data
from biodiv_dagster.backends import STEP_LAUNCHERS
from biodiv_dagster.deployment.upstream import latest_record
from biodiv_dagster.instance import get_instance
from biodiv_dagster.launcher.azureml_failures import storage_reason
from biodiv_dagster.retraction import MLFLOW_RETRACTED_TAG, RETRACTED_TAG, STORAGE_ERROR_KEY, retract_if_storage_failure
from biodiv_dagster.training.assets import training_assets
from biodiv_dagster.training.config import training_run_config
from biodiv_dagster.training.sync import add_partition

pytestmark = pytest.mark.azurite

SITE, SPECIES = "everglades", "Cygnus buccinator"
PARTITION = "everglades|cygnus-buccinator"
TINY = dict(max_evals=1, n_folds=2, seed=11, num_threads=1)
DATASTORE = "azureml://datastores/workspaceblobstore/paths"


@pytest.fixture
def workspace(fake_workspace, tmp_path, monkeypatch):  # noqa: F811
    root = tmp_path / "data"
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=300, seed=2, raster_size=0)
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    upload_data(fake_workspace, root, log=lambda line: None)
    instance = get_instance()
    add_partition(instance, SITE, SPECIES)
    return fake_workspace, instance


def _train(instance, selection):
    return dg.materialize(
        training_assets,
        selection=selection,
        instance=instance,
        partition_key=PARTITION,
        resources={"step_launcher": STEP_LAUNCHERS["azureml"]()},
        run_config=training_run_config(selection, **TINY),
        raise_on_error=False,
    )


def _step_failures(result) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def _assert_storage_failure(result, step: str, asset: str, reason: str) -> str:
    """One STEP_FAILURE, as the local path reports a full disk: one line naming the output and the reason."""
    [failure] = _step_failures(result)
    user = failure.step_failure_data.user_failure_data
    description = user.description
    assert "\n" not in description
    location = f"{DATASTORE}/{asset}/everglades/cygnus-buccinator/{result.run_id}/"
    assert description.startswith(f"Step {step} failed: cannot write {location}"), description
    assert f"({reason})" in description and "free space there" in description
    assert user.metadata[STORAGE_ERROR_KEY].value is True and user.metadata["step"].value == step
    return description


def test_a_full_output_mount_in_a_later_job_fails_once_with_one_line_and_the_run_is_retracted(workspace):
    client, instance = workspace
    client.jobs.behaviours["train"] = "output_full"  # prep writes its output; the train job finds the mount full
    result = _train(instance, ["prepared_data", "best_parameters", "train_test_split"])
    assert not result.success
    _assert_storage_failure(result, "train", "best_parameters", "No space left on device")
    steps = [client.jobs.get(name).tags["step"] for name in client.jobs.created]
    assert steps == ["prep", "train"]  # a full disk is not retried (the fixture allows one job retry)
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert latest_record(instance, "prepared_data", PARTITION).run_id == result.run_id

    assert retract_if_storage_failure(instance, result.run_id) == ["prepared_data"]  # what `biodiv run` does
    assert instance.get_run_by_id(result.run_id).tags[RETRACTED_TAG]
    with pytest.raises(NotFoundError):  # the partition has no usable prepared_data any more
        latest_record(instance, "prepared_data", PARTITION)
    [observation] = instance.fetch_observations(dg.AssetKey("prepared_data"), limit=5).records
    assert observation.asset_observation.metadata["retracted_run_id"].value == result.run_id
    mlflow = MlflowClient(settings.mlflow_tracking_uri())
    runs = mlflow.search_runs(
        [e.experiment_id for e in mlflow.search_experiments()], f"tags.dagster_run_id = '{result.run_id}'"
    )
    assert runs and all(r.data.tags.get(MLFLOW_RETRACTED_TAG) and r.info.status != "RUNNING" for r in runs)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("output_read_only", "Read-only file system"),
        (
            "upload_conflict",
            "output upload failed: ResourceExistsError: The specified blob already exists. ErrorCode:BlobAlreadyExists",
        ),
    ],
)
def test_a_read_only_mount_or_a_refused_output_upload_is_a_storage_failure(workspace, behaviour, reason):
    client, instance = workspace
    client.jobs.behaviours["prep"] = behaviour
    result = _train(instance, ["prepared_data"])
    assert not result.success
    _assert_storage_failure(result, "prep", "prepared_data", reason)
    assert len(client.jobs.created) == 1
    assert retract_if_storage_failure(instance, result.run_id) == []  # nothing had materialized
    assert instance.get_run_by_id(result.run_id).tags[RETRACTED_TAG]


def test_storage_reasons_from_the_step_line_the_run_error_or_the_upload_error():
    step = "step train failed: cannot write /mnt/azureml/cr/j/x/cap/out (Disk quota exceeded): free space there, or"
    assert storage_reason([step, None]) == "Disk quota exceeded"
    assert storage_reason(["OSError: [Errno 28] No space left on device: '/mnt/x'"]) == "No space left on device"
    assert storage_reason([None, "Execution failed ... OSError: [Errno 30] ..."]) == "Read-only file system"
    upload = "Failed to upload output 'out': azure.core.exceptions.HttpResponseError: (AuthorizationPermissionMismatch)"
    assert storage_reason([upload]) == "output upload failed: HttpResponseError: (AuthorizationPermissionMismatch)"
    # Not storage: bad data, an HTTP error with nothing to do with outputs, a preempted node.
    assert storage_reason(["step prep failed: gold data has no ABSENT rows"]) is None
    assert storage_reason(["HttpResponseError: (ServiceUnavailable) try again"]) is None
    assert storage_reason(["Compute node was preempted (low priority); the job can be resubmitted.", None]) is None
