"""Cross-validation folds that respect space.

Random k-fold CV overstates skill when occurrence points are spatially clustered: a test point's
neighbours sit in the training folds and share its (unmodelled) local conditions. Spatial folds hold
out whole blocks of land instead (Roberts et al. 2017, blockCV), so the score measures transfer to
places the model has not seen.

Every strategy returns a list of ``(train_idx, test_idx)`` integer position arrays, which is what
``lightgbm.cv(folds=...)`` accepts and what scoring and the baseline iterate over.

- ``random``: stratified k-fold, as the seed.
- ``spatial_blocks``: square blocks of ``block_size_km`` (equal-area-ish: the longitude step widens
  with latitude), whole blocks assigned to folds so that each fold gets about 1/k of each class.
- ``checkerboard``: the same blocks, fold = (row + column) mod k, so neighbouring blocks never share
  a fold (k=2 is the classic checkerboard).
"""

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.run_settings import CV_STRATEGIES, DEFAULTS
from biodiv_core.training.model import as_target

LATITUDE = "decimallatitude"
LONGITUDE = "decimallongitude"
COORDINATE_COLUMNS = (LATITUDE, LONGITUDE)
KM_PER_DEGREE = 111.32  # along a meridian; along a parallel it shrinks with cos(latitude)

Fold = tuple[np.ndarray, np.ndarray]


def validate_strategy(strategy: str) -> str:
    """Return the strategy name or raise ConfigError listing the valid ones."""
    if strategy not in CV_STRATEGIES:
        raise ConfigError(f"cv_strategy={strategy!r} is not supported; use one of {', '.join(CV_STRATEGIES)}.")
    return strategy


def has_coordinates(frame: pd.DataFrame) -> bool:
    return all(column in frame.columns for column in COORDINATE_COLUMNS)


def coordinates(
    frame: pd.DataFrame,
    purpose: str = "Spatial cross-validation",
    fix: str = "Add coordinates to the site's features or use cv_strategy='random'.",
) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude arrays from ``frame``, validated; DataContractError names what is wrong."""
    missing = [column for column in COORDINATE_COLUMNS if column not in frame.columns]
    if missing:
        raise DataContractError(
            f"{purpose} needs columns {', '.join(COORDINATE_COLUMNS)} but {', '.join(missing)} "
            f"is missing (columns: {', '.join(map(str, frame.columns[:20]))}). {fix}"
        )
    arrays = []
    for column, bound in ((LATITUDE, 90.0), (LONGITUDE, 180.0)):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (np.abs(values) > bound)
        if bad.any():
            raise DataContractError(
                f"Column {column!r} has {int(bad.sum())} missing, non-numeric or out-of-range values "
                f"(expected degrees within +/-{bound:g}); fix or drop those rows before spatial cross-validation."
            )
        arrays.append(values)
    return arrays[0], arrays[1]


def spatial_blocks(latitude: np.ndarray, longitude: np.ndarray, block_size_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of the ~``block_size_km`` square block holding each point.

    Rows are bands of constant latitude height; within a band the longitude step is chosen at the
    band's centre latitude so a block is about ``block_size_km`` wide there too.
    """
    if not block_size_km > 0:
        raise ConfigError(f"block_size_km must be positive, got {block_size_km!r}.")
    lat_step = block_size_km / KM_PER_DEGREE
    rows = np.floor((np.asarray(latitude, dtype=float) + 90.0) / lat_step).astype(np.int64)
    centre = np.clip(-90.0 + (rows + 0.5) * lat_step, -89.999, 89.999)
    lon_step = block_size_km / (KM_PER_DEGREE * np.cos(np.radians(centre)))
    cols = np.floor((np.asarray(longitude, dtype=float) + 180.0) / lon_step).astype(np.int64)
    return rows, cols


def _balanced_block_folds(block: np.ndarray, y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Assign whole blocks to folds, greedily keeping each fold near 1/k of every class.

    Largest blocks first (ties in a seeded random order); each goes to the fold where it increases
    the sum of squared per-class fold shares least, which balances presences and absences together.
    """
    blocks, inverse = np.unique(block, return_inverse=True)
    classes = np.unique(y)
    counts = np.zeros((len(blocks), len(classes)))
    for j, cls in enumerate(classes):
        counts[:, j] = np.bincount(inverse, weights=(y == cls).astype(float), minlength=len(blocks))
    share = counts / counts.sum(axis=0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(blocks))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    load = np.zeros((n_folds, len(classes)))
    fold_of_block = np.empty(len(blocks), dtype=np.int64)
    for b in order:
        increase = ((load + share[b]) ** 2 - load**2).sum(axis=1)
        fold = int(np.argmin(increase))
        fold_of_block[b] = fold
        load[fold] += share[b]
    return fold_of_block[inverse]


def _folds_from_ids(fold_id: np.ndarray, n_folds: int) -> list[Fold]:
    positions = np.arange(len(fold_id))
    return [(positions[fold_id != k], positions[fold_id == k]) for k in range(n_folds)]


def _check_folds(folds: list[Fold], y: np.ndarray, strategy: str, detail: str) -> None:
    """Every test and training fold must hold both classes, or AUC and training are undefined."""
    for k, (train_idx, test_idx) in enumerate(folds):
        for name, idx in (("test", test_idx), ("training", train_idx)):
            present = int((y[idx] == 1).sum())
            absent = int(len(idx) - present)
            if present == 0 or absent == 0:
                raise DataContractError(
                    f"cv_strategy={strategy!r} ({detail}) gives fold {k} a {name} set with {present} present and "
                    f"{absent} absent rows; every fold needs both classes. Use a smaller block_size_km, fewer "
                    "folds, or cv_strategy='random'."
                )


def make_folds(
    frame: pd.DataFrame,
    y: Sequence[int] | np.ndarray | pd.Series,
    strategy: str = "random",
    n_folds: int = DEFAULTS.n_folds,
    block_size_km: float = DEFAULTS.block_size_km,
    seed: int = 0,
) -> list[Fold]:
    """Split rows of ``frame`` / ``y`` into ``n_folds`` (train_idx, test_idx) position arrays.

    ``frame`` only needs ``decimallatitude`` / ``decimallongitude`` for the spatial strategies (it may be
    the full feature table); ``y`` holds 0/1 labels. Raises ConfigError for an unknown strategy or bad
    sizes and DataContractError when coordinates are missing or a fold would lack a class.
    """
    validate_strategy(strategy)
    y = as_target(y)
    if len(frame) != len(y):
        raise DataContractError(f"Features have {len(frame)} rows but targets have {len(y)}; they must align.")
    if not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2, got {n_folds!r}.")
    if strategy == "random":
        n_min = int(min((y == 1).sum(), (y == 0).sum()))
        if n_min < n_folds:
            raise DataContractError(
                f"n_folds={n_folds} needs at least {n_folds} rows of each class, the smaller class has {n_min}; "
                "lower n_folds or add data."
            )
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return [(train, test) for train, test in splitter.split(np.zeros(len(y)), y)]

    latitude, longitude = coordinates(frame, f"cv_strategy={strategy!r}")
    rows, cols = spatial_blocks(latitude, longitude, block_size_km)
    n_blocks = len(np.unique(np.stack([rows, cols]), axis=1).T)
    detail = f"block_size_km={block_size_km:g}, {n_blocks} occupied blocks, n_folds={n_folds}"
    if n_blocks < n_folds:
        raise DataContractError(
            f"cv_strategy={strategy!r} ({detail}): fewer occupied blocks than folds; use a smaller block_size_km "
            "or fewer folds."
        )
    if strategy == "spatial_blocks":
        # One integer id per (row, col) block; rows stay < 2**21 for any block size >= 10 m.
        fold_id = _balanced_block_folds(rows * (1 << 32) + cols, y, n_folds, seed)
    else:
        fold_id = (rows + cols) % n_folds
    folds = _folds_from_ids(fold_id, n_folds)
    _check_folds(folds, y, strategy, detail)
    return folds


def out_of_fold_predictions(
    fit_predict: Callable[[pd.DataFrame, np.ndarray, pd.DataFrame], np.ndarray],
    X: pd.DataFrame,
    y: Sequence[int] | np.ndarray | pd.Series,
    folds: list[Fold],
) -> np.ndarray:
    """Probability for each row from a model fitted without that row's fold.

    ``fit_predict(X_train, y_train, X_test)`` returns presence probabilities for ``X_test``; the same
    folds serve the LightGBM model and the baseline, so their scores compare like with like.
    Rows in no test fold get NaN.
    """
    y = as_target(y)
    oof = np.full(len(y), np.nan)
    for train_idx, test_idx in folds:
        oof[test_idx] = np.asarray(fit_predict(X.iloc[train_idx], y[train_idx], X.iloc[test_idx]), dtype=float)
    return oof
