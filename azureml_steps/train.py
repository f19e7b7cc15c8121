"""Step `train`: prepared data -> best LightGBM parameters (hyperopt TPE over k-fold CV) and the train/test split.

    python -m azureml_steps.train --prepared DIR --params-config FILE --best-parameters DIR --split DIR
        --n-folds K --max-evals N --seed S --num-threads T [--correlation-id ID]

Materializes two assets: `best_parameters` and `train_test_split`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting

BEST_KEY, SPLIT_KEY = "best_parameters", "train_test_split"
logger = logging.getLogger("azureml_steps.train")


def build_parser():
    p = _cli.parser("train", __doc__.splitlines()[0])
    p.add_argument("--prepared", required=True, help="prepared_data folder (features.parquet, targets.parquet)")
    p.add_argument("--params-config", required=True, help="lgbm_params.yml: initial guess and search space")
    p.add_argument("--best-parameters", required=True, help="output folder for best_parameters.json, trials.json")
    p.add_argument("--split", required=True, help="output folder for x/y train/test parquet files")
    p.add_argument("--n-folds", type=int, required=True, help="k of the k-fold cross-validation")
    p.add_argument("--max-evals", type=int, required=True, help="hyperopt evaluations")
    p.add_argument("--seed", type=int, required=True, help="random seed (split and tuning)")
    p.add_argument("--num-threads", type=int, required=True, help="LightGBM threads (never left to LightGBM)")
    p.add_argument(
        "--cv-strategy",
        default="random",
        choices=("random", "spatial_blocks", "checkerboard"),
        help="tuning folds (issue 7): random k-fold, or spatial blocks / checkerboard from the coordinates",
    )
    p.add_argument("--block-size-km", type=float, default=20.0, help="block size of the spatial strategies")
    return p


def main(
    prepared: str,
    params_config: str,
    best_parameters: str,
    split: str,
    n_folds: int,
    max_evals: int,
    seed: int,
    num_threads: int,
    correlation_id: str | None = None,
    cv_strategy: str = "random",
    block_size_km: float = 20.0,
) -> dict:
    from biodiv_core.stages import run_train

    summary = run_train(
        prepared=prepared,
        params_config=params_config,
        best_parameters_out=best_parameters,
        split_out=split,
        n_folds=n_folds,
        max_evals=max_evals,
        seed=seed,
        num_threads=num_threads,
        correlation_id=correlation_id,
        cv_strategy=cv_strategy,
        block_size_km=block_size_km,
    )
    reporting.report(BEST_KEY, best_parameters_metadata(summary, best_parameters, correlation_id))
    reporting.report(SPLIT_KEY, split_metadata(summary, split, correlation_id))
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


def trial_curve(trials: list[dict[str, Any]]) -> str:
    """Markdown table: each trial's CV AUC and the best so far (the tuning curve)."""
    rows, best = [], float("-inf")
    for index, trial in enumerate(trials):
        auc = trial.get("auc", -trial["loss"] if "loss" in trial else None)
        if auc is None:
            continue
        best = max(best, float(auc))
        rows.append(
            {
                "trial": trial.get("trial", index),
                "cv_auc": float(auc),
                "best_so_far": best,
                "loss": float(trial.get("loss", -float(auc))),
                "seconds": trial.get("seconds", ""),
                "pruned": trial.get("pruned", ""),
            }
        )
    return reporting.markdown_table(rows, ["trial", "cv_auc", "best_so_far", "loss", "seconds", "pruned"])


def best_parameters_metadata(summary: dict[str, Any], output: str, correlation_id: str | None) -> dict[str, Any]:
    folder = Path(output)
    trials = _trials(folder)
    aucs = [float(t["auc"]) for t in trials if t.get("auc") is not None]
    best_cv_auc = summary.get("best_cv_auc", max(aucs) if aucs else None)
    metadata: dict[str, Any] = {
        "path": reporting.path(output),
        "correlation_id": reporting.text(correlation_id or ""),
        "best_parameters": reporting.as_json(_best_parameters(folder)),
        "trials": reporting.md(trial_curve(trials)),
        "n_trials": reporting.integer(len(trials)),
    }
    if best_cv_auc is not None:
        metadata["best_cv_auc"] = reporting.number(best_cv_auc)
    for key in ("mlflow_run_id", "mlflow_run_uri"):
        if summary.get(key):
            metadata[key] = reporting.text(summary[key])
    for key in ("n_folds", "max_evals", "seed", "num_threads"):
        if summary.get(key) is not None:
            metadata[key] = reporting.integer(summary[key])
    # Issue 7: random vs spatial CV AUC on the training rows and the TSS threshold chosen on their folds.
    quality = summary.get("cv_quality") or {}
    for key in ("threshold", "roc_auc_random_cv", "roc_auc_spatial_cv", "optimism_gap", "tss_cv", "block_size_km"):
        if quality.get(key) is not None:
            metadata[key] = reporting.number(quality[key])
    for key in ("cv_strategy", "spatial_cv_error"):
        if quality.get(key):
            metadata[key] = reporting.text(str(quality[key]))
    return metadata


def split_metadata(summary: dict[str, Any], output: str, correlation_id: str | None) -> dict[str, Any]:
    import pyarrow.parquet as pq

    folder = Path(output)
    train_rows = pq.ParquetFile(folder / "y_train.parquet").metadata.num_rows
    test_rows = pq.ParquetFile(folder / "y_test.parquet").metadata.num_rows
    return {
        "path": reporting.path(output),
        "correlation_id": reporting.text(correlation_id or ""),
        "train_rows": reporting.integer(train_rows),
        "test_rows": reporting.integer(test_rows),
        "test_fraction": reporting.number(test_rows / (train_rows + test_rows) if train_rows + test_rows else 0.0),
    }


def cli(argv=None) -> int:
    return _cli.cli("train", build_parser, main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(cli())
