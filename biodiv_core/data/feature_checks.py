"""Feature columns LightGBM would take wrongly or late: names it rewrites or rejects, values it cannot hold.

Found in prep, with the column named, instead of in the train step three times over: LightGBM replaces spaces in
feature names with '_' (training then asks the table for a column it does not have), refuses JSON characters
("Do not support special JSON characters in feature name"), and an infinite value (or one past float32's range,
which narrowing makes infinite) fails the baseline model without naming the column.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from biodiv_core.errors import DataContractError

# What LightGBM's feature-name check rejects (JSON syntax), plus whitespace, which it silently replaces.
# '=' and control characters break LightGBM's `feature_names=...` model text ("Wrong size of feature_names", or a
# leading/trailing '=' silently dropped).
_UNUSABLE = re.compile(r'[\s",:\[\]{}=\x00-\x1f\x7f]')


def check_feature_names(names: list[str], source: str) -> None:
    for position, name in enumerate(names):
        if not name.strip():
            raise DataContractError(
                f"{source}: feature column number {position + 1} (not counting the id and coordinates) has no name: "
                f"name it (e.g. 'covariate_{position + 1}') or drop the column."
            )
        bad = sorted(set(_UNUSABLE.findall(name)))
        if bad:
            shown = ", ".join("a space" if c == " " else repr(c) for c in bad)
            suggestion = re.sub(r"_+", "_", _UNUSABLE.sub("_", name)).strip("_") or "covariate"
            raise DataContractError(
                f"{source}: feature column {name!r} has characters LightGBM cannot keep in a feature name ({shown}): "
                f"rename the column, e.g. to {suggestion!r}."
            )


def check_finite(narrowed: pd.Series, original: pd.Series, name: str, source: str) -> None:
    """Infinite values, or values beyond float32 that narrowing made infinite, are a DataContractError."""
    values = narrowed.to_numpy()
    if values.dtype.kind != "f":  # a nullable type: its missing cells as NaN
        values = narrowed.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if not infinite.any():
        return
    examples = ", ".join(str(v) for v in pd.unique(original[infinite])[:3])
    limit = float(np.finfo(np.float32).max)
    raise DataContractError(
        f"{source}: feature column {name!r} holds {int(infinite.sum())} values that are infinite or beyond "
        f"±{limit:.3g} (e.g. {examples}): replace them with finite numbers, or empty the cells where the value "
        "is missing."
    )
