"""Shared setup of the AzureML backend tests: environment, fake workspace client, Azurite channel."""

import uuid

import pytest
from azure_fakes import FakeMLClient

from biodiv_dagster import azure_settings

WORKSPACE_ENV = {
    "AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZUREML_RESOURCE_GROUP": "rg-biodiv",
    "AZUREML_WORKSPACE": "ws-biodiv",
}


def workspace_client(tmp_path, monkeypatch) -> FakeMLClient:
    """A configured workspace (environment) whose client is a FakeMLClient under ``tmp_path/workspace``."""
    for key, value in WORKSPACE_ENV.items():
        monkeypatch.setenv(key, value)
    client = FakeMLClient(tmp_path / "workspace")
    monkeypatch.setattr(azure_settings, "make_ml_client", lambda settings: client)
    return client


@pytest.fixture
def fake_workspace(tmp_path, monkeypatch, azurite):
    """Environment of a configured azureml backend whose workspace client is a FakeMLClient."""
    import dagster._core.pipes.utils as pipes_utils

    env = {
        "AZUREML_COMPUTE": "cpu-cluster",
        "BIODIV_PIPES_BLOB_CONNECTION_STRING": azurite,
        "BIODIV_PIPES_CONTAINER": f"pipes-{uuid.uuid4().hex[:12]}",
        "AZUREML_POLL_INTERVAL_SECONDS": "0.1",
        "BIODIV_PIPES_MESSAGE_INTERVAL": "0.2",
        "AZUREML_STUCK_TIMEOUT_SECONDS": "1",
        "AZUREML_RETRY_DELAY_SECONDS": "0",
        "AZUREML_MAX_JOB_RETRIES": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Dagster waits 10 s for messages after a job that never wrote any (stuck/canceled jobs); 1 s is enough here.
    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    client = workspace_client(tmp_path, monkeypatch)
    yield client
    client.jobs.wait_all(timeout=30)
