"""Step `train_to_deploy`: fit on all prepared data with the best parameters, save MLflow model `lgbm_gbif_model`.

    python -m azureml_steps.train_to_deploy --prepared DIR --best-parameters DIR --output DIR --num-threads T
        [--correlation-id ID]

Materializes `deployable_model`; the registration sensor registers and deploys it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting

ASSET_KEY = "deployable_model"
MODEL_DIR = "lgbm_gbif_model"
logger = logging.getLogger("azureml_steps.train_to_deploy")


def build_parser():
    p = _cli.parser("train_to_deploy", __doc__.splitlines()[0])
    p.add_argument("--prepared", required=True, help="prepared_data folder (features.parquet, targets.parquet)")
    p.add_argument("--best-parameters", required=True, help="best_parameters folder (best_parameters.json)")
    p.add_argument("--output", required=True, help="output folder for lgbm_gbif_model/ and model_metadata.json")
    p.add_argument("--num-threads", type=int, required=True, help="LightGBM threads (never left to LightGBM)")
    return p


def main(prepared: str, best_parameters: str, output: str, num_threads: int, correlation_id: str | None = None) -> dict:
    from biodiv_core.stages import run_train_to_deploy

    summary = run_train_to_deploy(
        prepared=prepared,
        best_parameters=best_parameters,
        output=output,
        num_threads=num_threads,
        correlation_id=correlation_id,
    )
    reporting.report(ASSET_KEY, model_metadata(summary, output, correlation_id))
    return summary


def model_metadata(summary: dict[str, Any], output: str, correlation_id: str | None) -> dict[str, Any]:
    folder = Path(output)
    model_path = folder / MODEL_DIR
    saved = json.loads((folder / "model_metadata.json").read_text())
    run_id = saved.get("run_id") or summary.get("mlflow_run_id") or summary.get("run_id")
    run_uri = saved.get("run_uri") or summary.get("mlflow_run_uri") or summary.get("run_uri")
    metadata: dict[str, Any] = {
        "path": reporting.path(output),
        "correlation_id": reporting.text(correlation_id or ""),
        "model_path": reporting.path(model_path),
        "model_uri": reporting.text(model_path.resolve().as_uri()),
        "model_name": reporting.text(saved.get("model_name", MODEL_DIR)),
        "model_files": reporting.as_json(sorted(p.name for p in model_path.iterdir()) if model_path.is_dir() else []),
    }
    if run_id:
        metadata["mlflow_run_id"] = reporting.text(run_id)
    if run_uri:
        metadata["mlflow_run_uri"] = reporting.text(run_uri)
    return metadata


def cli(argv=None) -> int:
    return _cli.cli("train_to_deploy", build_parser, main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(cli())
