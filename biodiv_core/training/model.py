"""The LightGBM model: frames in the shape LightGBM wants, one fit, probabilities out."""

import numpy as np
import pandas as pd

from biodiv_core.errors import DataContractError
from biodiv_core.training.params import BINNING_PARAMS, ROUND_ALIASES

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
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()  # a column or row vector
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


def feature_names(model) -> list[str]:
    """The feature columns a LightGBM Booster or LGBMClassifier was trained on, in training order."""
    return [str(name) for name in getattr(model, "booster_", model).feature_name()]


def predict_proba(model, features: pd.DataFrame) -> np.ndarray:
    """Probability of PRESENT for each row, in input order: the one predict function of the project.

    ``model``: a LightGBM Booster (binary objective: it returns probabilities), an LGBMClassifier, or a plain
    callable ``frame -> probabilities`` (custom scorers, tests). Columns are taken by the model's feature
    names (extra columns ignored), strings become categories as in training, and LightGBM predicts on one
    thread: its default (all cores) thrashes on a shared machine (DESIGN 9).
    """
    booster = getattr(model, "booster_", model)
    if not hasattr(booster, "feature_name"):
        if callable(model):
            return np.asarray(model(features), dtype=float)
        raise TypeError(f"Cannot get probabilities from {type(model).__name__}: pass a LightGBM model or a callable.")
    x = as_lgb_frame(features)
    expected = feature_names(booster)
    missing = [c for c in expected if c not in x.columns]
    if missing:
        raise DataContractError(
            f"The features are missing column(s) {missing} that the model was trained on; "
            f"give a table with columns {expected}."
        )
    if list(x.columns) != expected:
        x = x[expected]  # a copy: only when the columns are not already the model's, in its order
    matrix = lgb_matrix(x, booster)
    return np.asarray(booster.predict(x if matrix is None else matrix, num_threads=1), dtype=float)


def lgb_matrix(x: pd.DataFrame, booster) -> np.ndarray | None:
    """The matrix LightGBM's own pandas conversion makes of ``x`` (category codes of the booster's training
    levels, missing as NaN), built in one pass without its temporaries, and as float32 when every numeric
    column is float32 (raster cells): LightGBM widens each value exactly, so the predictions are the same.

    None when LightGBM should convert (or reject) the frame itself: an empty frame, a column that is neither
    a numpy float nor a category, or category columns that do not match the booster's.
    """
    categorical = [c for c in x.columns if isinstance(x[c].dtype, pd.CategoricalDtype)]
    levels = booster.pandas_categorical
    numeric = [x[c].dtype for c in x.columns if c not in categorical]
    if not len(x) or any(d not in (np.float32, np.float64) for d in numeric):
        return None
    if levels is not None and len(levels) != len(categorical):
        return None
    dtype = np.float64 if any(d == np.float64 for d in numeric) else np.float32
    matrix = np.empty(x.shape, dtype=dtype, order="F")  # LightGBM reads column-major without copying
    for j, name in enumerate(x.columns):
        column = x[name]
        if name not in categorical:
            matrix[:, j] = column.to_numpy()
            continue
        trained = levels[categorical.index(name)] if levels is not None else None
        if trained is not None and list(column.cat.categories) != list(trained):
            column = column.cat.set_categories(trained)
        codes = column.cat.codes.to_numpy()
        matrix[:, j] = codes
        matrix[codes < 0, j] = np.nan
    return matrix


def lightgbm_fit_predict(params: dict, num_threads: int = 1):
    """``fit_predict(X_train, y_train, X_test) -> probabilities`` with `fit_model` (for out-of-fold predictions)."""

    def fit_predict(x_train: pd.DataFrame, y_train, x_test: pd.DataFrame) -> np.ndarray:
        return predict_proba(fit_model(x_train, y_train, params, num_threads), x_test)

    return fit_predict
