"""Step `train_to_deploy`: fit on all prepared data with the best parameters, save MLflow model `lgbm_gbif_model`.

    python -m azureml_steps.train_to_deploy --site NAME --species NAME --prepared DIR --best-parameters DIR
        --output DIR [--num-threads T] [--correlation-id ID]   (contract: biodiv_core.step_args.DeployArgs)

Materializes `deployable_model`; the registration sensor registers and deploys it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting
from biodiv_core.step_args import DeployArgs

MODEL_DIR = "lgbm_gbif_model"  # biodiv_core.serving.mlflow_model.MODEL_DIR_NAME, without importing MLflow here


def main(args: DeployArgs) -> dict:
    from biodiv_core.stages.train_to_deploy import run_train_to_deploy

    summary = run_train_to_deploy(args)
    reporting.report(DeployArgs.asset_keys()["output"], model_metadata(summary, args))
    return summary


def model_metadata(summary: dict[str, Any], args: DeployArgs) -> dict[str, Any]:
    folder = Path(args.output)
    model_path = folder / MODEL_DIR
    saved = json.loads((folder / "model_metadata.json").read_text())
    run_id = saved.get("run_id") or summary.get("mlflow_run_id") or summary.get("run_id")
    run_uri = saved.get("run_uri") or summary.get("mlflow_run_uri") or summary.get("run_uri")
    metadata: dict[str, Any] = {
        **reporting.common(args.output, args),
        "model_path": reporting.path(model_path),
        "model_uri": reporting.text(model_path.resolve().as_uri()),
        "model_name": reporting.text(saved.get("model_name", MODEL_DIR)),
        "model_files": reporting.as_json(sorted(p.name for p in model_path.iterdir()) if model_path.is_dir() else []),
    }
    if run_id:
        metadata["mlflow_run_id"] = reporting.text(run_id)
    if run_uri:
        metadata["mlflow_run_uri"] = reporting.text(run_uri)
    if summary.get("mlflow_experiment_id"):
        metadata["mlflow_experiment_id"] = reporting.text(summary["mlflow_experiment_id"])
    return metadata


def cli(argv=None) -> int:
    return _cli.cli(DeployArgs, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
