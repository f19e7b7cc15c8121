"""Quality numbers beyond the seed's metrics for the train and score stages, behind two calls.

- :func:`cv_quality` (train stage, after tuning): out-of-fold predictions of the training rows with the
  best parameters under random and spatial folds -> ``roc_auc_random_cv``, ``roc_auc_spatial_cv``, the
  TSS-maximising ``threshold`` (chosen on the folds of ``cv_strategy``) and the baseline's CV AUCs.
  Written next to best_parameters.json as ``cv_quality.json`` (best_parameters.json stays pure
  LightGBM parameters).
- :func:`held_out_quality` (score stage): the held-out metrics at that threshold (TSS, kappa, Brier,
  Boyce), the calibration image, the baseline scored on the same rows and the lift, explanations.

The train-to-deploy stage copies the threshold into model_metadata.json and the MLmodel metadata,
where batch scoring reads it.
"""

import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from biodiv_core.errors import BiodivError, DataContractError
from biodiv_core.evaluation.baseline import baseline_oof, baseline_scores
from biodiv_core.evaluation.explain import explain_model, plot_calibration
from biodiv_core.run_settings import DEFAULTS, SPATIAL_STRATEGIES
from biodiv_core.training.model import as_target, lightgbm_fit_predict, predict_proba
from biodiv_core.training.spatial_cv import (
    has_coordinates,
    make_folds,
    out_of_fold_predictions,
    validate_strategy,
)
from biodiv_core.training.thresholds import best_tss_threshold, calibration_table, threshold_metrics

CV_QUALITY_FILE = "cv_quality.json"
# What prep says about the data that every quality report must repeat: for a presence-only species, that AUC
# compares presences with background points (None with real absences). The train stage copies it from the
# prepared data into cv_quality.json, the score stage from there into quality.json and the scores metadata.
PREP_KEYS = ("auc_caveat",)
DEFAULT_THRESHOLD = 0.5


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p))


def training_folds(
    features: pd.DataFrame,
    targets,
    coords: pd.DataFrame | None,
    cv_strategy: str = DEFAULTS.cv_strategy,
    n_folds: int = DEFAULTS.n_folds,
    block_size_km: float = DEFAULTS.block_size_km,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds of ``cv_strategy`` for rows of ``features``; ``coords`` aligned by index (gbifid) or None."""
    validate_strategy(cv_strategy)
    frame = _aligned_coords(features, coords)
    return make_folds(frame, np.asarray(targets).ravel(), cv_strategy, n_folds, block_size_km, seed)


def _aligned_coords(features: pd.DataFrame, coords: pd.DataFrame | None) -> pd.DataFrame:
    if coords is None:
        return pd.DataFrame(index=features.index)
    missing = features.index.difference(coords.index)
    if len(missing):
        raise DataContractError(
            f"{len(missing)} training rows have no coordinates in coords.parquet (e.g. gbifid {missing[0]}); "
            "re-run prep so features and coordinates come from the same data."
        )
    return coords.loc[features.index]


def cv_quality(
    features: pd.DataFrame,
    targets,
    coords: pd.DataFrame | None,
    params: dict,
    *,
    cv_strategy: str = DEFAULTS.cv_strategy,
    n_folds: int = DEFAULTS.n_folds,
    block_size_km: float = DEFAULTS.block_size_km,
    seed: int = 0,
    num_threads: int = 1,
    baseline: bool = True,
    tuned_oof: np.ndarray | None = None,
) -> dict:
    """Cross-validated quality of ``params`` on the training rows (JSON-able dict, see module doc).

    The spatial score uses ``cv_strategy`` when it is spatial, else ``spatial_blocks``; it is None when
    there are no coordinates or the blocks cannot make valid folds (``spatial_cv_error`` says why).
    ``tuned_oof``: the tuner's out-of-fold probabilities of ``params`` on the folds of ``cv_strategy``
    (`TuningResult.oof`, the same folds this function makes): used instead of refitting those folds.
    """
    y = as_target(targets)
    frame = _aligned_coords(features, coords)
    # With two or more threads, the baseline's folds (scikit-learn) fit in a thread beside LightGBM's spatial
    # refits, which leave it one of the threads (LightGBM releases the GIL while it trains).
    parallel = baseline and num_threads > 1
    fit_predict = lightgbm_fit_predict(params, num_threads - 1 if parallel else num_threads)
    out: dict = {"cv_strategy": validate_strategy(cv_strategy), "n_folds": n_folds, "block_size_km": block_size_km}

    if tuned_oof is not None and len(tuned_oof) != len(y):
        raise ValueError(f"tuned_oof has {len(tuned_oof)} rows, the training rows are {len(y)}.")

    def predictions(strategy: str, strategy_folds) -> np.ndarray:
        if strategy == cv_strategy and tuned_oof is not None:
            return np.asarray(tuned_oof, dtype=float)
        return out_of_fold_predictions(fit_predict, features, y, strategy_folds)

    folds = {"random": make_folds(frame, y, "random", n_folds, block_size_km, seed)}
    spatial = cv_strategy if cv_strategy in SPATIAL_STRATEGIES else "spatial_blocks"
    out["spatial_strategy"] = spatial
    if cv_strategy in SPATIAL_STRATEGIES or has_coordinates(frame):
        try:
            folds[spatial] = make_folds(frame, y, spatial, n_folds, block_size_km, seed)
        except BiodivError as exc:
            if cv_strategy == spatial:
                raise
            out["spatial_cv_error"] = str(exc)
    if baseline:
        base_oof = (_in_background if parallel else _now)(baseline_oof, features, y, folds[cv_strategy])
    oof = {strategy: predictions(strategy, strategy_folds) for strategy, strategy_folds in folds.items()}

    out["roc_auc_random_cv"] = _auc(y, oof["random"])
    out["roc_auc_spatial_cv"] = _auc(y, oof[spatial]) if spatial in oof else None
    out["optimism_gap"] = (
        out["roc_auc_random_cv"] - out["roc_auc_spatial_cv"] if out["roc_auc_spatial_cv"] is not None else None
    )
    # The threshold comes from the folds the user asked for, never from the test rows.
    chosen = oof[cv_strategy]
    threshold, tss_cv = best_tss_threshold(y, chosen)
    out["threshold"] = threshold
    out["tss_cv"] = tss_cv
    out["roc_auc_cv"] = _auc(y, chosen)
    if baseline:
        out["baseline_roc_auc_cv"] = _auc(y, base_oof())
        out["lift_cv"] = out["roc_auc_cv"] - out["baseline_roc_auc_cv"]
    return _finite(out)


def _now(function: Callable[..., Any], *args) -> Callable[[], Any]:
    result = function(*args)
    return lambda: result


def _in_background(function: Callable[..., Any], *args) -> Callable[[], Any]:
    """Start ``function(*args)`` in a thread; the returned call waits for its result (or raises its error)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="biodiv-beside")
    future = pool.submit(function, *args)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return future.result


def write_cv_quality(folder: str | os.PathLike, quality: dict) -> Path:
    path = Path(folder) / CV_QUALITY_FILE
    path.write_text(json.dumps(quality, indent=2))
    return path


def read_cv_quality(folder: str | os.PathLike) -> dict:
    """``cv_quality.json`` of a best-parameters folder, or {} for folders written before it existed."""
    path = Path(folder) / CV_QUALITY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def read_threshold(folder: str | os.PathLike) -> float:
    """The stored TSS threshold of a best-parameters folder (0.5 when there is none)."""
    threshold = read_cv_quality(folder).get("threshold")
    return float(threshold) if threshold is not None and 0.0 < float(threshold) < 1.0 else DEFAULT_THRESHOLD


def held_out_quality(
    model,
    x_train: pd.DataFrame,
    y_train,
    x_test: pd.DataFrame,
    y_test,
    output: str | os.PathLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    cv: dict | None = None,
    n_top: int = 5,
    seed: int = 0,
    num_threads: int = 1,
) -> dict:
    """Held-out quality metrics of a fitted ``model``; writes ``calibration_curve.png`` and explanations.

    Returns flat JSON-able keys: threshold, tss, kappa, sensitivity, specificity, brier, boyce,
    baseline_roc_auc, lift, top_features, the cv numbers passed in ``cv`` (with `PREP_KEYS`: what prep said
    about the data, e.g. ``auc_caveat``) and ``images`` (paths relative to ``output``).
    """
    output = Path(output)
    y_test = as_target(y_test)
    probability = predict_proba(model, x_test)
    metrics = threshold_metrics(y_test, probability, threshold)
    roc_auc = metrics.pop("roc_auc")
    out = {**metrics}
    # With two or more threads, the baseline (scikit-learn) fits beside the explanations and their plots.
    baseline = (_in_background if num_threads > 1 else _now)(baseline_scores, x_train, y_train, x_test, y_test, roc_auc)
    calibration = calibration_table(y_test, probability)
    images = {"calibration_curve": str(plot_calibration(calibration, output / "calibration_curve.png"))}
    explained = explain_model(model, x_train, output / "explanations", n_top=n_top, seed=seed)
    base = baseline()
    out["baseline_roc_auc"] = base["baseline_roc_auc"]
    out["lift"] = base["lift"]
    images.update(explained["images"])
    out["top_features"] = explained["top_features"]
    out["calibration"] = calibration.to_dict(orient="records")
    for key in ("roc_auc_random_cv", "roc_auc_spatial_cv", "optimism_gap", "cv_strategy", "block_size_km", *PREP_KEYS):
        if cv and key in cv:
            out[key] = cv[key]
    # Relative to ``output``: stages write into a temporary folder that is renamed afterwards.
    out["images"] = {name: str(Path(path).relative_to(output)) for name, path in images.items()}
    return _finite(out)


def _finite(value):
    """NaN/inf are not JSON: report them as None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating | np.integer):
        return value.item()
    return value
