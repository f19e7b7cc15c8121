"""The launcher's job calls through the real azure-ai-ml `MLClient` over the stub service (tests/azure_stub_service).

The job body is the one our launcher builds (`build_command`, serialized by azure-ai-ml), checked against the SDK's
generated REST model; reading it back, its status and studio link, the run-history error that decides a retry
(on the host the SDK discovers from the workspace), and a cancel (a POST polled through ``Location``) are
azure-ai-ml's own. The job's execution stays with the fake workspace (tests/azure_fakes.py).
"""

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object
from azure_stub_service import StubCredential, StubService

from biodiv_core.step_args import PrepArgs
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.launcher.azureml import build_command, datastore_uri
from biodiv_dagster.launcher.azureml_client import call_with_retry, failure_reason, job_status
from biodiv_dagster.launcher.spec import StepSpec

SUB, GROUP, WS = "00000000-0000-0000-0000-000000000000", "rg-biodiv", "ws-biodiv"
NAME = "biodiv-prep-1a2b3c4d-0123456789-a0"


@pytest.fixture
def stub(monkeypatch):
    for key, value in {"AZUREML_SUBSCRIPTION_ID": SUB, "AZUREML_RESOURCE_GROUP": GROUP, "AZUREML_WORKSPACE": WS,
                       "AZUREML_COMPUTE": "cpu-cluster"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    service = StubService(SUB, GROUP, WS)
    # The stub answers Retry-After: 0, on which the SDK's pollers wait polling_interval (30 s by default).
    return service, MLClient(StubCredential(), SUB, GROUP, WS, transport=service, polling_interval=0.01)


def _submitted_body(service) -> dict:
    spec = StepSpec(
        PrepArgs(
            site="yellowstone",
            species="Cygnus buccinator",
            features="azureml:yellowstone-training-features:3",
            species_dir="azureml:yellowstone-training-species:3",
            output=datastore_uri("workspaceblobstore", "prepared_data", "yellowstone", "cygnus-buccinator", "run-1"),
            correlation_id="cid-1",
        )
    )
    job = build_command(
        spec,
        AzureMLSettings.from_env(),
        name=NAME,
        environment="azureml:biodiv-steps:abc123",
        tags={"step": "prep", "correlation_id": "cid-1"},
        display_name="prep yellowstone/cygnus-buccinator",
        code=f"{service.prefix}/codes/snapshot/versions/1",  # what the SDK sends after uploading the folder
    )
    return to_rest_job_object(job).as_dict(exclude_readonly=True)  # what the SDK's PUT carries


def test_our_job_body_fits_the_rest_model_and_reads_back_through_the_sdk(stub):
    service, client = stub
    body = _submitted_body(service)
    service.seed_job(NAME, body, "Running")  # seed_job checks the body against JobBase
    outputs = body["properties"]["outputs"]
    assert outputs["output"]["mode"] == "ReadWriteMount" and outputs["output"]["uri"].endswith("/cygnus-buccinator/")
    job = call_with_retry(client.jobs.get, NAME)
    assert job_status(job) == "Running" and job.studio_url.startswith(f"https://ml.azure.com/runs/{NAME}")
    assert job.environment_variables["BIODIV_CORRELATION_ID"] == "cid-1"
    assert job.inputs["features"].path == "azureml:yellowstone-training-features:3"
    assert "${{outputs.output}}/run-1" in job.command


def test_the_retry_decision_reads_the_run_history_error_the_sdk_fetches(stub):
    service, client = stub
    service.seed_job(NAME, _submitted_body(service), "Failed", ("ServiceError", "Compute node was preempted."))
    assert failure_reason(client, NAME) == ("ServiceError", "Compute node was preempted.")
    history = [r.path for r in service.requests if r.path.startswith("/history/")]
    assert history and history[0].endswith(f"/workspaces/{WS}/runs/{NAME}/details")  # the discovered host's API
    assert failure_reason(client, "biodiv-unknown-job") == (None, None)  # a 404 there: no reason, no crash


def test_a_job_is_canceled_through_the_sdk_poller(stub):
    service, client = stub
    service.seed_job(NAME, _submitted_body(service), "Running")
    client.jobs.begin_cancel(NAME).result()
    assert f"POST jobs/{NAME}/cancel" in service.paths("POST") and service.polls == ["Succeeded"]
    assert job_status(client.jobs.get(NAME)) == "Canceled"
