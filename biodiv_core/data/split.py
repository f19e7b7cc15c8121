"""Train/test(/validation) split (seed: ``data_utils.split_train_test``): stratified on the target, seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from biodiv_core.errors import ConfigError, DataContractError


@dataclass(frozen=True)
class TrainTestSplit:
    """Row subsets of the prepared features/targets, index (gbifid) preserved; validation is None when unused."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    x_validation: pd.DataFrame | None = None
    y_validation: pd.Series | None = None


def _check_fraction(name: str, value: float, low_inclusive: bool) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0) or (not low_inclusive and value == 0.0):
        bound = "0 <= {} < 1" if low_inclusive else "0 < {} < 1"
        raise ConfigError(f"{name}={value} is out of range: it is a fraction of the rows, {bound.format(name)}.")
    return value


def _stratified(x, y, size: float, seed: int, what: str):
    counts = y.value_counts()
    n_part = int(np.ceil(size * len(y)))
    if len(counts) < 2 or counts.min() < 2 or n_part < len(counts) or len(y) - n_part < len(counts):
        raise DataContractError(
            f"Cannot split {len(y)} rows (class counts {counts.to_dict()}) into a stratified {what} of {size:.0%}: "
            "each class needs at least 2 rows and the split must leave room for every class on both sides. "
            "Add rows, or change the split size."
        )
    return train_test_split(x, y, test_size=size, random_state=seed, shuffle=True, stratify=y)


def split_train_test(
    features: pd.DataFrame,
    targets: pd.Series,
    test_size: float = 0.2,
    validation_size: float = 0.0,
    seed: int = 0,
) -> TrainTestSplit:
    """Split rows into train / test (and validation when ``validation_size`` > 0), stratified on ``targets``.

    ``test_size`` and ``validation_size`` are fractions of all rows; the same ``seed`` gives the same split.
    """
    test_size = _check_fraction("test_size", test_size, low_inclusive=False)
    validation_size = _check_fraction("validation_size", validation_size, low_inclusive=True)
    if test_size + validation_size >= 1.0:
        raise ConfigError(
            f"test_size={test_size} + validation_size={validation_size} leaves no training rows: keep the sum below 1."
        )
    if len(features) != len(targets) or not features.index.equals(targets.index):
        raise DataContractError(
            f"features ({len(features)} rows) and targets ({len(targets)} rows) are not aligned on the same index: "
            "pass the features and targets of one prep output."
        )
    x_rest, x_test, y_rest, y_test = _stratified(features, targets, test_size, seed, "test set")
    if not validation_size:
        return TrainTestSplit(x_rest, x_test, y_rest, y_test)
    # Validation is a fraction of all rows, so rescale it to the rows left after the test split.
    x_train, x_val, y_train, y_val = _stratified(
        x_rest, y_rest, validation_size / (1.0 - test_size), seed, "validation set"
    )
    return TrainTestSplit(x_train, x_test, y_train, y_test, x_val, y_val)
