"""The LightGBM model: frames in the shape LightGBM wants, one fit, probabilities out."""

import numpy as np
import pandas as pd

from biodiv_core.errors import DataContractError
from biodiv_core.params import BINNING_PARAMS, ROUND_ALIASES

# Our runtime settings; never part of saved best parameters.
RUNTIME_KEYS = ("num_threads", "nthread", "nthreads", "n_jobs", "num_thread", "verbosity", "verbose")


def as_lgb_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Strings become pandas categories so LightGBM treats them as categorical features (DESIGN section 3)."""
    if not isinstance(features, pd.DataFrame):
        raise DataContractError(f"features must be a pandas DataFrame, got {type(features).__name__}.")
    text = [c for c in features.columns if features[c].dtype == object or pd.api.types.is_string_dtype(features[c])]
    text = [c for c in text if not isinstance(features[c].dtype, pd.CategoricalDtype)]
    if not text:
        return features
    out = features.copy()
    for column in text:
        out[column] = out[column].astype("category")
    return out


def as_target(targets, n_rows: int | None = None) -> np.ndarray:
    """0/1 integer labels from a Series, a one-column frame or an array."""
    if isinstance(targets, pd.DataFrame):
        if targets.shape[1] != 1:
            raise DataContractError(f"targets must have one column, got {list(targets.columns)}.")
        targets = targets.iloc[:, 0]
    y = np.asarray(targets)
    if y.ndim != 1:
        raise DataContractError(f"targets must be one-dimensional, got shape {y.shape}.")
    if n_rows is not None and len(y) != n_rows:
        raise DataContractError(f"targets have {len(y)} rows but features have {n_rows}: align them on gbifid.")
    bad = sorted({v for v in pd.unique(y) if v not in (0, 1)}, key=str)
    if bad:
        raise DataContractError(f"targets must be 0 (ABSENT) or 1 (PRESENT); found {bad[:10]}.")
    return y.astype(np.int32)


def split_rounds(params: dict) -> tuple[dict, int | None]:
    """(params without the number of rounds, the number of rounds or None)."""
    rounds = None
    rest = {}
    for key, value in params.items():
        if key in ROUND_ALIASES:
            rounds = int(value)
        else:
            rest[key] = value
    return rest, rounds


def train_params(params: dict, num_threads: int) -> dict:
    """Params as LightGBM gets them: explicit threads (never LightGBM's default), quiet, binary."""
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}.")
    out = {k: v for k, v in params.items() if k not in RUNTIME_KEYS}
    out.setdefault("objective", "binary")
    out["num_threads"] = num_threads
    out["verbosity"] = -1
    return out


def fit_model(features: pd.DataFrame, targets, params: dict, num_threads: int):
    """Fit a LightGBM booster with ``params`` (as in best_parameters.json, incl. num_boost_round)."""
    import lightgbm as lgb

    x = as_lgb_frame(features)
    y = as_target(targets, len(x))
    params, rounds = split_rounds(params)
    params = train_params(params, num_threads)
    dataset_params = {k: v for k, v in params.items() if k in BINNING_PARAMS}
    dataset = lgb.Dataset(x, y, params={**dataset_params, "verbosity": -1}, free_raw_data=True)
    return lgb.train(params, dataset, num_boost_round=rounds or 100)


def predict_proba(booster, features: pd.DataFrame) -> np.ndarray:
    """Probability of PRESENT for each row (binary objective: the booster already returns probabilities)."""
    x = as_lgb_frame(features)
    expected = booster.feature_name()
    missing = [c for c in expected if c not in x.columns]
    if missing:
        raise DataContractError(
            f"features are missing column(s) {missing} the model was trained on; expected {expected}."
        )
    return np.asarray(booster.predict(x[expected], num_threads=1), dtype=float)
