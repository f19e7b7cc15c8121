"""AzureML deployment backend: workspace model registry, batch endpoints and model batch deployments.

- register: the MLflow model folder the train_to_deploy step wrote on the datastore becomes
  ``Model(type="mlflow_model")`` (not `mlflow.log_model`: the AzureML tracking server rejects MLflow 3's
  logged-models API). The source URI is kept as a tag so registering it again returns the same version.
- endpoint_name: `biodiv_core.naming.endpoint_name` with the workspace (or `BIODIV_ENDPOINT_NAMESPACE`) in the
  hash, since batch endpoint names are unique per Azure region, not per workspace.
- deploy: create the partition's `BatchEndpoint` if missing, create a `ModelBatchDeployment` ``v<version>`` with
  explicit settings if missing (or if its model or error threshold differ), and make it the endpoint's default.
  Each write happens only when something changes, so a retried run is a no-op.
- deployed_version: the model version behind the default deployment of the endpoint tagged with the model
  (an endpoint named as today first; one named before the namespace went into the names still counts).

Settings (workspace, compute) come from `AzureMLSettings.from_env()`; the quality gate lives in the
assets and is the same for every backend.
"""

from __future__ import annotations

import re
from typing import Any

from biodiv_core import naming
from biodiv_core.errors import NotFoundError
from biodiv_dagster.deployment.backend import DeployedVersion, DeploymentBackend, EndpointInfo

SOURCE_TAG = "source_uri"
MODEL_TAG = "model_name"
# Explicit batch settings (the service defaults change between API versions).
MINI_BATCH_SIZE = 10
INSTANCE_COUNT = 1
MAX_CONCURRENCY_PER_INSTANCE = 1
MAX_RETRIES = 3
RETRY_TIMEOUT_SECONDS = 300
OUTPUT_FILE_NAME = "predictions.csv"


class AzureMLDeploymentBackend(DeploymentBackend):
    """The workspace model registry and batch endpoints; settings from the environment (`AzureMLSettings`)."""

    def backend(self) -> AzureMLBackend:
        from biodiv_dagster.azure_settings import AzureMLSettings

        return AzureMLBackend(AzureMLSettings.from_env())

    def endpoint_name(self, site: str, species: str) -> str:
        return self.backend().endpoint_name(site, species)


def deployment_name(version: str) -> str:
    return f"v{re.sub(r'[^a-zA-Z0-9-]', '-', str(version))}"


def default_deployment(endpoint: Any) -> str | None:
    """The endpoint's default deployment: `defaults` is a dict on new entities, a REST model after a get()."""
    defaults = endpoint.defaults
    if isinstance(defaults, dict):
        return defaults.get("deployment_name") or defaults.get("deploymentName")
    return getattr(defaults, "deployment_name", None)


def _parse_auc(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _model_version(reference: Any) -> tuple[str, str] | None:
    """(name, version) of a deployment's model: ``azureml:n:v``, ``n:v`` or an ARM id ``.../models/n/versions/v``."""
    text = str(getattr(reference, "id", None) or reference or "")
    match = re.search(r"/models/([^/]+)/versions/([^/]+)$", text) or re.fullmatch(
        r"(?:azureml:)?([^:/]+):([^:/]+)", text
    )
    return (match.group(1), match.group(2)) if match else None


class AzureMLBackend:
    def __init__(self, settings: Any, ml_client: Any = None):
        self.settings = settings
        self._ml_client = ml_client

    @property
    def client(self):
        if self._ml_client is None:
            self._ml_client = self.settings.ml_client()
        return self._ml_client

    # --- registry -----------------------------------------------------------------------------

    def register(self, model_uri: str, name: str, tags: dict[str, str]) -> str:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model
        from azure.core.exceptions import ResourceNotFoundError

        try:
            existing = list(self.client.models.list(name=name))
        except ResourceNotFoundError:
            existing = []
        for model in existing:
            if (model.tags or {}).get(SOURCE_TAG) == model_uri:
                return str(model.version)
        model = Model(
            name=name,
            path=model_uri,
            type=AssetTypes.MLFLOW_MODEL,
            description=f"LightGBM species-distribution model {name}",
            tags={**tags, SOURCE_TAG: model_uri},
        )
        return str(self.client.models.create_or_update(model).version)

    def model_location(self, name: str, version: str) -> str:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return str(self.client.models.get(name=name, version=str(version)).path)
        except ResourceNotFoundError as exc:
            raise NotFoundError(
                f"Model {name!r} version {version} is not registered in AzureML workspace "
                f"{self.settings.workspace!r}: register and deploy it first."
            ) from exc

    # --- endpoints ----------------------------------------------------------------------------

    def endpoint_name(self, site: str, species: str) -> str:
        """The partition's batch endpoint name in this workspace (unique in the region, see the module doc)."""
        return naming.endpoint_name(site, species, namespace=self.settings.endpoint_namespace_key())

    def _named_as_today(self, endpoint: Any) -> bool:
        tags = endpoint.tags or {}
        return (
            "site" in tags and "species" in tags and endpoint.name == self.endpoint_name(tags["site"], tags["species"])
        )

    def _endpoint(self, endpoint_name: str):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.client.batch_endpoints.get(name=endpoint_name)
        except ResourceNotFoundError:
            return None

    def deployed_version(self, name: str) -> DeployedVersion | None:
        from azure.core.exceptions import ResourceNotFoundError

        endpoints = [e for e in self.client.batch_endpoints.list() if (e.tags or {}).get(MODEL_TAG) == name]
        endpoints.sort(key=lambda e: not self._named_as_today(e))  # older-named endpoints only as a fallback
        for endpoint in endpoints:
            default = default_deployment(endpoint)
            if not default:
                continue
            deployment = self.client.batch_deployments.get(name=default, endpoint_name=endpoint.name)
            parsed = _model_version(deployment.model)
            if parsed is None:
                continue
            try:
                model = self.client.models.get(name=parsed[0], version=parsed[1])
                auc = _parse_auc((model.tags or {}).get("roc_auc"))
            except ResourceNotFoundError:
                auc = None
            return DeployedVersion(version=parsed[1], roc_auc=auc)
        return None

    def deploy(self, name: str, version: str, endpoint_name: str, site: str, species: str) -> EndpointInfo:
        from azure.ai.ml.constants import BatchDeploymentOutputAction
        from azure.ai.ml.entities import (
            BatchEndpoint,
            BatchRetrySettings,
            ModelBatchDeployment,
            ModelBatchDeploymentSettings,
        )

        tags = {MODEL_TAG: name, "site": site, "species": species}
        endpoint = self._endpoint(endpoint_name)
        if endpoint is None:
            endpoint = BatchEndpoint(
                name=endpoint_name,
                description=f"Batch scoring of {species} habitat suitability at {site}",
                tags=tags,
            )
            endpoint = self.client.batch_endpoints.begin_create_or_update(endpoint).result()

        dep_name = deployment_name(version)
        model_ref = f"azureml:{name}:{version}"
        existing = {d.name: d for d in self.client.batch_deployments.list(endpoint_name=endpoint_name)}
        current = existing.get(dep_name)
        error_threshold = int(self.settings.batch_error_threshold)
        if (
            current is None
            or _model_version(current.model) != (name, str(version))
            or getattr(current, "error_threshold", error_threshold) != error_threshold
        ):
            deployment = ModelBatchDeployment(
                name=dep_name,
                endpoint_name=endpoint_name,
                model=model_ref,
                compute=self.settings.compute,
                description=f"{name} version {version}",
                tags={**tags, "model_version": str(version)},
                settings=ModelBatchDeploymentSettings(
                    mini_batch_size=MINI_BATCH_SIZE,
                    instance_count=INSTANCE_COUNT,
                    max_concurrency_per_instance=MAX_CONCURRENCY_PER_INSTANCE,
                    output_action=BatchDeploymentOutputAction.APPEND_ROW,
                    output_file_name=OUTPUT_FILE_NAME,
                    retry_settings=BatchRetrySettings(max_retries=MAX_RETRIES, timeout=RETRY_TIMEOUT_SECONDS),
                    error_threshold=error_threshold,  # 0: a failed file fails the job (-1 ignored them all)
                    logging_level="info",
                ),
            )
            self.client.batch_deployments.begin_create_or_update(deployment).result()

        endpoint = self._endpoint(endpoint_name)
        if default_deployment(endpoint) != dep_name:
            endpoint.defaults = {"deployment_name": dep_name}
            endpoint = self.client.batch_endpoints.begin_create_or_update(endpoint).result()
        location = getattr(endpoint, "scoring_uri", None) or endpoint_name
        return EndpointInfo(endpoint_name=endpoint_name, model_name=name, version=str(version), location=location)
