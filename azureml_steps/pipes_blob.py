"""Step side of the Blob Pipes channel used by AzureML jobs.

`reporting.py` calls `pipes_channel_kwargs()` and passes the result to `open_dagster_pipes(**kwargs)`.
The orchestrator's bootstrap parameters say which channel it chose: Blob context parameters carry a
`bucket` (container), so no extra switch is needed. Locally (subprocess client) the result is `{}` and
dagster_pipes keeps its default file/env channel.

The storage account comes from the job's environment (set by the launcher):
BIODIV_PIPES_BLOB_CONNECTION_STRING (Azurite, key-based accounts) or BIODIV_PIPES_BLOB_ACCOUNT_URL
reached with DefaultAzureCredential (the compute's managed identity). A user-assigned identity is picked by
its client id: AZURE_CLIENT_ID (the launcher sets it from AZUREML_JOB_IDENTITY_CLIENT_ID), else the
DEFAULT_IDENTITY_CLIENT_ID AzureML compute sets; with neither, the system-assigned identity.
"""

import os

from dagster_pipes import (
    PipesAzureBlobStorageContextLoader,
    PipesAzureBlobStorageMessageWriter,
    PipesEnvVarParamsLoader,
)


def _uses_blob_channel() -> bool:
    loader = PipesEnvVarParamsLoader()
    if not loader.is_dagster_pipes_process():
        return False
    return "bucket" in loader.load_context_params()


def blob_service_client():
    """Blob client for the Pipes channel, from the job's environment variables."""
    from azure.storage.blob import BlobServiceClient

    connection_string = os.environ.get("BIODIV_PIPES_BLOB_CONNECTION_STRING")
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string)
    account_url = os.environ.get("BIODIV_PIPES_BLOB_ACCOUNT_URL")
    if not account_url:
        raise RuntimeError(
            "The job was started with a Blob Pipes channel but neither BIODIV_PIPES_BLOB_CONNECTION_STRING nor "
            "BIODIV_PIPES_BLOB_ACCOUNT_URL is set: see README 'Run on Azure ML'."
        )
    return BlobServiceClient(account_url, credential=credential())


def credential():
    """DefaultAzureCredential for the job's identity (AZURE_CLIENT_ID, else DEFAULT_IDENTITY_CLIENT_ID)."""
    from azure.identity import DefaultAzureCredential

    client_id = os.environ.get("AZURE_CLIENT_ID") or os.environ.get("DEFAULT_IDENTITY_CLIENT_ID")
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


def pipes_channel_kwargs() -> dict:
    """Keyword arguments for `dagster_pipes.open_dagster_pipes`: the Blob loader/writer, or {} for the default."""
    if not _uses_blob_channel():
        return {}
    client = blob_service_client()
    interval = float(os.environ.get("BIODIV_PIPES_MESSAGE_INTERVAL", "10"))
    return {
        "context_loader": PipesAzureBlobStorageContextLoader(client),
        "message_writer": PipesAzureBlobStorageMessageWriter(client, interval=interval),
    }
