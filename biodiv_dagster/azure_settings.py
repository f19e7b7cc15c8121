"""AzureML settings: one place for the workspace, compute, datastore and Pipes channel (DESIGN section 8).

Every field can come from an environment variable (`AzureMLSettings.from_env()`), so the same code runs
from the CLI, from Dagster resources built with `dg.EnvVar`, and in tests. Credentials never live
here: the workspace and the Pipes storage account are reached with `DefaultAzureCredential` (a
connection string is accepted only for the Pipes channel, for Azurite or key-based accounts).
"""

import os

import dagster as dg
from pydantic import Field

from biodiv_core.errors import ConfigError

# field -> (environment variable, default; None means required)
ENV_VARS: dict[str, tuple[str, str | None]] = {
    "subscription_id": ("AZUREML_SUBSCRIPTION_ID", None),
    "resource_group": ("AZUREML_RESOURCE_GROUP", None),
    "workspace": ("AZUREML_WORKSPACE", None),
    "compute": ("AZUREML_COMPUTE", "cpu-cluster"),
    "datastore": ("AZUREML_DATASTORE", "workspaceblobstore"),
    "instance_type": ("AZUREML_INSTANCE_TYPE", "Standard_DS3_v2"),
    "environment_name": ("AZUREML_ENVIRONMENT", "biodiv-steps"),
    "experiment_name": ("AZUREML_EXPERIMENT", "biodiv"),
    "pipes_account_url": ("BIODIV_PIPES_BLOB_ACCOUNT_URL", ""),
    "pipes_connection_string": ("BIODIV_PIPES_BLOB_CONNECTION_STRING", ""),
    "pipes_container": ("BIODIV_PIPES_CONTAINER", "dagster-pipes"),
    "poll_interval_seconds": ("AZUREML_POLL_INTERVAL_SECONDS", "10"),
    "stuck_timeout_seconds": ("AZUREML_STUCK_TIMEOUT_SECONDS", "1800"),
    "message_interval_seconds": ("BIODIV_PIPES_MESSAGE_INTERVAL", "10"),
    "max_job_retries": ("AZUREML_MAX_JOB_RETRIES", "2"),
    "retry_delay_seconds": ("AZUREML_RETRY_DELAY_SECONDS", "60"),
    "job_identity_client_id": ("AZUREML_JOB_IDENTITY_CLIENT_ID", ""),
    "endpoint_namespace": ("BIODIV_ENDPOINT_NAMESPACE", ""),
    "batch_error_threshold": ("AZUREML_BATCH_ERROR_THRESHOLD", "0"),
}


class AzureMLSettings(dg.ConfigurableResource):
    """Where AzureML jobs run and how they talk back to Dagster.

    The Pipes channel is a Blob container: `pipes_account_url` (`https://<account>.blob.core.windows.net`,
    reached with DefaultAzureCredential, also inside the job) or `pipes_connection_string` (Azurite,
    or an account key you accept to see in the job definition).
    """

    subscription_id: str = Field(description="Azure subscription id (AZUREML_SUBSCRIPTION_ID).")
    resource_group: str = Field(description="Resource group of the workspace (AZUREML_RESOURCE_GROUP).")
    workspace: str = Field(description="AzureML workspace name (AZUREML_WORKSPACE).")
    compute: str = Field(default="cpu-cluster", description="Compute cluster that runs step jobs.")
    datastore: str = Field(default="workspaceblobstore", description="Datastore holding step outputs.")
    instance_type: str = Field(default="Standard_DS3_v2", description="VM size of batch deployments.")
    environment_name: str = Field(default="biodiv-steps", description="Registered environment of the steps.")
    experiment_name: str = Field(default="biodiv", description="Experiment the step jobs are grouped under.")
    pipes_account_url: str = Field(default="", description="Blob account URL of the Pipes channel.")
    pipes_connection_string: str = Field(default="", description="Blob connection string (Azurite/key).")
    pipes_container: str = Field(default="dagster-pipes", description="Container of the Pipes channel.")
    poll_interval_seconds: float = Field(default=10.0, description="Seconds between job status polls.")
    stuck_timeout_seconds: float = Field(
        default=1800.0, description="Fail a job that stays NotResponding or Paused this long."
    )
    message_interval_seconds: float = Field(default=10.0, description="Seconds between Pipes message uploads.")
    max_job_retries: int = Field(default=2, description="Resubmissions of a job that failed for a transient reason.")
    retry_delay_seconds: float = Field(default=60.0, description="Wait before resubmitting after a transient failure.")
    job_identity_client_id: str = Field(
        default="",
        description="Client id of the user-assigned identity the jobs' DefaultAzureCredential uses (AZURE_CLIENT_ID "
        "in the job); empty: the compute's DEFAULT_IDENTITY_CLIENT_ID, else its system-assigned identity.",
    )
    endpoint_namespace: str = Field(
        default="",
        description="Hashed into batch endpoint names (unique per Azure region); empty: the workspace "
        "(subscription/resource group/workspace).",
    )
    batch_error_threshold: int = Field(
        default=0,
        ge=-1,
        description="Failed files a batch scoring job tolerates (0: the first failure fails the job; -1: ignore all).",
    )

    @classmethod
    def from_env(cls, **overrides) -> "AzureMLSettings":
        """Settings from AZUREML_* / BIODIV_PIPES_* environment variables; `overrides` win."""
        values: dict = {}
        missing = []
        for field, (var, default) in ENV_VARS.items():
            value = os.environ.get(var) or default
            if value is None and field not in overrides:
                missing.append(var)
            elif value is not None:
                values[field] = value
        if missing:
            raise ConfigError(
                f"AzureML settings missing: set {', '.join(missing)} (see the README section 'Run on Azure ML')."
            )
        values.update(overrides)
        return cls(**values)

    def ml_client(self):
        return make_ml_client(self)

    def blob_service_client(self):
        return make_blob_service_client(self)

    def job_channel_env(self) -> dict[str, str]:
        """Environment variables a job needs to open the Blob Pipes channel (read by azureml_steps.pipes_blob)."""
        if self.pipes_connection_string:
            return {"BIODIV_PIPES_BLOB_CONNECTION_STRING": self.pipes_connection_string}
        return {"BIODIV_PIPES_BLOB_ACCOUNT_URL": self.pipes_account_url}

    def job_identity_env(self) -> dict[str, str]:
        """AZURE_CLIENT_ID for the job's DefaultAzureCredential when a user-assigned identity is configured."""
        return {"AZURE_CLIENT_ID": self.job_identity_client_id} if self.job_identity_client_id else {}

    def endpoint_namespace_key(self) -> str:
        """What makes this workspace's endpoint names unique in the region (`naming.endpoint_name` hashes it)."""
        return self.endpoint_namespace or f"{self.subscription_id}/{self.resource_group}/{self.workspace}"


def make_ml_client(settings: AzureMLSettings):
    """The workspace client (tests replace this function with one returning a fake)."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(
        credential=DefaultAzureCredential(),
        subscription_id=settings.subscription_id,
        resource_group_name=settings.resource_group,
        workspace_name=settings.workspace,
    )


def make_blob_service_client(settings: AzureMLSettings):
    """The Blob client of the Pipes channel; the container is created on first use."""
    from azure.storage.blob import BlobServiceClient

    if settings.pipes_connection_string:
        client = BlobServiceClient.from_connection_string(settings.pipes_connection_string)
    elif settings.pipes_account_url:
        from azure.identity import DefaultAzureCredential

        client = BlobServiceClient(settings.pipes_account_url, credential=DefaultAzureCredential())
    else:
        raise ConfigError(
            "The Pipes Blob channel is not configured: set BIODIV_PIPES_BLOB_ACCOUNT_URL "
            "(https://<account>.blob.core.windows.net) or BIODIV_PIPES_BLOB_CONNECTION_STRING."
        )
    return client
