"""The step launcher's azureml mode against a fake workspace that runs jobs for real, with Pipes over Azurite."""

import os
import signal
import threading
import time
import uuid

import dagster as dg
import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.storage.blob import BlobServiceClient
from azureml_helpers import fake_workspace  # noqa: F401 - fixture
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._utils.interrupts import raise_interrupts_as

from biodiv_core.data.generate import generate_datastore
from biodiv_core.naming import features_asset_name, species_asset_name
from biodiv_core.step_args import PrepArgs
from biodiv_dagster.azure_data import upload_data
from biodiv_dagster.azure_env import environment_version
from biodiv_dagster.launcher.azureml import AzureMLStepLauncher, job_name
from biodiv_dagster.launcher.azureml_client import call_with_retry
from biodiv_dagster.launcher.spec import StepSpec

pytestmark = pytest.mark.azurite

SITE, SPECIES = "yellowstone", "cygnus-buccinator"
PARTITIONS = dg.MultiPartitionsDefinition(
    {"site": dg.StaticPartitionsDefinition([SITE]), "species": dg.StaticPartitionsDefinition([SPECIES])}
)
PARTITION = dg.MultiPartitionKey({"site": SITE, "species": SPECIES})


def _prep_asset(species_name: str = "Cygnus buccinator"):
    @dg.asset(name="prepared_data", partitions_def=PARTITIONS)
    def prepared_data(context: dg.AssetExecutionContext, step_launcher: AzureMLStepLauncher):
        features, _ = step_launcher.data_input(features_asset_name(SITE))
        gold, _ = step_launcher.data_input(species_asset_name(SITE))
        spec = StepSpec(
            PrepArgs(
                site=SITE,
                species=species_name,
                features=features,
                species_dir=gold,
                output=step_launcher.output_location("prepared_data", SITE, SPECIES, context.run_id),
                correlation_id="cid-test-1",
            )
        )
        (result,) = step_launcher.launch(context, spec)
        return result

    return prepared_data


@pytest.fixture
def uploaded(fake_workspace, tmp_path):  # noqa: F811
    root = tmp_path / "datastore"
    generate_datastore(root, sites=["Yellowstone"], species=["Cygnus buccinator"], rows=400, seed=1)
    upload_data(fake_workspace, root, log=lambda line: None)
    return fake_workspace


def _job(asset, run_id=None, instance=None):
    defs = dg.Definitions(assets=[asset], resources={"step_launcher": AzureMLStepLauncher()})
    return defs.get_implicit_global_asset_job_def().execute_in_process(
        partition_key=PARTITION,
        run_id=run_id,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _failure_text(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "the step did not fail"
    info = failures[-1].step_failure_data.error
    return str(info.message) + "\n" + "\n".join(str(c.message) for c in [info.cause] if c)


def test_prep_runs_as_an_azureml_job_and_reports_through_blob(uploaded):
    result = _job(_prep_asset())
    assert result.success
    run_id = result.run_id
    (job_name_,) = uploaded.jobs.created
    assert job_name_ == job_name(run_id, "prep", str(PARTITION), 0)

    mat = result.asset_materializations_for_node("prepared_data")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    expected = f"azureml://datastores/workspaceblobstore/paths/prepared_data/{SITE}/{SPECIES}/{run_id}/"
    assert meta["path"] == expected
    assert meta["azureml_job"] == job_name_
    assert meta["azureml_studio_url"].startswith("https://ml.azure.com/runs/" + job_name_)
    # The files are where the metadata says, and the reported counts describe them.
    import pandas as pd

    folder = uploaded.datastore_path(expected)
    targets = pd.read_parquet(folder / "targets.parquet")
    assert meta["rows"] == len(targets) > 0
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())  # no temp folder left behind

    job = uploaded.jobs.get(job_name_)
    assert job.tags["correlation_id"] == "cid-test-1"
    assert job.tags["dagster_run_id"] == run_id
    assert job.tags["partition"] == str(PARTITION)
    assert (job.tags["site"], job.tags["species"]) == (SITE, SPECIES)
    assert all(v not in (None, "", "None") for v in job.tags.values())
    assert job.environment == f"azureml:biodiv-steps:{environment_version()}"
    assert job.compute == "cpu-cluster"
    assert job.experiment_name == "biodiv"
    # Data assets are pinned to an explicit version, never a label.
    assert job.inputs["features"].path == f"azureml:{features_asset_name(SITE)}:1"
    assert job.inputs["species_dir"].path == f"azureml:{species_asset_name(SITE)}:1"
    # The code snapshot follows .amlignore: the steps are in, tests and local state are out.
    snapshot = uploaded.snapshot(job.code)
    assert (snapshot / "azureml_steps" / "prep.py").is_file()
    assert (snapshot / "biodiv_core" / "data" / "prep.py").is_file()  # only the repository's own data/ is out
    assert not (snapshot / "tests").exists() and not (snapshot / ".venv").exists()
    assert not (snapshot / "node_modules").exists() and not (snapshot / ".git").exists()
    # The context blob is removed when the session ends; the messages stay for a reattaching process.
    blobs = BlobServiceClient.from_connection_string(os.environ["BIODIV_PIPES_BLOB_CONNECTION_STRING"])
    names = [b.name for b in blobs.get_container_client(os.environ["BIODIV_PIPES_CONTAINER"]).list_blobs()]
    assert f"{job_name_}/context.json" not in names
    assert any(n.startswith(f"{job_name_}/messages/") for n in names)


def test_failed_job_raises_the_step_error_and_the_studio_link(uploaded):
    result = _job(_prep_asset(species_name="Anas nonexistens"))
    assert not result.success
    text = _failure_text(result)
    (name,) = uploaded.jobs.created  # a user error is not retried
    assert f"AzureML job {name} ended Failed" in text
    assert "anas_nonexistens_golddata.csv" in text  # the step's own message, from the Pipes log
    assert "exited with status code 2" in text  # AzureML's run error
    assert "https://ml.azure.com/runs/" + name in text


def test_not_responding_job_times_out_and_is_canceled(uploaded):
    uploaded.jobs.behaviours["prep"] = "NotResponding"
    result = _job(_prep_asset())
    assert not result.success
    (name,) = uploaded.jobs.created
    assert "stayed NotResponding for more than 1s" in _failure_text(result)
    assert uploaded.jobs.canceled == [name]
    assert uploaded.jobs.record(name).status == "Canceled"


def test_terminated_run_cancels_its_job(uploaded):
    uploaded.jobs.behaviours["prep"] = "hang"

    def interrupt_when_running():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if uploaded.jobs.created and uploaded.jobs.record(uploaded.jobs.created[0]).status == "Running":
                time.sleep(0.3)  # let the launcher observe Running
                os.kill(os.getpid(), signal.SIGINT)  # what `dagster run terminate` does to the step process
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=interrupt_when_running)
    with raise_interrupts_as(DagsterExecutionInterruptedError):
        watcher.start()
        try:
            result = _job(_prep_asset())
        except DagsterExecutionInterruptedError:
            result = None
    watcher.join()
    assert result is None or not result.success
    (name,) = uploaded.jobs.created
    assert uploaded.jobs.canceled == [name]
    assert uploaded.jobs.record(name).status == "Canceled"


def test_restarted_step_reattaches_instead_of_submitting_again(uploaded):
    run_id = str(uuid.uuid4())
    first = _job(_prep_asset(), run_id=run_id)
    assert first.success
    # The orchestrator restarts the same run (fresh process and instance): the job is found by name
    # and its results are read back from the messages it wrote; nothing new is submitted.
    uploaded.jobs.flaky_gets = 1  # and a dropped connection on the way is retried
    second = _job(_prep_asset(), run_id=run_id)
    assert second.success
    assert len(uploaded.jobs.created) == 1
    meta = [r.asset_materializations_for_node("prepared_data")[0].metadata for r in (first, second)]
    assert meta[0]["rows"] == meta[1]["rows"] and meta[0]["path"] == meta[1]["path"]


def test_transient_job_failure_is_resubmitted_as_a_new_attempt(uploaded):
    uploaded.jobs.behaviours["prep"] = "transient_once"
    result = _job(_prep_asset())
    assert result.success
    first, second = uploaded.jobs.created
    assert first.endswith("-a0") and second.endswith("-a1")
    assert uploaded.jobs.record(first).status == "Failed"


def test_control_plane_calls_retry_transient_http_errors_only():
    calls = []

    def flaky(fail_with):
        calls.append(1)
        if len(calls) < 3:
            raise fail_with
        return "ok"

    assert call_with_retry(flaky, ServiceResponseError("reset"), base_delay=0.001) == "ok"
    assert len(calls) == 3
    calls.clear()
    busy = HttpResponseError("busy")
    busy.status_code = 503
    assert call_with_retry(flaky, busy, base_delay=0.001) == "ok"
    calls.clear()
    denied = HttpResponseError("forbidden")
    denied.status_code = 403
    with pytest.raises(HttpResponseError):
        call_with_retry(flaky, denied, base_delay=0.001)
    assert len(calls) == 1
