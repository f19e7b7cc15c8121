"""Extrapolation flags: MESS, the multivariate environmental similarity of Elith et al. (2010).

For one covariate with value ``p`` and the training values' range ``[min, max]``, with ``f`` the share (in %) of
training values below ``p``: the similarity is ``2f`` up to the median, ``2(100 - f)`` above it (100 at the
median, 0 at either end of the range), and outside the range how far beyond the nearer end ``p`` lies, in % of
the range (``100 (p - min) / (max - min)`` below, ``100 (max - p) / (max - min)`` above): negative. A row's MESS
is its lowest similarity over the covariates, so MESS < 0 means at least one covariate lies outside what the
model was trained on: the prediction there is an extrapolation.

Categorical covariates: a level seen in training is 100 (no constraint), a level training never saw is
`UNSEEN_LEVEL_SIMILARITY` (extrapolated, as far off as a whole range). Missing values constrain nothing; a row
missing every covariate has MESS NaN and is not flagged.

The reference (`CovariateReference`) is what scoring compares with: per numeric covariate a sorted summary of its
training values (all of them up to `REFERENCE_POINTS`, else that many evenly spaced quantiles, min and max
exact), per categorical covariate the levels seen. It travels in the MLflow model folder as `REFERENCE_FILE`
(a few kB a covariate, whatever the training size); scoring is one ``numpy.searchsorted`` per covariate.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE_FILE = "covariate_reference.json"
REFERENCE_POINTS = 257  # quantiles per numeric covariate: the share below is exact to 1/256 (MESS to < 1 unit)
UNSEEN_LEVEL_SIMILARITY = -100.0
MESS_COLUMNS = ("mess", "extrapolated")
NO_REFERENCE_NOTE = (
    "no extrapolation flags: the model was saved without a covariate reference (before MESS was added); "
    "retrain it to get the mess and extrapolated columns"
)


@dataclass(frozen=True)
class CovariateReference:
    """What the training data looked like, per covariate (see the module doc)."""

    numeric: dict[str, np.ndarray]  # sorted training values or quantiles
    levels: dict[str, list[str]]  # categorical levels seen in the training rows
    rows: int  # training rows summarized

    def to_dict(self) -> dict:
        return {
            "method": "MESS (Elith et al. 2010)",
            "rows": self.rows,
            "numeric": {name: values.tolist() for name, values in self.numeric.items()},
            "levels": {name: list(levels) for name, levels in self.levels.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> CovariateReference:
        numeric = {str(k): np.sort(np.asarray(v, dtype="float64")) for k, v in data.get("numeric", {}).items()}
        levels = {str(k): [str(level) for level in v] for k, v in data.get("levels", {}).items()}
        return cls({k: v for k, v in numeric.items() if len(v)}, levels, int(data.get("rows", 0)))


def _observed_levels(column: pd.Series) -> list[str]:
    """Levels present in the rows, spelled as the model's training levels are (``str`` of each category)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = np.unique(np.asarray(column.cat.codes))
        return [str(column.cat.categories[code]) for code in codes if code >= 0]
    return sorted({str(v) for v in column.dropna().unique()})


def build_reference(
    sample: pd.DataFrame, features: list[str], categorical: set[str] | dict, points: int = REFERENCE_POINTS
) -> CovariateReference:
    """The reference of the training frame ``sample`` for ``features`` (``categorical`` names the category ones)."""
    numeric: dict[str, np.ndarray] = {}
    levels: dict[str, list[str]] = {}
    for name in features:
        if name not in sample.columns:
            continue
        if name in categorical:
            levels[name] = _observed_levels(sample[name])
            continue
        values = pd.to_numeric(sample[name], errors="coerce").to_numpy(dtype="float64")
        values = np.sort(values[np.isfinite(values)])
        if len(values) > points:
            values = np.quantile(values, np.linspace(0.0, 1.0, points))
        if len(values):
            numeric[name] = values
    return CovariateReference(numeric, levels, len(sample))


def write_reference(reference: CovariateReference, folder: str | os.PathLike) -> Path:
    path = Path(folder) / REFERENCE_FILE
    path.write_text(json.dumps(reference.to_dict(), separators=(",", ":")))
    return path


def read_reference(folder: str | os.PathLike) -> CovariateReference | None:
    """The reference saved in a model folder; None for a model saved without one."""
    path = Path(folder) / REFERENCE_FILE
    if not path.is_file():
        return None
    return CovariateReference.from_dict(json.loads(path.read_text()))


def numeric_similarity(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Similarity (%) of each value to the sorted training values ``reference``; NaN where the value is missing.

    ``values`` in any float width (float32 raster cells are compared as float64 without a widened copy of
    the column); the result is float64.
    """
    low, high, points = float(reference[0]), float(reference[-1]), len(reference)
    span = high - low if high > low else 1.0  # one training value: distances in the covariate's own units
    below = np.searchsorted(reference, values, side="right")  # training values <= each value (NaN: all)
    # 2 min(f, 100 - f) = 100 - |2f - 100|, f the % below (0 at min, 100 at max): one value per count below,
    # so a lookup (points + 1 entries) gives every cell's similarity in one pass and one array.
    steps = np.arange(points + 1, dtype="float64")
    steps -= 1.0
    steps *= 200.0 / max(points - 1, 1)
    steps -= 100.0
    np.abs(steps, out=steps)
    np.subtract(100.0, steps, out=steps)
    # Below min (none <= it), at or above max (all <= it) and missing: the distance to the nearer end instead.
    edge = np.flatnonzero((below == 0) | (below == points))
    similarity = steps[below]
    del below
    beyond = values[edge].astype("float64")
    similarity[edge] = 100.0 * np.minimum(beyond - low, high - beyond) / span
    return similarity


def level_similarity(codes: np.ndarray, model_levels: list[str], seen: list[str], unseen: np.ndarray) -> np.ndarray:
    """Similarity of category codes (into ``model_levels``, -1 = missing or unseen): 100 seen, negative not."""
    seen_set = set(seen)
    # One entry per level, and a last one that code -1 picks: indexing with the codes' own small ints, no copy.
    lookup = np.array([100.0 if level in seen_set else UNSEEN_LEVEL_SIMILARITY for level in model_levels] + [0.0])
    lookup[-1] = UNSEEN_LEVEL_SIMILARITY
    similarity = lookup[codes]
    similarity[(codes < 0) & ~unseen] = np.nan  # missing, not unseen: no constraint
    return similarity


def mess(
    frame: pd.DataFrame, reference: CovariateReference, categories: dict[str, list[str]], unseen: dict[str, np.ndarray]
) -> np.ndarray:
    """MESS of each row of the model's feature frame (`scoring.prepare`); ``unseen``: masks of unseen levels."""
    result = np.full(len(frame), np.nan)
    for name in frame.columns:
        if name in categories and name in reference.levels:
            codes = np.asarray(frame[name].cat.codes)
            mask = unseen.get(name, np.zeros(len(frame), dtype=bool))
            similarity = level_similarity(codes, categories[name], reference.levels[name], mask)
        elif name in reference.numeric:
            similarity = numeric_similarity(frame[name].to_numpy(), reference.numeric[name])
        else:
            continue
        np.fmin(result, similarity, out=result)  # fmin skips NaN: a missing value constrains nothing
    return result
