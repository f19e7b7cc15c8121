"""Read only the feature rows prep needs: the gold rows out of big feature files, on every core.

Parquet (``parquet_rows``): the gbifid column first (the kept rows, and the duplicate check over every id,
a sort unless the ids are already in increasing order), then each other column alone, in batches, on
pyarrow's thread count, taking the kept rows of each batch. CSV: line-aligned pieces parsed on as many
threads (``csv_pieces``), each reduced to its gold rows on its own thread. Either way the kept values go
straight into the arrays of the pandas frame (``kept_columns``, float covariates as float32), so peak memory
follows the kept rows plus a piece per thread, not the file, and the frame is never copied from Arrow.
Anything unusual (mixed types, duplicate ids, odd headers) falls back to the full read, whose checks report
it faithfully (``feature_ids.FullRead``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from biodiv_core.data.contract import COORDINATE_COLUMNS, ID_COLUMN, float_ids_as_int64
from biodiv_core.data.csv_pieces import FIRST_BLOCK_BYTES, map_pieces
from biodiv_core.data.datastore import read_arrow, read_table, select_columns, table_files
from biodiv_core.data.feature_ids import FullRead, check_unique, columns_of, gold_mask, int64_ids, sorted_unique
from biodiv_core.data.kept_columns import KeptColumns, PieceMismatch, selected
from biodiv_core.data.parquet_rows import parquet_gold_rows, parquet_ids
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


def _grown(ids: np.ndarray, used: int, more: int) -> np.ndarray:
    """``ids`` with room for ``more`` after its first ``used`` values (doubling, so copies stay rare)."""
    if used + more <= len(ids):
        return ids
    bigger = np.empty(max(2 * len(ids), used + more), dtype=np.int64)
    bigger[:used] = ids[:used]
    return bigger


def _csv_gold_rows(files: list[Path], sorted_gold: np.ndarray, threads: int) -> tuple[pd.DataFrame, int]:
    """Each file in line-aligned pieces parsed on ``threads`` threads, every piece reduced to its gold rows on
    the thread that parsed it, then copied into the frame's arrays in file order."""
    # At most one row per gold id: more would be duplicates, which PieceMismatch sends to the full read.
    columns = KeptColumns(len(sorted_gold))
    ids, rows, rows_kept = np.empty(0, dtype=np.int64), 0, 0
    for file, wanted, include in columns_of(files):
        at = wanted.index(ID_COLUMN)

        def reduce(table: pa.Table, wanted=wanted, at=at):
            values = int64_ids(table.column(at).combine_chunks())
            keep = gold_mask(sorted_gold, values)
            rows_at = np.flatnonzero(keep)
            kept = [
                (name, table.column(i).type, selected(name, table.column(i), rows_at))
                for i, name in enumerate(wanted)
                if i != at
            ]
            del table
            # This thread's freed piece: mimalloc returns a thread's free pages only when that thread asks.
            pa.default_memory_pool().release_unused()
            # Sorted here, on the reading threads, for the duplicate check: a copy, and runs the final sort merges.
            return np.sort(values), values[keep], kept

        # Room for the file's ids, estimated from its size and its first block's rows, so copies stay rare.
        size, first_block = file.stat().st_size, True
        for values, kept_ids, kept in map_pieces(file, include, include, reduce, threads):
            if first_block:
                ids = _grown(ids, rows, int(len(values) * 1.1 * size / min(size, FIRST_BLOCK_BYTES)) + 1)
                first_block = False
            ids = _grown(ids, rows, len(values))
            ids[rows : rows + len(values)] = values
            rows += len(values)
            columns.add(ID_COLUMN, pa.int64())
            columns.put(ID_COLUMN, rows_kept, kept_ids)
            for name, arrow_type, kept_values in kept:
                columns.add(name, arrow_type)
                columns.put(name, rows_kept, kept_values)
            rows_kept += len(kept_ids)
    if not rows or not rows_kept:  # a header but no rows (read_arrow reports it), or no gold row
        raise FullRead
    check_unique(ids[:rows], kind="stable")
    del ids
    return columns.frame(rows_kept), rows


def read_ids_ahead(path: Path) -> list[tuple] | None:
    """The parquet feature files' ids (``parquet_rows.parquet_ids``), read before the gold ids are known (e.g.
    beside the gold read) for ``read_features``; None for CSV or anything the streamed read would not take."""
    try:
        files = table_files(path)
        if any(file.suffix.lower() == ".csv" for file in files):
            return None
        return parquet_ids(files)
    except (FullRead, DataContractError, pa.ArrowException, OSError):
        return None


def read_gold_and_ids(gold_path: Path, columns: Sequence[str], features: Path) -> tuple[pd.DataFrame, list | None]:
    """The gold file's ``columns`` (``read_gold``) and, when the features are parquet, their ids
    (``read_ids_ahead``), read on this thread while a second one parses the gold file: neither needs the other.
    For CSV features the gold file alone, here: parsed on a second thread, its freed pieces stayed resident
    (3 MiB more at prep's peak) and there is nothing to read beside it."""
    try:
        csv = any(file.suffix.lower() == ".csv" for file in table_files(features))
    except (DataContractError, OSError):  # reported by the read of the features
        csv = True
    if csv:
        return read_gold(gold_path, columns), None
    with ThreadPoolExecutor(1, thread_name_prefix="gold") as reader:
        gold = reader.submit(read_gold, gold_path, columns)
        ids_ahead = read_ids_ahead(features)
        return gold.result(), ids_ahead


def stream_gold_rows(
    path: Path, gold_ids: np.ndarray, ids_ahead: list[tuple] | None = None
) -> tuple[pd.DataFrame, int] | None:
    """(the feature rows whose gbifid is a gold id, as the frame prep reads; the number of feature rows), read
    piece by piece on pyarrow's thread count; None when the full read must decide.

    Peak memory is the kept rows plus a piece per thread (and every row's id, 8 bytes each, for the
    duplicate check), instead of the whole table: 1,000,000 x 33 columns is 250 MB decoded for 200,000 kept
    rows. Anything unusual returns None so the caller reads the whole input the old way and prepare_dataset's
    errors describe the real input: ids that are not integers or have nulls, duplicate ids anywhere in the
    file (not only among gold rows), no gold id present, a CSV whose later pieces do not fit the types of
    its first block, files of a folder that disagree on columns or on the kind of a column's values, a folder
    mixing CSV and parquet. ``ids_ahead``: what ``read_ids_ahead`` read of ``path``, if it was called.
    """
    sorted_gold = sorted_unique(gold_ids)
    if not len(sorted_gold):
        return None
    try:
        files = table_files(path)
        kinds = {file.suffix.lower() == ".csv" for file in files}
        if len(kinds) > 1:
            raise FullRead
        if kinds == {True}:
            return _csv_gold_rows(files, sorted_gold, pa.cpu_count())
        return parquet_gold_rows(files, sorted_gold, pa.cpu_count(), ids_ahead)
    except (FullRead, PieceMismatch, DataContractError, pa.ArrowException, OSError):
        return None


def read_gold(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The gold file's ``columns`` as ``read_table`` reads them, parsed piece by piece on this thread.

    ``read_table``'s threaded read_csv of a 12 MB gold file (200,000 rows of a GBIF export) peaked at 40-50
    MiB and left 20-45 MiB resident under everything prep did next: its decoding threads' freed buffers,
    which mimalloc gives back only when the thread that freed them asks. Pieces parsed here are released
    here. Anything the pieces cannot read as read_table would (a later piece that does not fit the first
    block's types, no rows) goes to read_table, whose errors and type widening are the reference.
    """
    if path.suffix.lower() != ".csv":
        return read_table(path, columns)
    _, names = select_columns(path)  # the DataContractErrors of read_table: empty file, bad header, missing column
    wanted, include = select_columns(path, columns)
    try:
        tables = list(map_pieces(path, names, include, lambda table: table, threads=1))
    except (pa.ArrowException, OSError):
        tables = []
    if not sum(table.num_rows for table in tables):
        return read_table(path, columns)
    table = pa.concat_tables(tables).rename_columns(wanted)
    del tables
    frame = table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()
    return frame


def _gold_id_values(gold_ids: pd.Series) -> np.ndarray | None:
    """The gold ids as int64 for filtering, when that is exact (integers, or whole floats held exactly); else None
    and prepare_dataset reports them."""
    if pd.api.types.is_integer_dtype(gold_ids.dtype):
        return gold_ids.to_numpy()
    if pd.api.types.is_float_dtype(gold_ids.dtype) and not gold_ids.isna().any():
        return float_ids_as_int64(gold_ids.to_numpy())
    return None


def read_features(path: Path, gold_ids: pd.Series, ids_ahead: list[tuple] | None = None) -> tuple[pd.DataFrame, int]:
    """Read the features, keeping only rows whose gbifid is in the gold data when that is safe to do early.

    Feature tables are much larger than gold data (1,000,000 vs 200,000 rows): streaming them piece by
    piece and keeping only gold rows bounds memory by the joined frame, not the file. It is only an
    optimisation: whenever the ids need checking (not integers, nulls, duplicates) or nothing would be
    left, the full table goes to ``prepare_dataset`` so its errors describe the real input. Ids are never
    narrowed to float32 (covariates are), so ids written as floats stay exact or are reported.
    ``ids_ahead``: the feature ids ``read_ids_ahead`` read already (emptied once used).
    """
    gold_values = _gold_id_values(gold_ids)
    if gold_values is not None:
        streamed = stream_gold_rows(path, gold_values, ids_ahead)
        if streamed is not None:
            # Hand the pieces' freed buffers back to the OS (mimalloc keeps them otherwise), so the join and
            # the writes that follow do not stack their peak on top of them.
            pa.default_memory_pool().release_unused()
            return streamed
    if ids_ahead is not None:
        ids_ahead.clear()  # the full read reads them again
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
