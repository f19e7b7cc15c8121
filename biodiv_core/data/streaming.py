"""Read only the feature rows prep needs: stream the gold rows out of big feature files.

Parquet is read column by column per row group, CSV block by block, keeping the rows whose gbifid is in
the gold data and narrowing float covariates to float32 per piece, so peak memory follows the kept rows,
not the file. Anything unusual (mixed types, duplicate ids, odd headers) falls back to the full read,
whose checks report it faithfully.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from biodiv_core.data.contract import COORDINATE_COLUMNS, ID_COLUMN, float_ids_as_int64
from biodiv_core.data.datastore import iter_file_batches, read_arrow, select_columns, table_files
from biodiv_core.errors import DataContractError


def _narrow_float(name: str, column):
    """A floating covariate as float32 (coordinates stay float64): prepare_dataset would narrow it anyway.

    Never the id column: float32 holds integers exactly only below 2^24, and gbifids are past 2^32.
    """
    if (
        pa.types.is_floating(column.type)
        and column.type != pa.float32()
        and name not in COORDINATE_COLUMNS
        and name != ID_COLUMN
    ):
        return pc.cast(column, pa.float32())
    return column


def _narrow_floats(table: pa.Table) -> pa.Table:
    for i, name in enumerate(table.column_names):
        table = table.set_column(i, name, _narrow_float(name, table.column(i)))
    return table


class _FullRead(Exception):
    """The streamed read met something only the full read reports faithfully."""


def _int64_ids(ids: pa.Array) -> np.ndarray:
    """Ids as int64: integers, or floats that are whole numbers held exactly (``4294967396.0``); else _FullRead."""
    if ids.null_count:
        raise _FullRead
    if pa.types.is_integer(ids.type):
        return pc.cast(ids, pa.int64()).to_numpy()  # safe cast: uint64 ids past int64 raise, and fall back
    if pa.types.is_floating(ids.type):
        values = float_ids_as_int64(ids.to_numpy())
        if values is not None:
            return values
    raise _FullRead


def _gold_mask(ids: pa.Array, sorted_gold: np.ndarray, all_ids: list[np.ndarray]) -> tuple[pa.Array, pa.Array]:
    """(which of ``ids`` are gold ids, the kept ids as int64); every id is also kept (8 bytes a row) for the
    duplicate check."""
    values = _int64_ids(ids)
    all_ids.append(values)
    # Binary search in the sorted gold ids: pc.is_in would rebuild its hash set for every batch.
    at = np.minimum(np.searchsorted(sorted_gold, values), len(sorted_gold) - 1)
    keep = sorted_gold[at] == values
    return pa.array(keep), pa.array(values[keep])


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
        mask, kept_ids = _gold_mask(ids.combine_chunks(), sorted_gold, all_ids)
        columns = [
            kept_ids
            if name == ID_COLUMN
            else _narrow_float(name, source.read_row_group(group, columns=[written]).column(0).filter(mask))
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
        mask, kept_ids = _gold_mask(batch.column(ID_COLUMN), sorted_gold, all_ids)
        batch = batch.filter(mask)
        columns = [
            kept_ids if name == ID_COLUMN else _narrow_float(name, column)
            for name, column in zip(batch.schema.names, batch.columns, strict=True)
        ]
        kept.append(pa.RecordBatch.from_arrays(columns, names=batch.schema.names))
    if not kept:  # a header but no rows: read_arrow reports it
        raise _FullRead
    return pa.Table.from_batches(kept)


def stream_gold_rows(path: Path, gold_ids: np.ndarray) -> tuple[pa.Table, int] | None:
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


def _gold_id_values(gold_ids: pd.Series) -> np.ndarray | None:
    """The gold ids as int64 for filtering, when that is exact (integers, or whole floats held exactly); else None
    and prepare_dataset reports them."""
    if pd.api.types.is_integer_dtype(gold_ids.dtype):
        return gold_ids.to_numpy()
    if pd.api.types.is_float_dtype(gold_ids.dtype) and not gold_ids.isna().any():
        return float_ids_as_int64(gold_ids.to_numpy())
    return None


def read_features(path: Path, gold_ids: pd.Series) -> tuple[pd.DataFrame, int]:
    """Read the features, keeping only rows whose gbifid is in the gold data when that is safe to do early.

    Feature tables are much larger than gold data (1,000,000 vs 200,000 rows): streaming them batch by
    batch and keeping only gold rows bounds memory by the joined frame, not the file. It is only an
    optimisation: whenever the ids need checking (not integers, nulls, duplicates) or nothing would be
    left, the full table goes to ``prepare_dataset`` so its errors describe the real input. Ids are never
    narrowed to float32 (covariates are), so ids written as floats stay exact or are reported.
    """
    gold_values = _gold_id_values(gold_ids)
    if gold_values is not None:
        streamed = stream_gold_rows(path, gold_values)
        if streamed is not None:
            table, rows = streamed
            frame = table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True)
            # Hand the pieces' freed buffers back to the OS (mimalloc keeps them otherwise), so the join and
            # the writes that follow do not stack their peak on top of them.
            pa.default_memory_pool().release_unused()
            return frame, rows
    table = read_arrow(path)
    rows = table.num_rows
    if ID_COLUMN in table.column_names and gold_values is not None:
        ids = table[ID_COLUMN]
        if pa.types.is_integer(ids.type) and ids.null_count == 0 and pc.count_distinct(ids).as_py() == rows:
            kept = table.filter(pc.is_in(ids, value_set=pa.array(gold_values, type=ids.type)))
            if kept.num_rows:
                table = kept
    table = _narrow_floats(table)
    return table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True), rows
