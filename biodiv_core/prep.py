"""Prep stage (seed: "Data Preparation"): features + gold data -> model-ready features and 0/1 targets.

As the seed: drop unused columns and rows without a target, ids to integers, inner join on gbifid,
PRESENT -> 1 / ABSENT -> 0. On top of it every way the inputs can break the data contract raises a
DataContractError that names the file, the column and the fix, and the output folder is written
atomically so a failed prep leaves nothing behind.

Coordinates (decimallatitude/decimallongitude) never reach the features: they go to ``coords.parquet``
(for spatial cross-validation and maps), aligned row by row with features and targets on gbifid.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from biodiv_core.atomic import atomic_output_dir
from biodiv_core.datastore import (
    gold_file_in,
    iter_file_batches,
    read_arrow,
    read_table,
    resolve_data_path,
    select_columns,
    table_files,
)
from biodiv_core.errors import DataContractError
from biodiv_core.naming import validate_name

logger = logging.getLogger(__name__)

ID_COLUMN = "gbifid"
TARGET_COLUMN = "occurrencestatus"
COORDINATE_COLUMNS = ("decimallatitude", "decimallongitude")
CLASSES = {"ABSENT": 0, "PRESENT": 1}
FEATURES_FILE, TARGETS_FILE, COORDS_FILE, SUMMARY_FILE = (
    "features.parquet",
    "targets.parquet",
    "coords.parquet",
    "summary.json",
)


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


def _require(frame: pd.DataFrame, column: str, source: str, what: str) -> None:
    if column not in frame.columns:
        raise DataContractError(
            f"{source} has no {column!r} column ({what}); its columns are: {', '.join(map(str, frame.columns))}. "
            f"Add the column (names are matched ignoring case, e.g. GBIF's {column!r} spelled any way)."
        )


def _ids(series: pd.Series, source: str, column: str) -> np.ndarray:
    """gbifids as int64; integral floats and digit strings are accepted, anything else is an error."""
    if series.isna().any():
        raise DataContractError(
            f"{source}: column {column!r} is empty in {int(series.isna().sum())} rows: every row needs an id; "
            "remove those rows."
        )
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy(dtype=np.int64)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(str)
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers.abs() >= 2**63)
    if bad.any():
        raise DataContractError(
            f"{source}: column {column!r} must hold integer ids, but has {int(bad.sum())} other values, e.g. "
            f"{_examples(pd.unique(series[bad]))}. Fix or remove those rows."
        )
    return numbers.to_numpy().astype(np.int64)


def _no_duplicates(ids: np.ndarray, source: str, column: str) -> None:
    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise DataContractError(
            f"{source}: column {column!r} has {int(dup.sum())} duplicate ids, e.g. {_examples(np.unique(ids[dup]))}. "
            "Each gbifid must appear once: deduplicate the file."
        )


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


def _feature_frame(frame: pd.DataFrame, columns: list[str], source: str) -> pd.DataFrame:
    """Numbers to float32 (half the memory, LightGBM bins them anyway), text to category."""
    out = {}
    for name in columns:
        col = frame[name]
        if col.isna().all():
            raise DataContractError(
                f"{source}: feature column {name!r} has no values in the {len(col)} rows that have gold data. "
                "Fill it in, or drop the column from the features."
            )
        if isinstance(col.dtype, pd.CategoricalDtype):
            out[name] = col.cat.remove_unused_categories()
        elif pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
            out[name] = col.astype(np.float32, copy=False)
        elif pd.api.types.is_object_dtype(col.dtype) or pd.api.types.is_string_dtype(col.dtype):
            out[name] = col.astype(str).where(col.notna()).astype("category")
        else:
            raise DataContractError(
                f"{source}: feature column {name!r} has type {col.dtype}, which is neither numeric nor text. "
                "Convert it to numbers or categories, or drop it."
            )
    return pd.DataFrame(out, index=frame.index)


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
    _no_duplicates(gold_ids, gold_source, id_column)
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
    if not predictors:
        raise DataContractError(
            f"{features_source} has no feature columns besides {id_column!r} and the coordinates: "
            "add the environmental covariates."
        )

    # Hash join: one lookup per feature row into the (unique) gold ids; keeps the features' row order.
    position = pd.Index(gold_ids).get_indexer(feature_ids)
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
    return pd.DataFrame(columns, index=joined.index)


def prepare(
    features: pd.DataFrame,
    gold: pd.DataFrame,
    *,
    features_source: str = "features",
    gold_source: str = "gold data",
    id_column: str = ID_COLUMN,
    target_column: str = TARGET_COLUMN,
    min_rows_per_class: int | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """The seed's prep: (features, targets) indexed by gbifid; see ``prepare_dataset`` for the details."""
    data = prepare_dataset(
        features,
        gold,
        features_source=features_source,
        gold_source=gold_source,
        id_column=id_column,
        target_column=target_column,
        min_rows_per_class=min_rows_per_class,
    )
    return data.features, data.targets


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    # gbifid as a plain column (not pandas index metadata) so any reader, not only pandas, sees it.
    table = pa.Table.from_pandas(frame.reset_index(), preserve_index=False)
    # Dictionary pages only for categories: building them for float covariates made writing 3x slower
    # (0.23 s vs 0.07 s for 200k x 30) for files ~1.5x smaller; the output is an intermediate the next steps read once.
    categorical = [f.name for f in table.schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
    pq.write_table(table, path, use_dictionary=categorical or False)


def _narrow_float(name: str, column):
    """A floating covariate as float32 (coordinates stay float64): prepare_dataset would narrow it anyway."""
    if pa.types.is_floating(column.type) and column.type != pa.float32() and name not in COORDINATE_COLUMNS:
        return pc.cast(column, pa.float32())
    return column


def _narrow_floats(table: pa.Table) -> pa.Table:
    for i, name in enumerate(table.column_names):
        table = table.set_column(i, name, _narrow_float(name, table.column(i)))
    return table


class _FullRead(Exception):
    """The streamed read met something only the full read reports faithfully."""


def _gold_mask(ids: pa.Array, sorted_gold: np.ndarray, all_ids: list[np.ndarray]) -> pa.Array:
    """Which of ``ids`` are gold ids; every id is also kept (8 bytes a row) for the duplicate check."""
    if not pa.types.is_integer(ids.type) or ids.null_count:
        raise _FullRead
    values = pc.cast(ids, pa.int64()).to_numpy()  # safe cast: uint64 ids past int64 raise, and fall back
    all_ids.append(values)
    # Binary search in the sorted gold ids: pc.is_in would rebuild its hash set for every batch.
    at = np.minimum(np.searchsorted(sorted_gold, values), len(sorted_gold) - 1)
    return pa.array(sorted_gold[at] == values)


def _parquet_gold_rows(file: Path, sorted_gold: np.ndarray, all_ids: list[np.ndarray]) -> pa.Table:
    """Row group by row group, the id column first, then each other column alone, filtered to gold rows.

    Column by column rather than ``iter_batches``: a writer may put a million rows in one row group, and
    the batch reader then holds the whole row group's pages (measured: 125-170 MB for 1,000,000 x 33).
    """
    wanted, include = select_columns(file)
    if ID_COLUMN not in wanted:
        raise _FullRead
    source = pq.ParquetFile(file)
    parts = []
    for group in range(source.num_row_groups):
        ids = source.read_row_group(group, columns=[include[wanted.index(ID_COLUMN)]]).column(0)
        mask = _gold_mask(ids.combine_chunks(), sorted_gold, all_ids)
        columns = [
            _narrow_float(name, source.read_row_group(group, columns=[written]).column(0).filter(mask))
            for name, written in zip(wanted, include, strict=True)
        ]
        parts.append(pa.Table.from_arrays(columns, names=wanted))
    if not parts:
        raise _FullRead
    return pa.concat_tables(parts)


def _csv_gold_rows(file: Path, sorted_gold: np.ndarray, all_ids: list[np.ndarray]) -> pa.Table:
    """Block by block with pyarrow's streaming CSV reader, each block filtered to gold rows and narrowed."""
    kept = []
    for batch in iter_file_batches(file):
        if ID_COLUMN not in batch.schema.names:
            raise _FullRead
        batch = batch.filter(_gold_mask(batch.column(ID_COLUMN), sorted_gold, all_ids))
        kept.append(
            pa.RecordBatch.from_arrays(
                [_narrow_float(name, column) for name, column in zip(batch.schema.names, batch.columns, strict=True)],
                names=batch.schema.names,
            )
        )
    if not kept:  # a header but no rows: read_arrow reports it
        raise _FullRead
    return pa.Table.from_batches(kept)


def _stream_gold_rows(path: Path, gold_ids: np.ndarray) -> tuple[pa.Table, int] | None:
    """The feature rows whose gbifid is a gold id, read piece by piece; None when the full read must decide.

    Peak memory is the kept rows plus one piece (and every row's id, 8 bytes each, for the duplicate
    check), instead of the whole table: 1,000,000 x 33 columns is 250 MB decoded for 200,000 kept rows.
    Anything unusual returns None so the caller reads the whole input the old way and prepare_dataset's
    errors describe the real input: ids that are not integers or have nulls, duplicate ids anywhere in the
    file (not only among gold rows), no gold id present, a CSV whose later blocks do not fit the types of
    its first one, files of a folder that disagree on columns or types.
    """
    sorted_gold = np.sort(gold_ids.astype(np.int64, copy=False))
    tables, all_ids = [], []
    try:
        for file in table_files(path):
            read = _csv_gold_rows if file.suffix.lower() == ".csv" else _parquet_gold_rows
            tables.append(read(file, sorted_gold, all_ids))
    except (_FullRead, DataContractError, pa.ArrowInvalid, pa.ArrowTypeError, OSError):
        return None
    # Sort in place (8 bytes a row) rather than a hash set (several times that) to find duplicates.
    ids = np.concatenate(all_ids)
    del all_ids
    rows = len(ids)
    ids.sort()
    if (ids[1:] == ids[:-1]).any():
        return None
    del ids
    first = tables[0].column_names
    if any(set(t.column_names) != set(first) for t in tables[1:]):
        return None
    try:
        table = pa.concat_tables([t.select(first) for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if not table.num_rows:
        return None
    # Files typed int64 in one part and float in another promote to float64 here: narrow again.
    return _narrow_floats(table), rows


def _read_features(path: Path, gold_ids: pd.Series) -> tuple[pd.DataFrame, int]:
    """Read the features, keeping only rows whose gbifid is in the gold data when that is safe to do early.

    Feature tables are much larger than gold data (1,000,000 vs 200,000 rows): streaming them batch by
    batch and keeping only gold rows bounds memory by the joined frame, not the file. It is only an
    optimisation: whenever the ids need checking (not integers, nulls, duplicates) or nothing would be
    left, the full table goes to ``prepare_dataset`` so its errors describe the real input.
    """
    if pd.api.types.is_integer_dtype(gold_ids.dtype):
        streamed = _stream_gold_rows(path, gold_ids.to_numpy())
        if streamed is not None:
            table, rows = streamed
            frame = table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True)
            # Hand the pieces' freed buffers back to the OS (mimalloc keeps them otherwise), so the join and
            # the writes that follow do not stack their peak on top of them.
            pa.default_memory_pool().release_unused()
            return frame, rows
    table = read_arrow(path)
    rows = table.num_rows
    if ID_COLUMN in table.column_names and pd.api.types.is_integer_dtype(gold_ids.dtype):
        ids = table[ID_COLUMN]
        if pa.types.is_integer(ids.type) and ids.null_count == 0 and pc.count_distinct(ids).as_py() == rows:
            kept = table.filter(pc.is_in(ids, value_set=pa.array(gold_ids.to_numpy(), type=ids.type)))
            if kept.num_rows:
                table = kept
    table = _narrow_floats(table)
    return table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True), rows


def run_prep(
    features: str | os.PathLike,
    species_dir: str | os.PathLike,
    species: str,
    output: str | os.PathLike,
    *,
    site: str | None = None,
    features_version: int | str | None = None,
    species_version: int | str | None = None,
    feature_columns: Sequence[str] | None = None,
    min_rows_per_class: int | None = None,
    correlation_id: str | None = None,
) -> dict:
    """Prep one species: read, prepare, write ``output`` atomically; return the summary (also summary.json).

    ``features``: a file, a folder of csv/parquet files, or an asset folder with version sub-folders
    (then ``features_version``, latest by default). ``species_dir`` likewise holds the gold files.
    Output: features.parquet (gbifid + predictors), targets.parquet (gbifid, target),
    coords.parquet (gbifid, decimallatitude, decimallongitude; when present), summary.json.
    """
    species = validate_name(species, "species")
    if site is not None:
        site = validate_name(site, "site")
    features_path = resolve_data_path(features, features_version)
    gold_path = gold_file_in(resolve_data_path(species_dir, species_version), species)
    feature_files = table_files(features_path)
    logger.info("prep %s: features %s, gold %s [correlation_id=%s]", species, features_path, gold_path, correlation_id)

    gold = read_table(gold_path, [ID_COLUMN, TARGET_COLUMN])
    frame, feature_rows = _read_features(features_path, gold[ID_COLUMN])
    # Name the file in error messages when there is one; a folder of parts is named as a folder.
    features_source = (
        str(feature_files[0]) if len(feature_files) == 1 else f"{features_path} ({len(feature_files)} files)"
    )
    data = prepare_dataset(
        frame,
        gold,
        features_source=features_source,
        gold_source=str(gold_path),
        feature_columns=feature_columns,
        min_rows_per_class=min_rows_per_class,
    )
    data.stats["feature_rows"] = feature_rows
    summary = {
        "species": species,
        **({"site": site} if site is not None else {}),
        **data.stats,
        "features_path": str(features_path),
        "feature_files": [str(f) for f in feature_files],
        "gold_file": str(gold_path),
        "output": str(output),
        "correlation_id": correlation_id,
    }
    with atomic_output_dir(output) as tmp:
        _write_parquet(data.features, tmp / FEATURES_FILE)
        _write_parquet(data.targets.to_frame(), tmp / TARGETS_FILE)
        if data.coords is not None:
            _write_parquet(data.coords, tmp / COORDS_FILE)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info(
        "prep %s: %d rows (%d present, %d absent), %d features -> %s [correlation_id=%s]",
        species,
        summary["rows"],
        summary["n_present"],
        summary["n_absent"],
        summary["n_features"],
        output,
        correlation_id,
    )
    return summary


def load_prepared(folder: str | os.PathLike) -> PreparedData:
    """Read a prep output folder back: features and targets indexed by gbifid, in the same order."""
    folder = Path(folder)
    for name in (FEATURES_FILE, TARGETS_FILE):
        if not (folder / name).is_file():
            raise DataContractError(f"{folder} has no {name}: pass the output folder of the prep step.")
    features = pd.read_parquet(folder / FEATURES_FILE).set_index(ID_COLUMN)
    targets = pd.read_parquet(folder / TARGETS_FILE).set_index(ID_COLUMN)["target"]
    coords = pd.read_parquet(folder / COORDS_FILE).set_index(ID_COLUMN) if (folder / COORDS_FILE).is_file() else None
    if not features.index.equals(targets.index):
        raise DataContractError(
            f"{folder}: features.parquet and targets.parquet are not aligned on gbifid; rerun prep."
        )
    stats = json.loads((folder / SUMMARY_FILE).read_text()) if (folder / SUMMARY_FILE).is_file() else {}
    return PreparedData(features, targets, coords, stats)
