"""Local deployment backend: the MLflow model registry on the local store and a JSON record per batch endpoint.

The deployed version is the registry alias ``deployed``; the endpoint record
``<endpoints_dir>/<endpoint_name>.json`` says which model version the local batch endpoint serves, and is
what `biodiv batch-score` and the UI metadata point at.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from biodiv_core import settings
from biodiv_core.atomic import file_lock
from biodiv_core.errors import NotFoundError
from biodiv_dagster.deployment.backend import (
    DEPLOYABLE_TAG,
    DEPLOYED_ALIAS,
    NOT_DEPLOYABLE_REASON_TAG,
    DeployedVersion,
    DeploymentBackend,
    EndpointInfo,
    refusal,
)

RUNS_PREFIX = "runs:/"
DEPLOYED_AT_TAG = "deployed_at"  # set on a version each time it is deployed: where a rollback may go back to


class LocalDeploymentBackend(DeploymentBackend):
    """The MLflow registry of the local tracking store and JSON endpoint records under BIODIV_HOME."""

    # None: biodiv_core.settings (MLFLOW_TRACKING_URI / BIODIV_HOME), read at call time.
    tracking_uri: str | None = None
    endpoints_dir: str | None = None

    def backend(self) -> LocalBackend:
        return LocalBackend(tracking_uri=self.tracking_uri, endpoints_dir=self.endpoints_dir)

    def version_url(self, name: str, version: str) -> str | None:
        from biodiv_dagster.mlflow_links import model_version_url

        return model_version_url(name, version)


def _parse_auc(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def write_json_atomically(path: Path, payload: dict) -> None:
    """Readers see the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def model_lock(name: str) -> Iterator[None]:
    """One process at a time per model name (register, deploy): MLflow's SQLite registry fails two concurrent
    alias updates with a UNIQUE constraint error, and alias and endpoint record must name the same version."""
    with file_lock(settings.biodiv_home() / "locks" / f"{name}.lock"):  # shared by every process on BIODIV_HOME
        yield


class LocalBackend:
    def __init__(self, tracking_uri: str | None = None, endpoints_dir: str | None = None):
        self.tracking_uri = tracking_uri or settings.mlflow_tracking_uri()
        self.endpoints_dir = Path(endpoints_dir) if endpoints_dir else settings.endpoints_dir()

    def _client(self):
        from mlflow import MlflowClient  # heavy import, only when a backend method runs

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def register(self, model_uri: str, name: str, tags: dict[str, str]) -> str:
        with model_lock(name):  # "same source -> same version" holds under concurrency too
            return self._register(model_uri, name, tags)

    def _register(self, model_uri: str, name: str, tags: dict[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        client = self._client()
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source, run_id = self._run_source(client, model_uri, tags.get("mlflow_run_id"))
        # Same model registered before (a retried run): reuse that version instead of adding a copy.
        for existing in client.search_model_versions(f"name = '{name}'"):
            if existing.source in (source, model_uri):
                return str(existing.version)
        version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
        return str(version.version)

    @staticmethod
    def _run_source(client, model_uri: str, run_id: str | None) -> tuple[str, str | None]:
        """(source, run_id) to register: the model as logged to its train-to-deploy run, ``runs:/<id>/<folder>``,
        so the version names its run and outlives the storage folder; the folder itself when that run holds no
        copy (a model saved outside a run)."""
        from mlflow.exceptions import MlflowException

        from biodiv_core.serving.batch_scoring import local_model_path
        from biodiv_core.serving.mlflow_model import MODEL_DIR_NAME

        if not run_id:
            return model_uri, None
        artifact = Path(local_model_path(model_uri)).name or MODEL_DIR_NAME
        try:
            logged = {Path(item.path).name for item in client.list_artifacts(run_id, artifact)}
        except MlflowException:
            return model_uri, None
        if "MLmodel" not in logged:
            return model_uri, None
        return f"runs:/{run_id}/{artifact}", run_id

    def deployed_version(self, name: str) -> DeployedVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            version = self._client().get_model_version_by_alias(name, DEPLOYED_ALIAS)
        except MlflowException as exc:
            # Unknown model, or a model without the alias: nothing deployed yet.
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return DeployedVersion(version=str(version.version), roc_auc=_parse_auc(version.tags.get("roc_auc")))

    def deploy(self, name: str, version: str, endpoint_name: str, site: str, species: str) -> EndpointInfo:
        with model_lock(name):
            return self._deploy(name, version, endpoint_name, site, species)

    def _deploy(self, name: str, version: str, endpoint_name: str, site: str, species: str) -> EndpointInfo:
        client = self._client()
        model_version = client.get_model_version(name, version)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(name, version, DEPLOYED_AT_TAG, now)
        client.set_registered_model_alias(name, DEPLOYED_ALIAS, version)
        record_path = self.endpoints_dir / f"{endpoint_name}.json"
        write_json_atomically(
            record_path,
            {
                "endpoint_name": endpoint_name,
                "model_name": name,
                "version": version,
                "model_uri": f"models:/{name}/{version}",
                "model_source": model_version.source,
                "site": site,
                "species": species,
                "updated_at": now,
            },
        )
        return EndpointInfo(endpoint_name=endpoint_name, model_name=name, version=version, location=str(record_path))

    # --- rollback ------------------------------------------------------------------------------

    def mark_not_deployable(self, name: str, version: str, reason: str) -> None:
        with model_lock(name):
            client = self._client()
            client.set_model_version_tag(name, version, DEPLOYABLE_TAG, "false")
            client.set_model_version_tag(name, version, NOT_DEPLOYABLE_REASON_TAG, reason[:5000])

    def not_deployable(self, name: str, version: str) -> str | None:
        return refusal(self._client().get_model_version(name, version).tags)

    def restore(
        self, name: str, version: str, endpoint_name: str, site: str, species: str, previous: str | None = None
    ) -> str | None:
        with model_lock(name):
            client = self._client()
            current = self.deployed_version(name)
            if current is not None and current.version != version:
                return current.version  # the endpoint serves another version: nothing to undo
            fallback = self._fallback(client, name, version, previous)
            if fallback is not None:
                self._deploy(name, fallback, endpoint_name, site, species)
                return fallback
            # Nothing deployable to go back to: the endpoint serves nothing rather than this version.
            if current is not None:
                client.delete_registered_model_alias(name, DEPLOYED_ALIAS)
            (self.endpoints_dir / f"{endpoint_name}.json").unlink(missing_ok=True)
            return None

    @staticmethod
    def _fallback(client, name: str, version: str, previous: str | None) -> str | None:
        """``previous`` if still deployable, else the newest other version that was deployed and is deployable."""
        versions = {str(v.version): v for v in client.search_model_versions(f"name = '{name}'")}
        usable = [v for v, mv in versions.items() if v != version and refusal(mv.tags) is None]
        if previous is not None and str(previous) in usable:
            return str(previous)
        deployed = [v for v in usable if versions[v].tags.get(DEPLOYED_AT_TAG) and v.isdigit()]
        return max(deployed, key=int, default=None)

    def model_location(self, name: str, version: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self._client()
        try:
            source = client.get_model_version(name, version).source
        except MlflowException as exc:
            raise NotFoundError(
                f"Model {name!r} version {version} is not in the registry at {self.tracking_uri}: "
                "register and deploy it first (biodiv run or the register_and_deploy_job)."
            ) from exc
        if not source.startswith(RUNS_PREFIX):
            return source
        # The run's artifact folder: local (file:) for the local store; anything else is downloaded once.
        run_id, _, path = source[len(RUNS_PREFIX) :].partition("/")
        location = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}"
        if location.startswith("file:") or "://" not in location:
            return location
        return client.download_artifacts(run_id, path, dst_path=tempfile.mkdtemp(prefix="biodiv-model-"))
