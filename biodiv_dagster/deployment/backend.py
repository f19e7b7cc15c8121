"""The deployment backend resource (key ``deployment_backend``): the base every backend extends.

Assets, sensors and the CLI talk only to `DeploymentBackend`. A backend subclass (`LocalDeploymentBackend`
in local.py, `AzureMLDeploymentBackend` in azureml.py) builds its registry/endpoint client in ``backend()``,
an object with the four methods of `Backend`; `biodiv_dagster.backends` picks the subclass from the
environment. To add one, subclass `DeploymentBackend` in a module of its own and add it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import dagster as dg

DEPLOYED_ALIAS = "deployed"
# Registry tags of a version that must not be served (its deployment failed, or its training run was retracted):
# ``deployable`` = "false" and the reason. The gate never deploys it and a rollback never goes back to it. Delete
# the two tags in the registry to let the gate consider the version again.
DEPLOYABLE_TAG = "deployable"
NOT_DEPLOYABLE_REASON_TAG = "not_deployable_reason"


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

    def mark_not_deployable(self, name: str, version: str, reason: str) -> None:
        """Tag ``version`` ``deployable=false`` with ``reason`` (the version itself stays in the registry)."""

    def not_deployable(self, name: str, version: str) -> str | None:
        """Why ``version`` must not be deployed (its tags), or None."""

    def restore(
        self, name: str, version: str, endpoint_name: str, site: str, species: str, previous: str | None = None
    ) -> str | None:
        """Make sure the endpoint does not serve ``version``: if it does (or serves nothing), point it back at the
        newest version deployed before that is still deployable (``previous``, the one served before a failed
        deploy, first), or take the endpoint down when there is none. Returns the version it serves afterwards."""


def refusal(tags: dict[str, str] | None) -> str | None:
    """The reason a version with these registry tags must not be deployed, or None."""
    tags = tags or {}
    if str(tags.get(DEPLOYABLE_TAG, "")).lower() != "false":
        return None
    return tags.get(NOT_DEPLOYABLE_REASON_TAG) or "tagged deployable=false"


def clean_tags(tags: dict[str, object]) -> dict[str, str]:
    """Tags as strings without None values: registries (AzureML in particular) reject null tag values."""
    return {str(key): str(value) for key, value in tags.items() if value is not None and str(value) != ""}


class DeploymentBackend(dg.ConfigurableResource):
    """Registers models and deploys them to batch endpoints; subclasses say where."""

    def backend(self) -> Backend:
        raise NotImplementedError

    def register(self, model_uri: str, name: str, tags: dict[str, object]) -> str:
        return self.backend().register(model_uri, name, clean_tags(tags))

    def deployed_version(self, name: str) -> DeployedVersion | None:
        return self.backend().deployed_version(name)

    def deploy(self, name: str, version: str, endpoint_name: str, site: str, species: str) -> EndpointInfo:
        return self.backend().deploy(name, str(version), endpoint_name, site, species)

    def model_location(self, name: str, version: str) -> str:
        return self.backend().model_location(name, str(version))

    def not_deployable(self, name: str, version: str) -> str | None:
        return self.backend().not_deployable(name, str(version))

    def withdraw(
        self, name: str, version: str, reason: str, endpoint_name: str, site: str, species: str, previous=None
    ) -> str | None:
        """Mark ``version`` not deployable and take it off the endpoint (`Backend.restore`); the version served now."""
        backend = self.backend()
        backend.mark_not_deployable(name, str(version), reason)
        return backend.restore(name, str(version), endpoint_name, site, species, previous=previous)

    def restore(
        self, name: str, version: str, endpoint_name: str, site: str, species: str, previous=None
    ) -> str | None:
        return self.backend().restore(name, str(version), endpoint_name, site, species, previous=previous)

    def version_url(self, name: str, version: str) -> str | None:
        """A web page showing the registered version (None: the backend has none to offer)."""
        return None

    def endpoint_name(self, site: str, species: str) -> str:
        """The partition's batch endpoint name; a backend may qualify it (AzureML: names are unique per region)."""
        from biodiv_core.naming import endpoint_name

        return endpoint_name(site, species)
