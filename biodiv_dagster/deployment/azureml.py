"""AzureML deployment backend: workspace model registry, batch endpoints and model batch deployments.

- register: from the train_to_deploy job's run. The step uploads the saved ``lgbm_gbif_model`` folder as run
  artifacts (not `mlflow.log_model`: the AzureML tracking server answers MLflow 3's logged-models API with 404),
  and ``Model(type="mlflow_model", path="azureml://jobs/<run>/outputs/artifacts/paths/lgbm_gbif_model/")``
  registers that copy, so the version names its job (``job_name``) and outlives the step's output folder. A model
  that is not on the workspace (trained locally) or whose run holds no copy is registered from its folder. The
  step's output URI is kept as a tag so registering it again returns the same version.
- endpoint_name: `biodiv_core.naming.endpoint_name` with the workspace (or `BIODIV_ENDPOINT_NAMESPACE`) in the
  hash, since batch endpoint names are unique per Azure region, not per workspace.
- deploy: create the partition's `BatchEndpoint` if missing, create a `ModelBatchDeployment` ``v<version>`` with
  explicit settings if missing (or if its model, scoring script, environment or error threshold differ), and make
  it the endpoint's default. Each write happens only when something changes, so a retried run is a no-op. The
  deployment runs our scoring script (`azureml_steps/batch_scoring.py`, in the step environment), not AzureML's
  no-code MLflow scoring, whose predictions carry no gbifid.
- model_location: the registered version downloaded through the SDK (once, into ``BIODIV_HOME/models``): the
  service stores model paths as long ``azureml://subscriptions/...`` URIs, which MLflow cannot open.
- deployed_version: the model version behind the default deployment of the endpoint tagged with the model
  (an endpoint named as today first; one named before the namespace went into the names still counts).

Settings (workspace, compute) come from `AzureMLSettings.from_env()`; the quality gate lives in the
assets and is the same for every backend.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from biodiv_core import naming
from biodiv_core.errors import NotFoundError
from biodiv_core.settings import REPO_ROOT, biodiv_home
from biodiv_dagster.deployment.backend import (
    DEPLOYABLE_TAG,
    NOT_DEPLOYABLE_REASON_TAG,
    DeployedVersion,
    DeploymentBackend,
    EndpointInfo,
    refusal,
)

SOURCE_TAG = "source_uri"
MODEL_TAG = "model_name"
# Explicit batch settings (the service defaults change between API versions).
# One file per mini-batch: a file that cannot be scored fails only itself, so error_threshold counts bad files.
MINI_BATCH_SIZE = 1
INSTANCE_COUNT = 1
MAX_CONCURRENCY_PER_INSTANCE = 1
MAX_RETRIES = 3
RETRY_TIMEOUT_SECONDS = 300
OUTPUT_FILE_NAME = "predictions.csv"
SCORING_SCRIPT = "azureml_steps/batch_scoring.py"  # relative to the code folder (the repository root)
JOB_ARTIFACTS_URI = "azureml://jobs/{run_id}/outputs/artifacts/paths/{folder}/"


class AzureMLDeploymentBackend(DeploymentBackend):
    """The workspace model registry and batch endpoints; settings from the environment (`AzureMLSettings`)."""

    def backend(self) -> AzureMLBackend:
        from biodiv_dagster.azure_settings import AzureMLSettings

        return AzureMLBackend(AzureMLSettings.from_env())

    def endpoint_name(self, site: str, species: str) -> str:
        return self.backend().endpoint_name(site, species)

    def invoke_endpoint(self, endpoint_name: str, input_path: str, output: str):
        """Run the endpoint's batch job on ``input_path``; the `BatchJobReport` names the files it could not score."""
        from biodiv_dagster.deployment.azureml_batch_jobs import invoke_and_report

        backend = self.backend()
        poll = backend.settings.poll_interval_seconds
        return invoke_and_report(backend.client, endpoint_name, input_path, output, poll_seconds=poll)


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


def _asset_version(reference: Any, kind: str = "models") -> tuple[str, str] | None:
    """(name, version) of an asset reference: ``azureml:n:v``, ``n:v`` or an ARM id ``.../<kind>/n/versions/v``."""
    text = str(getattr(reference, "id", None) or reference or "")
    match = re.search(rf"/{kind}/([^/]+)/versions/([^/]+)$", text) or re.fullmatch(
        r"(?:azureml:)?([^:/]+):([^:/]+)", text
    )
    return (match.group(1), match.group(2)) if match else None


def _model_version(reference: Any) -> tuple[str, str] | None:
    return _asset_version(reference, "models")


def _scoring_script(deployment: Any) -> str | None:
    code = getattr(deployment, "code_configuration", None)
    return getattr(code, "scoring_script", None) if code is not None else None


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
        from azure.core.exceptions import ResourceNotFoundError

        try:
            existing = list(self.client.models.list(name=name))
        except ResourceNotFoundError:
            existing = []
        for model in existing:
            if (model.tags or {}).get(SOURCE_TAG) == model_uri:
                return str(model.version)
        run_id = tags.get("mlflow_run_id")
        if run_id and model_uri.startswith("azureml://"):  # trained in the workspace: its job's run holds a copy
            run_copy = JOB_ARTIFACTS_URI.format(run_id=run_id, folder=model_uri.rstrip("/").rsplit("/", 1)[-1])
            try:
                return self._create_model(name, run_copy, model_uri, tags)
            except ResourceNotFoundError:
                pass  # a run without the logged folder (an older step): register the folder itself
        return self._create_model(name, model_uri, model_uri, tags)

    def _create_model(self, name: str, path: str, model_uri: str, tags: dict[str, str]) -> str:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        model = Model(
            name=name,
            path=path,
            type=AssetTypes.MLFLOW_MODEL,
            description=f"LightGBM species-distribution model {name}",
            tags={**tags, SOURCE_TAG: model_uri},
        )
        return str(self.client.models.create_or_update(model).version)

    def model_location(self, name: str, version: str) -> str:
        """A local copy of the registered version (downloaded once; registered versions never change)."""
        from azure.core.exceptions import ResourceNotFoundError

        from biodiv_core.serving.batch_scoring import find_model_folder

        target = biodiv_home() / "models" / self.settings.workspace / name / str(version)
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
            try:
                self.client.models.download(name=name, version=str(version), download_path=str(partial))
                partial.rename(target)  # readers see a whole download or none (a local folder, not a mount)
            except ResourceNotFoundError as exc:
                raise NotFoundError(
                    f"Model {name!r} version {version} is not registered in AzureML workspace "
                    f"{self.settings.workspace!r}: register and deploy it first."
                ) from exc
            except OSError:
                if not target.is_dir():  # another process finished the same download first: use that one
                    raise
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        return str(find_model_folder(target))

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
        from azure.ai.ml.entities import BatchEndpoint

        from biodiv_dagster.azure_env import ensure_environment

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
        existing = {d.name: d for d in self.client.batch_deployments.list(endpoint_name=endpoint_name)}
        current = existing.get(dep_name)
        environment = ensure_environment(self.client, self.settings)
        error_threshold = int(self.settings.batch_error_threshold)
        if (
            current is None
            or _model_version(current.model) != (name, str(version))
            or _scoring_script(current) != SCORING_SCRIPT
            or _asset_version(current.environment, "environments") != _asset_version(environment, "environments")
            or getattr(current, "error_threshold", error_threshold) != error_threshold
        ):
            deployment = build_deployment(
                self.settings, name, version, endpoint_name, environment, {**tags, "model_version": str(version)}
            )
            self.client.batch_deployments.begin_create_or_update(deployment).result()

        endpoint = self._endpoint(endpoint_name)
        if default_deployment(endpoint) != dep_name:
            endpoint.defaults = {"deployment_name": dep_name}
            endpoint = self.client.batch_endpoints.begin_create_or_update(endpoint).result()
        location = getattr(endpoint, "scoring_uri", None) or endpoint_name
        return EndpointInfo(endpoint_name=endpoint_name, model_name=name, version=str(version), location=location)

    # --- rollback ------------------------------------------------------------------------------

    def mark_not_deployable(self, name: str, version: str, reason: str) -> None:
        """Tags only (a version's tags and description are all the service lets change); not archived: an archived
        version drops out of `models.list`, and registering its source again would then add a fresh copy."""
        model = self.client.models.get(name=name, version=version)
        model.tags = {**(model.tags or {}), DEPLOYABLE_TAG: "false", NOT_DEPLOYABLE_REASON_TAG: reason[:5000]}
        self.client.models.create_or_update(model)

    def not_deployable(self, name: str, version: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return refusal(self.client.models.get(name=name, version=version).tags)
        except ResourceNotFoundError:
            return None

    def restore(
        self, name: str, version: str, endpoint_name: str, site: str, species: str, previous: str | None = None
    ) -> str | None:
        """The endpoint's default back on the newest other deployment whose model is deployable (its ``v<N>``
        deployments are kept for this); the endpoint deleted when none is left, so it never serves ``version``."""
        endpoint = self._endpoint(endpoint_name)
        if endpoint is None:
            return None
        deployments = {d.name: d for d in self.client.batch_deployments.list(endpoint_name=endpoint_name)}
        default = deployments.get(default_deployment(endpoint) or "")
        served = _model_version(default.model) if default is not None else None
        if served is not None and served != (name, version):
            return served[1]  # the endpoint serves another version: nothing to undo
        candidates = {}
        for deployment in deployments.values():
            parsed = _model_version(deployment.model)
            if parsed and parsed[0] == name and parsed[1] != version and self.not_deployable(*parsed) is None:
                candidates[parsed[1]] = deployment.name
        if candidates:
            back = str(previous) if str(previous) in candidates else max(candidates, key=_version_order)
            endpoint.defaults = {"deployment_name": candidates[back]}
            self.client.batch_endpoints.begin_create_or_update(endpoint).result()
            return back
        self.client.batch_endpoints.begin_delete(name=endpoint_name).result()
        return None


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def build_deployment(
    settings: Any, name: str, version: str, endpoint_name: str, environment: str, tags: dict[str, str]
):
    """The `ModelBatchDeployment` of ``name`` ``version``: our scoring script in the step environment."""
    from azure.ai.ml.constants import BatchDeploymentOutputAction
    from azure.ai.ml.entities import (
        BatchRetrySettings,
        CodeConfiguration,
        ModelBatchDeployment,
        ModelBatchDeploymentSettings,
        ResourceConfiguration,
    )

    return ModelBatchDeployment(
        name=deployment_name(version),
        endpoint_name=endpoint_name,
        model=f"azureml:{name}:{version}",
        environment=environment,
        # The repository root, as for step jobs (`.amlignore` keeps tests, data and local state out).
        code_configuration=CodeConfiguration(code=str(REPO_ROOT), scoring_script=SCORING_SCRIPT),
        compute=settings.compute,
        description=f"{name} version {version}",
        tags=tags,
        # Instances as resources, not settings.instance_count: the SDK dumps that into both places, and its own
        # YAML loader then rejects the file ("Can't set instance_count when resources is provided").
        resources=ResourceConfiguration(instance_count=INSTANCE_COUNT),
        settings=ModelBatchDeploymentSettings(
            mini_batch_size=MINI_BATCH_SIZE,
            max_concurrency_per_instance=MAX_CONCURRENCY_PER_INSTANCE,
            output_action=BatchDeploymentOutputAction.APPEND_ROW,
            output_file_name=OUTPUT_FILE_NAME,
            retry_settings=BatchRetrySettings(max_retries=MAX_RETRIES, timeout=RETRY_TIMEOUT_SECONDS),
            error_threshold=int(settings.batch_error_threshold),  # 0: a failed file fails the job (-1: ignored)
            logging_level="info",
        ),
    )
