"""The deployment backend: one interface, one implementation per mode (local here, azureml in its own module).

Assets, sensors and the CLI talk only to `DeploymentBackend` (resource key ``deployment_backend``). It picks the
implementation named by ``mode`` and delegates; an implementation is any object with the four methods of
`Backend`. To add a mode, write ``biodiv_dagster/deployment/<mode>.py`` with ``build(resource) -> Backend`` and
add the mode to ``_MODE_MODULES`` (extra settings for the mode go on the resource as optional fields).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Protocol

import dagster as dg

from biodiv_core.errors import ConfigError

DEPLOYED_ALIAS = "deployed"

# mode -> module holding `build(resource) -> Backend`; imported only when the mode is used (keeps imports light).
_MODE_MODULES = {
    "local": "biodiv_dagster.deployment.local",
    "azureml": "biodiv_dagster.deployment.azureml",
}


@dataclass(frozen=True)
class DeployedVersion:
    """The version an endpoint serves, and the ROC-AUC recorded when it was registered (None if unknown)."""

    version: str
    roc_auc: float | None


@dataclass(frozen=True)
class EndpointInfo:
    """Where a deployment lives: ``location`` is the local endpoint record path or the cloud endpoint URI."""

    endpoint_name: str
    model_name: str
    version: str
    location: str


class Backend(Protocol):
    def register(self, model_uri: str, name: str, tags: dict[str, str]) -> str:
        """Register the MLflow model folder at ``model_uri`` under ``name``; return the registry version.

        Registering the same source twice returns the existing version (sensor retries stay idempotent).
        """

    def deployed_version(self, name: str) -> DeployedVersion | None:
        """The version currently deployed for ``name``, or None when nothing is deployed yet."""

    def deploy(self, name: str, version: str, endpoint_name: str, site: str, species: str) -> EndpointInfo:
        """Point the partition's batch endpoint at ``name`` ``version`` (creating the endpoint if needed)."""

    def model_location(self, name: str, version: str) -> str:
        """A local folder or MLflow-loadable URI of the registered model, for batch scoring on this machine."""


def clean_tags(tags: dict[str, object]) -> dict[str, str]:
    """Tags as strings without None values: registries (AzureML in particular) reject null tag values."""
    return {str(key): str(value) for key, value in tags.items() if value is not None and str(value) != ""}


class DeploymentBackend(dg.ConfigurableResource):
    """Registers models and deploys them to batch endpoints; ``mode`` selects where ("local" or "azureml")."""

    mode: str = "local"
    # Local mode: None means biodiv_core.settings (MLFLOW_TRACKING_URI / BIODIV_HOME), read at call time.
    tracking_uri: str | None = None
    endpoints_dir: str | None = None

    def backend(self) -> Backend:
        module_name = _MODE_MODULES.get(self.mode)
        if module_name is None:
            raise ConfigError(
                f"deployment_backend mode {self.mode!r} is unknown: use one of {sorted(_MODE_MODULES)} "
                "(set BIODIV_DEPLOYMENT_MODE or the resource's `mode`)."
            )
        return importlib.import_module(module_name).build(self)

    def register(self, model_uri: str, name: str, tags: dict[str, object]) -> str:
        return self.backend().register(model_uri, name, clean_tags(tags))

    def deployed_version(self, name: str) -> DeployedVersion | None:
        return self.backend().deployed_version(name)

    def deploy(self, name: str, version: str, endpoint_name: str, site: str, species: str) -> EndpointInfo:
        return self.backend().deploy(name, str(version), endpoint_name, site, species)

    def model_location(self, name: str, version: str) -> str:
        return self.backend().model_location(name, str(version))


def default_backend() -> DeploymentBackend:
    """The resource as configured by the environment (``BIODIV_DEPLOYMENT_MODE``, default local)."""
    return DeploymentBackend(mode=os.environ.get("BIODIV_DEPLOYMENT_MODE", "local"))
