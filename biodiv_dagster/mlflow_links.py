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
# MLflow 3's UI opens in its GenAI view unless the browser chose otherwise (or the URL says so): this query
# picks the classic machine-learning view, where runs, metrics and models are.
_ML_VIEW = "?workflowType=machine_learning"


def run_url(run_id: str, experiment_id: str | None = None) -> str:
    """The run's page; with its experiment id, since the UI's experiment-less route redirects without the query."""
    if experiment_id:
        return f"{settings.mlflow_ui_url()}/#/experiments/{experiment_id}/runs/{run_id}{_ML_VIEW}"
    return f"{settings.mlflow_ui_url()}/#/runs/{run_id}{_ML_VIEW}"


def model_version_url(name: str, version: str | int) -> str:
    return f"{settings.mlflow_ui_url()}/#/models/{quote(str(name), safe='')}/versions/{version}{_ML_VIEW}"


def experiment_url(experiment_id: str) -> str:
    return f"{settings.mlflow_ui_url()}/#/experiments/{experiment_id}{_ML_VIEW}"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def run_link(metadata: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """``{"mlflow_run": url}`` for a step's metadata holding ``mlflow_run_id`` (and ``mlflow_experiment_id``);
    {} without one or in AzureML."""
    run_id = _plain(metadata.get("mlflow_run_id"))
    if not run_id or metadata.get("azureml_studio_url") is not None:
        return {}
    experiment_id = _plain(metadata.get("mlflow_experiment_id"))
    return {RUN_KEY: dg.MetadataValue.url(run_url(str(run_id), str(experiment_id) if experiment_id else None))}
