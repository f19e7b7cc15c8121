"""The seed's stages after prep: folder in, folder out, a JSON-able summary back (docs/contracts.md).

- ``run_train``: split the prepared data, tune on the training part -> best_parameters.json, trials.json
  and the split folder (x_train/x_test/y_train/y_test parquet).
- ``run_score``: fit on the training part with the best parameters, evaluate on the test part.
- ``run_train_to_deploy``: fit on all prepared data, save the MLflow model folder + model_metadata.json.
Every output folder is written atomically (nothing is left behind on error); every stage is one MLflow
run tagged with the correlation id, which also goes on every log line.
"""

import json
import logging
import os
from pathlib import Path

import pandas as pd

from biodiv_core import tracking
from biodiv_core.atomic import atomic_output_dir
from biodiv_core.errors import DataContractError, NotFoundError
from biodiv_core.prep import load_prepared, run_prep  # noqa: F401  (re-exported: the contract)

logger = logging.getLogger(__name__)

ID_COLUMN = "gbifid"
TARGET_COLUMN = "target"
BEST_PARAMETERS_FILE = "best_parameters.json"
TRIALS_FILE = "trials.json"
QUALITY_FILE = "quality.json"  # issue-7 metrics of the score stage
SPLIT_FILES = ("x_train.parquet", "x_test.parquet", "y_train.parquet", "y_test.parquet")
TEST_SIZE = 0.2


class _Log(logging.LoggerAdapter):
    """Puts ``[correlation_id=...]`` on every line."""

    def process(self, msg, kwargs):
        return f"{msg} [correlation_id={self.extra['correlation_id']}]", kwargs


def _log(correlation_id: str | None) -> _Log:
    return _Log(logger, {"correlation_id": correlation_id})


def _context(prepared: Path) -> dict:
    """site/species from the prep summary (tags and names), when prep recorded them."""
    summary = prepared / "summary.json"
    if not summary.is_file():
        return {}
    stats = json.loads(summary.read_text())
    return {k: stats[k] for k in ("site", "species") if stats.get(k)}


def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    frame.reset_index().to_parquet(path, index=False)


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist: pass the split folder written by the train step.")
    frame = pd.read_parquet(path)
    return frame.set_index(ID_COLUMN) if ID_COLUMN in frame.columns else frame


def read_best_parameters(folder: str | os.PathLike) -> dict:
    path = Path(folder) / BEST_PARAMETERS_FILE
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist: pass the best-parameters folder written by the train step.")
    try:
        params = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataContractError(f"{path} is not valid JSON ({exc}): rerun the train step.") from exc
    if not isinstance(params, dict) or "num_boost_round" not in params:
        raise DataContractError(f"{path} has no num_boost_round: rerun the train step to regenerate it.")
    return params


def read_split(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    folder = Path(folder)
    x_train, x_test, y_train, y_test = (_read_frame(folder / name) for name in SPLIT_FILES)
    return x_train, x_test, y_train[TARGET_COLUMN], y_test[TARGET_COLUMN]


def run_train(
    prepared: str | os.PathLike,
    params_config: str | os.PathLike,
    best_parameters_out: str | os.PathLike,
    split_out: str | os.PathLike,
    n_folds: int = 5,
    max_evals: int = 20,
    seed: int = 0,
    num_threads: int = 1,
    correlation_id: str | None = None,
    *,
    site: str | None = None,
    species: str | None = None,
    cv_strategy: str = "random",
    block_size_km: float = 20.0,
) -> dict:
    """Split the prepared data (stratified, seeded) and tune LightGBM on the training part.

    ``cv_strategy`` (random | spatial_blocks | checkerboard, issue 7) picks the tuning folds; after tuning,
    cv_quality.json records random vs spatial CV AUC and the TSS threshold chosen on those folds.
    """
    from biodiv_core.model_quality import cv_quality, training_folds, write_cv_quality
    from biodiv_core.params import load_params
    from biodiv_core.spatial_cv import validate_strategy
    from biodiv_core.split import split_train_test
    from biodiv_core.tuning import tune

    log = _log(correlation_id)
    config = load_params(params_config)  # fail on a bad config before reading data
    validate_strategy(cv_strategy)
    prepared = Path(prepared)
    data = load_prepared(prepared)
    context = {**_context(prepared), **{k: v for k, v in (("site", site), ("species", species)) if v}}
    split = split_train_test(data.features, data.targets, test_size=TEST_SIZE, seed=seed)
    log.info(
        "train %s: %d train / %d test rows, %d folds, %d evaluations, %d threads",
        context.get("species", prepared),
        len(split.x_train),
        len(split.x_test),
        n_folds,
        max_evals,
        num_threads,
    )
    with tracking.tracked_run("train", correlation_id=correlation_id, **context) as run:
        tracking.log_params(
            {"n_folds": n_folds, "max_evals": max_evals, "seed": seed, "num_threads": num_threads}
            | {"train_rows": len(split.x_train), "test_rows": len(split.x_test)}
            | {"cv_strategy": cv_strategy, "block_size_km": block_size_km}
        )
        folds = None
        if cv_strategy != "random":
            folds = training_folds(split.x_train, split.y_train, data.coords, cv_strategy, n_folds, block_size_km, seed)
        result = tune(
            split.x_train,
            split.y_train,
            config,
            n_folds=n_folds,
            max_evals=max_evals,
            seed=seed,
            num_threads=num_threads,
            on_trial=tracking.log_trial,
            folds=folds,
        )
        tracking.log_params(result.best_params, prefix="best_")
        tracking.log_metrics({"best_cv_auc": result.best_cv_auc})
        quality = cv_quality(
            split.x_train,
            split.y_train,
            data.coords,
            result.best_params,
            cv_strategy=cv_strategy,
            n_folds=n_folds,
            block_size_km=block_size_km,
            seed=seed,
            num_threads=num_threads,
        )
        tracking.log_metrics({k: v for k, v in quality.items() if isinstance(v, float)})
        with atomic_output_dir(best_parameters_out) as best_tmp, atomic_output_dir(split_out) as split_tmp:
            (best_tmp / BEST_PARAMETERS_FILE).write_text(json.dumps(result.best_params, indent=2) + "\n")
            (best_tmp / TRIALS_FILE).write_text(json.dumps(result.trials, indent=2) + "\n")
            write_cv_quality(best_tmp, quality)
            for name, frame in zip(
                SPLIT_FILES,
                (
                    split.x_train,
                    split.x_test,
                    split.y_train.to_frame(TARGET_COLUMN),
                    split.y_test.to_frame(TARGET_COLUMN),
                ),
                strict=True,
            ):
                _write_frame(frame, split_tmp / name)
            tracking.log_artifact(best_tmp / BEST_PARAMETERS_FILE)
            tracking.log_artifact(best_tmp / TRIALS_FILE)
        run_id = run.info.run_id
    log.info(
        "train: best CV AUC %.4f after %d trials -> %s", result.best_cv_auc, len(result.trials), best_parameters_out
    )
    return {
        **context,
        "best_parameters": result.best_params,
        "best_cv_auc": result.best_cv_auc,
        "trials": [{"trial": t["trial"], "loss": t["loss"], "auc": t["auc"]} for t in result.trials],
        "train_rows": len(split.x_train),
        "test_rows": len(split.x_test),
        "n_folds": n_folds,
        "max_evals": max_evals,
        "seed": seed,
        "cv_quality": quality,
        **{k: quality.get(k) for k in ("cv_strategy", "threshold", "roc_auc_random_cv", "roc_auc_spatial_cv")},
        "best_parameters_path": str(best_parameters_out),
        "split_path": str(split_out),
        "mlflow_run_id": run_id,
        "correlation_id": correlation_id,
    }


def run_score(
    best_parameters: str | os.PathLike,
    split: str | os.PathLike,
    output: str | os.PathLike,
    num_threads: int = 1,
    correlation_id: str | None = None,
    *,
    site: str | None = None,
    species: str | None = None,
) -> dict:
    """Fit on the training part with the best parameters; score the test part."""
    from biodiv_core.evaluate import flat_metrics, write_results
    from biodiv_core.model import fit_model, predict_proba
    from biodiv_core.model_quality import held_out_quality, read_cv_quality, read_threshold

    log = _log(correlation_id)
    params = read_best_parameters(best_parameters)
    x_train, x_test, y_train, y_test = read_split(split)
    context = {k: v for k, v in (("site", site), ("species", species)) if v}
    with tracking.tracked_run("score", correlation_id=correlation_id, **context) as run:
        tracking.log_params(params)
        booster = fit_model(x_train, y_train, params, num_threads)
        from biodiv_core.evaluate import evaluate

        metrics = evaluate(y_test.to_numpy(), predict_proba(booster, x_test))
        tracking.log_metrics(flat_metrics(metrics))
        with atomic_output_dir(output) as tmp:
            paths = write_results(metrics, tmp)
            # Issue 7: metrics at the threshold chosen on training folds, baseline, explanations.
            quality = held_out_quality(
                booster,
                x_train,
                y_train,
                x_test,
                y_test,
                tmp,
                threshold=read_threshold(best_parameters),
                cv=read_cv_quality(best_parameters),
            )
            (tmp / QUALITY_FILE).write_text(json.dumps(quality, indent=2) + "\n")
            tracking.log_metrics({k: v for k, v in quality.items() if isinstance(v, float)})
            tracking.log_artifacts(tmp, artifact_path="scores")
        run_id = run.info.run_id
    log.info(
        "score: ROC-AUC %.4f, accuracy %.4f on %d test rows -> %s",
        metrics["roc_auc"],
        metrics["accuracy"],
        len(y_test),
        output,
    )
    final = Path(output)
    return {
        **context,
        "roc_auc": metrics["roc_auc"],
        "accuracy": metrics["accuracy"],
        "metrics": metrics,
        "confusion_matrix": str(final / paths["confusion_matrix"].name),
        "classification_report": str(final / paths["classification_report"].name),
        "metrics_path": str(final / paths["metrics"].name),
        **{k: v for k, v in quality.items() if k not in ("images", "calibration")},
        "images": {name: str(final / relative) for name, relative in quality["images"].items()},
        "test_rows": len(y_test),
        "mlflow_run_id": run_id,
        "correlation_id": correlation_id,
    }


def run_train_to_deploy(
    prepared: str | os.PathLike,
    best_parameters: str | os.PathLike,
    output: str | os.PathLike,
    num_threads: int = 1,
    correlation_id: str | None = None,
    *,
    site: str | None = None,
    species: str | None = None,
) -> dict:
    """Fit on all prepared data; save the MLflow model folder and model_metadata.json into ``output``."""
    from biodiv_core import mlflow_model
    from biodiv_core.model import fit_model
    from biodiv_core.model_quality import read_threshold

    log = _log(correlation_id)
    params = read_best_parameters(best_parameters)
    threshold = read_threshold(best_parameters)  # TSS-maximising, chosen on training folds (issue 7)
    prepared = Path(prepared)
    data = load_prepared(prepared)
    context = {**_context(prepared), **{k: v for k, v in (("site", site), ("species", species)) if v}}
    registry_name = None
    if "site" in context and "species" in context:
        from biodiv_core.naming import model_name

        registry_name = model_name(context["site"], context["species"])
    with tracking.tracked_run("train_to_deploy", correlation_id=correlation_id, **context) as run:
        tracking.log_params(params)
        booster = fit_model(data.features, data.targets, params, num_threads)
        run_id = run.info.run_id
        with atomic_output_dir(output) as tmp:
            model_dir = mlflow_model.save_model(
                booster,
                tmp,
                sample=data.features,
                threshold=threshold,
                metadata={k: v for k, v in {"registry_name": registry_name, **context}.items() if v},
            )
            tracking.log_artifacts(model_dir, artifact_path=mlflow_model.MODEL_DIR_NAME)
            metadata = mlflow_model.write_metadata(
                tmp,
                run_id,
                registry_name=registry_name,
                features=list(booster.feature_name()),
                threshold=threshold,
                num_boost_round=params["num_boost_round"],
                rows=len(data.features),
                **context,
            )
    model_path = Path(output) / mlflow_model.MODEL_DIR_NAME
    log.info("train_to_deploy: model on %d rows saved to %s (run %s)", len(data.features), model_path, run_id)
    return {
        **context,
        "model_uri": str(model_path),
        "model_path": str(model_path),
        "model_name": metadata["model_name"],
        "registry_name": registry_name,
        "mlflow_run_id": run_id,
        "mlflow_run_uri": metadata["run_uri"],
        "rows": len(data.features),
        "threshold": threshold,
        "correlation_id": correlation_id,
    }
