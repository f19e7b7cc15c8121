"""The prep data contract: every rule features and gold data must meet, as one pure function.

As the seed: drop unused columns and rows without a target, ids to integers, inner join on gbifid,
PRESENT -> 1 / ABSENT -> 0. On top of it every way the inputs can break the contract raises a
DataContractError that names the file, the column and the fix. Ids stay exact (never rounded through a
float); a text column that is mostly numbers is an error, not a category (``NUMERIC_SHARE``).

Coordinates (decimallatitude/decimallongitude) never reach the features: they are returned apart
(for spatial cross-validation and maps), aligned row by row with features and targets on gbifid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from biodiv_core.data.feature_checks import check_feature_names, check_finite
from biodiv_core.errors import DataContractError

ID_COLUMN = "gbifid"
TARGET_COLUMN = "occurrencestatus"
COORDINATE_COLUMNS = ("decimallatitude", "decimallongitude")
CLASSES = {"ABSENT": 0, "PRESENT": 1}


@dataclass
class PreparedData:
    """Model-ready data, all indexed by gbifid in the same order.

    features: one column per predictor (float32 or category); targets: int8 0/1 named ``target``;
    coords: decimallatitude/decimallongitude when the features had them, else None.
    """

    features: pd.DataFrame
    targets: pd.Series
    coords: pd.DataFrame | None = None
    stats: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- checks


def _examples(values, limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit])
    return shown + (f" ... ({len(values)} in all)" if len(values) > limit else "")


def _lower_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    lowered = [str(c).strip().lower() for c in frame.columns]
    if lowered == list(frame.columns):
        return frame
    seen: dict[str, str] = {}
    for original, low in zip(frame.columns, lowered, strict=True):
        if low in seen:
            raise DataContractError(
                f"{source} has columns {seen[low]!r} and {original!r}, the same name ignoring case: "
                "drop or rename one of them."
            )
        seen[low] = original
    return frame.set_axis(lowered, axis=1)


def _delimiter_hint(frame: pd.DataFrame) -> str:
    """A one-column table whose header holds ';', tab or '|' was written with another delimiter."""
    if len(frame.columns) != 1:
        return ""
    header = str(frame.columns[0])
    for delimiter, shown in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if delimiter in header:
            return f" The file looks separated by {shown}, not commas: save it as comma-separated CSV."
    return ""


def _require(frame: pd.DataFrame, column: str, source: str, what: str) -> None:
    if column not in frame.columns and _delimiter_hint(frame):
        raise DataContractError(f"{source} has a single column {frame.columns[0]!r}.{_delimiter_hint(frame)}")
    if column not in frame.columns:
        raise DataContractError(
            f"{source} has no {column!r} column ({what}); its columns are: {', '.join(map(str, frame.columns))}. "
            f"Add the column (names are matched ignoring case, e.g. GBIF's {column!r} spelled any way)."
        )


def exact_integer_limit(dtype) -> int:
    """2^53 for float64 (2^24 for float32): every integer below it, and none at or past it, is stored exactly."""
    return 2 ** (np.finfo(dtype).nmant + 1)


def float_ids_as_int64(values: np.ndarray) -> np.ndarray | None:
    """Float ids as int64 when each is a whole number the float type holds exactly; None otherwise."""
    limit = exact_integer_limit(values.dtype)
    with np.errstate(invalid="ignore"):
        exact = (np.abs(values) < limit).all() and (values == np.floor(values)).all()
    return values.astype(np.int64) if exact else None


def _ids(series: pd.Series, source: str, column: str) -> np.ndarray:
    """gbifids as int64, exactly: integral floats and digit strings are accepted, anything else is an error.

    Ids are never rounded: a float id is converted only when its type holds it exactly (below 2^53 for
    float64, what a pandas round trip with a missing cell writes as ``4294967396.0``); past that the file is
    rejected, since two ids may already have become the same number.
    """
    if series.isna().any():
        raise DataContractError(
            f"{source}: column {column!r} is empty in {int(series.isna().sum())} rows: every row needs an id; "
            "remove those rows."
        )
    if pd.api.types.is_integer_dtype(series.dtype):
        if pd.api.types.is_unsigned_integer_dtype(series.dtype) and int(series.max()) >= 2**63:
            raise DataContractError(
                f"{source}: column {column!r} holds ids of 2^63 or more (e.g. {_examples(series[series >= 2**63])}),"
                " past the 64-bit integers gbifids are: fix those rows."
            )
        return series.to_numpy(dtype=np.int64)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(str)
    numbers = series if pd.api.types.is_float_dtype(series.dtype) else pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers.abs() >= 2**63)
    if bad.any():
        raise DataContractError(
            f"{source}: column {column!r} must hold integer ids, but has {int(bad.sum())} other values, e.g. "
            f"{_examples(pd.unique(series[bad]))}. Fix or remove those rows."
        )
    if pd.api.types.is_float_dtype(numbers.dtype):
        limit = exact_integer_limit(numbers.dtype)
        inexact = numbers.abs() >= limit
        if inexact.any():
            shown = ", ".join(f"{v:.0f}" for v in pd.unique(numbers[inexact])[:5])
            raise DataContractError(
                f"{source}: column {column!r} holds ids written as decimal numbers ({numbers.dtype}), and "
                f"{int(inexact.sum())} of them are 2^{limit.bit_length() - 1} or more (e.g. {shown}), past what that "
                "type holds exactly, so they may already be rounded onto other ids: write the ids as whole numbers "
                "(no '.0'; in pandas use the Int64 type when a column has missing cells) and re-export the file."
            )
    return numbers.to_numpy().astype(np.int64)


def _no_duplicates(ids: np.ndarray, source: str, column: str) -> pd.Index:
    """``ids`` as an index known to be unique (its hash table is kept, so a join on it does not build another)."""
    index = pd.Index(ids)
    if len(ids) < 2 or (ids[1:] > ids[:-1]).all() or index.is_unique:  # ids in order: no hash table needed
        return index
    dup = index.duplicated()
    if dup.any():
        raise DataContractError(
            f"{source}: column {column!r} has {int(dup.sum())} duplicate ids, e.g. {_examples(np.unique(ids[dup]))}. "
            "Each gbifid must appear once: deduplicate the file."
        )
    return index


def _targets(gold: pd.DataFrame, column: str, source: str) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Drop rows without a status, map PRESENT/ABSENT (any case, surrounding spaces) to 1/0."""
    # Normalise the few distinct values, not every row (statuses arrive as categories from read_table).
    codes, uniques = pd.factorize(gold[column], sort=False)  # missing -> code -1
    normalised = [str(u).strip().upper() for u in uniques]
    unknown = [u for u, n in zip(uniques, normalised, strict=True) if n and n not in CLASSES]
    if unknown:
        counts = pd.Series(codes).map(dict(enumerate(map(str, uniques)))).value_counts()
        counts = counts[counts.index.isin([str(u) for u in unknown])]
        listed = ", ".join(f"{v!r} ({n} rows)" for v, n in counts.head(10).items())
        raise DataContractError(
            f"{source}: column {column!r} must hold PRESENT or ABSENT (case and spaces are ignored) but also holds "
            f"{listed}{' ...' if len(counts) > 10 else ''}. Map those values to PRESENT/ABSENT or remove the rows."
        )
    # One extra slot at the end so code -1 (missing) looks up -1 too.
    lookup = np.array([CLASSES.get(n, -1) for n in normalised] + [-1], dtype=np.int8)
    labels = lookup[codes]
    keep = labels >= 0
    n_dropped = int((~keep).sum())
    if not keep.any():
        raise DataContractError(
            f"{source}: column {column!r} has no values: every row needs PRESENT or ABSENT. Fill in the statuses."
        )
    if n_dropped:
        gold, labels = gold[keep], labels[keep]
    return gold, labels, n_dropped


# A text column is numbers with some broken cells, not a category, when at least this share of its filled
# cells are numbers (docs/reliability.md): it would otherwise become one category level per value.
NUMERIC_SHARE = 0.9
# A text column is a category only with few levels: more than this many distinct values, and more than this
# share of its filled cells, is one level per value (free text, codes, ids), which no model can use.
CATEGORY_MAX_LEVELS, CATEGORY_MAX_LEVEL_SHARE = 100, 0.5
_THOUSANDS = r"^\s*[+-]?\d{1,3}(,\d{3})+(\.\d*)?\s*$"  # 3,136.0


def _is_text(dtype) -> bool:
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def _text_feature(col: pd.Series, name: str, source: str) -> pd.Series:
    """A text column by content: all numbers -> float32, mostly numbers -> DataContractError, few levels -> a
    category, one level per value -> DataContractError.

    Decided on the rows that have gold data (those a model sees), from the distinct values weighted by their
    counts, not cell by cell.
    """
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(str).where(col.notna()).astype("category")
    codes = col.cat.codes.to_numpy()
    counts = np.bincount(codes[codes >= 0], minlength=len(col.cat.categories))
    if not counts.all():  # remove_unused_categories sorts the codes (np.unique): only when some level is unused
        col = col.cat.remove_unused_categories()
        codes = col.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(col.cat.categories))
    levels = pd.Series(col.cat.categories.astype(str))
    numbers = pd.to_numeric(levels, errors="coerce").to_numpy(dtype=np.float64)
    is_number = ~np.isnan(numbers)
    filled = int(counts.sum())
    if counts[is_number].sum() == filled:  # numbers stored as text (e.g. a string parquet column): numbers
        values = np.append(numbers, np.nan).astype(np.float32)  # code -1 (missing) picks the NaN at the end
        return pd.Series(values[codes], index=col.index, name=name)
    thousands = levels.str.match(_THOUSANDS).to_numpy()
    numeric = int(counts[is_number | thousands].sum())  # "3,136.0" is a number to the reader, not to a parser
    if numeric < NUMERIC_SHARE * filled:
        if len(levels) > max(CATEGORY_MAX_LEVELS, CATEGORY_MAX_LEVEL_SHARE * filled):
            raise DataContractError(
                f"{source}: feature column {name!r} holds {len(levels)} distinct text values in its {filled} filled "
                f"cells in rows with gold data (e.g. {_examples(levels.iloc[np.argsort(-counts, kind='stable')])}): a "
                f"category needs few levels (at most {CATEGORY_MAX_LEVELS}, or {CATEGORY_MAX_LEVEL_SHARE:.0%} of the "
                "cells), not one per value: drop the column, or map its values to a few classes."
            )
        return col
    order = np.argsort(-counts[~is_number], kind="stable")
    bad = levels[~is_number].iloc[order]
    if thousands[~is_number].all():
        fix = "they look like numbers with thousands separators: write them without the ',' (e.g. 3,136.0 -> 3136.0)"
    else:
        fix = "replace them with numbers, or empty the cells where the value is missing"
    raise DataContractError(
        f"{source}: feature column {name!r} is numeric ({numeric} of its {filled} filled cells in rows with gold "
        f"data look like numbers, at least {NUMERIC_SHARE:.0%}) but {int(counts[~is_number].sum())} cells are not "
        f"plain numbers (e.g. {_examples(bad)}): {fix}, or drop the column."
    )


def _feature_frame(frame: pd.DataFrame, columns: list[str], source: str) -> pd.DataFrame:
    """Numbers to float32 (half the memory, LightGBM bins them anyway), text to category (see _text_feature)."""
    out = {}
    for name in columns:
        col = frame[name]
        if col.isna().all():
            raise DataContractError(
                f"{source}: feature column {name!r} has no values in the {len(col)} rows that have gold data. "
                "Fill it in, or drop the column from the features."
            )
        if isinstance(col.dtype, pd.CategoricalDtype) and not _is_text(col.cat.categories.dtype):
            out[name] = col.cat.remove_unused_categories()  # a category of numbers was made one on purpose
        elif pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
            out[name] = col.astype(np.float32, copy=False)
            check_finite(out[name], col, name, source)
        elif isinstance(col.dtype, pd.CategoricalDtype) or _is_text(col.dtype):
            out[name] = _text_feature(col, name, source)
            if not isinstance(out[name].dtype, pd.CategoricalDtype):
                check_finite(out[name], col, name, source)
        else:
            raise DataContractError(
                f"{source}: feature column {name!r} has type {col.dtype}, which is neither numeric nor text. "
                "Convert it to numbers or categories, or drop it."
            )
    # copy=False: the columns are already what the model gets; a copy would hold the features twice.
    return pd.DataFrame(out, index=frame.index, copy=False)


# --------------------------------------------------------------------------- the stage


def prepare_dataset(
    features: pd.DataFrame,
    gold: pd.DataFrame,
    *,
    features_source: str = "features",
    gold_source: str = "gold data",
    id_column: str = ID_COLUMN,
    target_column: str = TARGET_COLUMN,
    feature_columns: Sequence[str] | None = None,
    min_rows_per_class: int | None = None,
) -> PreparedData:
    """Join features with gold data and return model-ready features, targets and coordinates.

    ``features``: ``id_column`` + feature columns (+ optional coordinates); ``gold``: ``id_column`` and
    ``target_column`` (other columns are ignored). Column names are matched ignoring case.
    ``feature_columns`` restricts the predictors (default: every other column of ``features``);
    ``min_rows_per_class`` (e.g. the number of CV folds) is the fewest rows each class must have.
    ``*_source`` name the inputs (file paths) in error messages.
    """
    id_column, target_column = id_column.lower(), target_column.lower()
    features = _lower_columns(features, features_source)
    gold = _lower_columns(gold, gold_source)
    for frame, source in ((features, features_source), (gold, gold_source)):
        if not len(frame):
            raise DataContractError(f"{source} has no rows: give a file with data.")
    _require(features, id_column, features_source, "the occurrence id")
    _require(gold, id_column, gold_source, "the occurrence id")
    _require(gold, target_column, gold_source, "PRESENT/ABSENT")

    gold_rows = len(gold)
    gold, labels, n_null_targets = _targets(gold[[id_column, target_column]], target_column, gold_source)
    gold_ids = _ids(gold[id_column], gold_source, id_column)
    gold_index = _no_duplicates(gold_ids, gold_source, id_column)
    feature_ids = _ids(features[id_column], features_source, id_column)
    _no_duplicates(feature_ids, features_source, id_column)

    if feature_columns is None:
        # Never let the label (or the id) in as a predictor, nor the coordinates (they leak space).
        excluded = {id_column, target_column, *COORDINATE_COLUMNS}
        predictors = [c for c in features.columns if c not in excluded]
    else:
        predictors = [c.strip().lower() for c in feature_columns]
        for name in predictors:
            _require(features, name, features_source, "a requested feature")
    check_feature_names(predictors, features_source)
    if not predictors:
        raise DataContractError(
            f"{features_source} has no feature columns besides {id_column!r} and the coordinates: "
            "add the environmental covariates."
        )

    # Hash join: one lookup per feature row into the (unique) gold ids; keeps the features' row order.
    position = gold_index.get_indexer(feature_ids)
    rows = np.flatnonzero(position >= 0)
    if not len(rows):
        raise DataContractError(
            f"No gbifid of {gold_source} (e.g. {_examples(gold_ids[:3])}) is in {features_source} "
            f"(e.g. {_examples(feature_ids[:3])}): they share no rows. Check that both come from the same site "
            "and data version."
        )
    index = pd.Index(feature_ids[rows], name=id_column)
    if len(rows) == len(features):
        # Every row joins (run_prep already kept only gold rows): relabel without copying the frame.
        joined = features.set_axis(index, axis=0, copy=False)
    else:
        joined = features.iloc[rows]
        joined.index = index
    x = _feature_frame(joined, predictors, features_source)
    y = pd.Series(labels[position[rows]], index=index, name="target")

    counts = {name: int((y == value).sum()) for name, value in CLASSES.items()}
    for name, n in counts.items():
        if n == 0:
            raise DataContractError(
                f"After joining {gold_source} with {features_source} on {id_column!r}, all {len(y)} rows are "
                f"{'PRESENT' if name == 'ABSENT' else 'ABSENT'}: a model needs both PRESENT and ABSENT rows. "
                f"Add {name} records to the gold data."
            )
        if min_rows_per_class is not None and n < min_rows_per_class:
            raise DataContractError(
                f"After joining {gold_source} with {features_source}, class {name} has {n} rows, fewer than "
                f"{min_rows_per_class} (min_rows_per_class, e.g. n_folds): add {name} records or lower n_folds."
            )

    coords = None
    if all(c in joined.columns for c in COORDINATE_COLUMNS):
        coords = _coordinates(joined, features_source)
    stats = {
        "rows": len(y),
        "n_present": counts["PRESENT"],
        "n_absent": counts["ABSENT"],
        "n_features": len(predictors),
        "features": predictors,
        "feature_rows": len(features),
        "gold_rows": gold_rows,
        "dropped_null_targets": n_null_targets,
        "gold_rows_without_features": len(gold_ids) - len(rows),
        "duplicates": 0,
    }
    return PreparedData(x, y, coords, stats)


def _coordinates(joined: pd.DataFrame, features_source: str) -> pd.DataFrame:
    """Latitude/longitude as float64 (missing stays NaN); text that is not a number is a DataContractError."""
    columns = {}
    for column in COORDINATE_COLUMNS:
        dtype = joined[column].dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "fiu":  # numbers already: no per-cell parsing
            columns[column] = joined[column].astype(np.float64)
            continue
        raw = joined[column].astype(object)
        values = pd.to_numeric(raw, errors="coerce")
        bad = raw[values.isna() & raw.notna()]
        if len(bad):
            examples = ", ".join(repr(str(v)) for v in pd.unique(bad.astype(str))[:5])
            raise DataContractError(
                f"{features_source}: column {column!r} holds {len(bad)} values that are not numbers "
                f"(e.g. {examples}): coordinates must be decimal degrees; fix or remove those rows."
            )
        columns[column] = values.astype(np.float64)
    return pd.DataFrame(columns, index=joined.index, copy=False)
