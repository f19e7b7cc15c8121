"""Clickable MLflow links for Dagster metadata: a step's run, a registered model version, the experiment.

They point at ``settings.mlflow_ui_url()``: the tracking server when it is a web server, else the local MLflow UI
`biodiv ui` starts beside Dagster on the SQLite store. Runs tracked inside AzureML jobs live in the workspace;
their materializations link the job's studio page (``azureml_studio_url``) instead.
"""

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import dagster as dg

from biodiv_core import settings

RUN_KEY = "mlflow_run"
MODEL_VERSION_KEY = "mlflow_model_version"
# MLflow 3's UI remembers a GenAI / machine-learning view per browser; this query picks the classic one.
_ML_VIEW = "?workflowType=machine_learning"


def run_url(run_id: str) -> str:
    return f"{settings.mlflow_ui_url()}/#/runs/{run_id}"


def model_version_url(name: str, version: str | int) -> str:
    return f"{settings.mlflow_ui_url()}/#/models/{quote(str(name), safe='')}/versions/{version}"


def experiment_url(experiment_id: str) -> str:
    return f"{settings.mlflow_ui_url()}/#/experiments/{experiment_id}{_ML_VIEW}"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def run_link(metadata: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """``{"mlflow_run": url}`` for a step's metadata holding ``mlflow_run_id``; {} without one or in AzureML."""
    run_id = _plain(metadata.get("mlflow_run_id"))
    if not run_id or metadata.get("azureml_studio_url") is not None:
        return {}
    return {RUN_KEY: dg.MetadataValue.url(run_url(str(run_id)))}


def local_registry() -> bool:
    """Whether registered models live in the MLflow store the UI shows (not in an AzureML workspace)."""
    return not settings.mlflow_tracking_uri().startswith("azureml:")
