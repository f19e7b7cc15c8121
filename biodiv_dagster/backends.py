"""The one place that picks the backends from the environment.

``BIODIV_LAUNCHER_MODE`` (local | azureml) chooses where steps run, ``BIODIV_DEPLOYMENT_MODE`` (local |
azureml) where models are registered and deployed. Both default to local, the embedded laptop setup.
"""

from __future__ import annotations

import os

from biodiv_core.errors import ConfigError
from biodiv_dagster.deployment.azureml import AzureMLDeploymentBackend
from biodiv_dagster.deployment.backend import DeploymentBackend
from biodiv_dagster.deployment.local import LocalDeploymentBackend
from biodiv_dagster.launcher.azureml import AzureMLStepLauncher
from biodiv_dagster.launcher.base import StepLauncher
from biodiv_dagster.launcher.local import LocalStepLauncher

LAUNCHER_ENV, DEPLOYMENT_ENV = "BIODIV_LAUNCHER_MODE", "BIODIV_DEPLOYMENT_MODE"
STEP_LAUNCHERS: dict[str, type[StepLauncher]] = {"local": LocalStepLauncher, "azureml": AzureMLStepLauncher}
DEPLOYMENT_BACKENDS: dict[str, type[DeploymentBackend]] = {
    "local": LocalDeploymentBackend,
    "azureml": AzureMLDeploymentBackend,
}


def _choose(env: str, classes: dict, what: str):
    mode = os.environ.get(env, "").strip() or "local"
    if mode not in classes:
        raise ConfigError(f"{env}={mode!r} is not a {what}: use one of {', '.join(sorted(classes))}.")
    return classes[mode]()


def step_launcher_from_env() -> StepLauncher:
    return _choose(LAUNCHER_ENV, STEP_LAUNCHERS, "step launcher")


def deployment_backend_from_env() -> DeploymentBackend:
    return _choose(DEPLOYMENT_ENV, DEPLOYMENT_BACKENDS, "deployment backend")
