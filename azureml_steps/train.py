"""Step `train`: prepared data -> best LightGBM parameters (hyperopt TPE over k-fold CV) and the train/test split.

    python -m azureml_steps.train --site NAME --species NAME --prepared DIR --params-config FILE
        --best-parameters DIR --split DIR --n-folds K --max-evals N --seed S --cv-strategy S --block-size-km KM
        [--num-threads T] [--correlation-id ID]   (all options: --help; contract: biodiv_core.step_args.TrainArgs)

Materializes two assets: `best_parameters` and `train_test_split`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting
from azureml_steps.reports import tuning_report
from biodiv_core.evaluation.outputs import TUNING_HISTORY_FILE
from biodiv_core.step_args import TrainArgs


def main(args: TrainArgs) -> dict:
    from biodiv_core.stages.train import run_train

    summary = run_train(args)
    keys = TrainArgs.asset_keys()
    reporting.report(keys["best_parameters"], best_parameters_metadata(summary, args))
    reporting.report(keys["split"], split_metadata(args))
    return summary


def _trials(folder: Path) -> list[dict[str, Any]]:
    path = folder / "trials.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    trials = data.get("trials", []) if isinstance(data, dict) else data
    return [t for t in trials if isinstance(t, dict)]


def _best_parameters(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / "best_parameters.json").read_text())
    # Either the parameter dict itself or {"best_parameters": {...}, ...}.
    return data.get("best_parameters", data) if isinstance(data, dict) else data


def best_parameters_metadata(summary: dict[str, Any], args: TrainArgs) -> dict[str, Any]:
    folder = Path(args.best_parameters)
    trials = _trials(folder)
    aucs = [float(t["auc"]) for t in trials if t.get("auc") is not None]
    best_cv_auc = summary.get("best_cv_auc", max(aucs) if aucs else None)
    metadata: dict[str, Any] = {
        **reporting.common(args.best_parameters, args),
        "report": reporting.md(tuning_report(summary, trials, _best_parameters(folder), folder / TUNING_HISTORY_FILE)),
        "best_parameters": reporting.as_json(_best_parameters(folder)),
        "n_trials": reporting.integer(len(trials)),
    }
    if best_cv_auc is not None:
        metadata["best_cv_auc"] = reporting.number(best_cv_auc)
    metadata.update(reporting.mlflow_run(summary))
    for key in ("n_folds", "max_evals", "seed", "num_threads"):
        if summary.get(key) is not None:
            metadata[key] = reporting.integer(summary[key])
    # Random vs spatial CV AUC on the training rows and the TSS threshold chosen on their folds.
    quality = summary.get("cv_quality") or {}
    for key in ("threshold", "roc_auc_random_cv", "roc_auc_spatial_cv", "optimism_gap", "tss_cv", "block_size_km"):
        if quality.get(key) is not None:
            metadata[key] = reporting.number(quality[key])
    for key in ("cv_strategy", "spatial_cv_error"):
        if quality.get(key):
            metadata[key] = reporting.text(str(quality[key]))
    return metadata


def split_metadata(args: TrainArgs) -> dict[str, Any]:
    import pyarrow.parquet as pq

    folder = Path(args.split)
    train_rows = pq.ParquetFile(folder / "y_train.parquet").metadata.num_rows
    test_rows = pq.ParquetFile(folder / "y_test.parquet").metadata.num_rows
    return {
        **reporting.common(args.split, args),
        "train_rows": reporting.integer(train_rows),
        "test_rows": reporting.integer(test_rows),
        "test_fraction": reporting.number(test_rows / (train_rows + test_rows) if train_rows + test_rows else 0.0),
    }


def cli(argv=None) -> int:
    return _cli.cli(TrainArgs, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
