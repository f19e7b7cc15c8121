"""Read only the feature rows prep needs: the gold rows out of big feature files, on every core.

Parquet: the gbifid column first (the kept rows, and the duplicate check over every id, a sort unless the
ids are already in increasing order), then each other column alone, in batches, on pyarrow's thread count,
taking the kept rows of each batch. CSV:
line-aligned pieces parsed on as many threads (``csv_pieces``), each reduced to its gold rows on its own
thread. Either way the kept values go straight into the arrays of the pandas frame (``kept_columns``,
float covariates as float32), so peak memory follows the kept rows plus a piece per thread, not the file,
and the frame is never copied from Arrow. Anything unusual (mixed types, duplicate ids, odd headers)
falls back to the full read, whose checks report it faithfully.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from biodiv_core.data.contract import COORDINATE_COLUMNS, ID_COLUMN, float_ids_as_int64
from biodiv_core.data.csv_pieces import FIRST_BLOCK_BYTES, map_pieces
from biodiv_core.data.datastore import read_arrow, read_table, select_columns, table_files
from biodiv_core.data.kept_columns import KeptColumns, PieceMismatch, selected
from biodiv_core.errors import DataContractError

# Rows per parquet batch: small enough that a decoded batch is reused by the allocator, not left resident.
BATCH_ROWS = 65_536
# Columns a reading thread reads between handing its freed pages back (see _read_columns).
RELEASE_EVERY = 4


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


def _keep(sorted_gold: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which ``values`` are gold ids: a binary search in the sorted unique gold ids (numpy releases the GIL
    for it, so reading threads search at once; pc.is_in would rebuild its hash set for every piece)."""
    at = np.minimum(np.searchsorted(sorted_gold, values), len(sorted_gold) - 1)
    return sorted_gold[at] == values


def _check_unique(ids: np.ndarray, kind: str = "quicksort") -> None:
    """_FullRead if an id appears twice anywhere. Sorts ``ids`` in place (8 bytes a row, not a hash set's
    several times that; numpy releases the GIL for it). ``kind="stable"`` for ids that are runs already
    sorted: it merges them (60 runs of 1,000,000 ids: 22 ms, a quicksort 62 ms)."""
    ids.sort(kind=kind)
    if (ids[1:] == ids[:-1]).any():
        raise _FullRead


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for int64 ids, by a sort: numpy 2.4's np.unique hashes, 14x slower here
    (131 ms vs 9 ms for 200,000 ids)."""
    values = np.sort(values.astype(np.int64, copy=False))
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if len(values) else values


def _columns_of(files: list[Path]) -> list[tuple[Path, list[str], list[str]]]:
    """(file, lower-cased names, names as written) of every file; _FullRead unless all have the same columns
    and a gbifid."""
    out = [(file, *select_columns(file)) for file in files]
    first = set(out[0][1])
    if ID_COLUMN not in first or any(set(wanted) != first for _, wanted, _ in out[1:]):
        raise _FullRead
    return out


def _parquet_ids(source: pq.ParquetFile, written: str) -> np.ndarray:
    """Every id of the file as int64, batch by batch into an array sized from the footer."""
    rows = source.metadata.num_rows
    ids, start = np.empty(rows, dtype=np.int64), 0
    for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=[written], use_threads=False):
        values = _int64_ids(batch.column(0))
        if start + len(values) > rows:
            raise _FullRead
        ids[start : start + len(values)] = values
        start += len(values)
    if start != rows:
        raise _FullRead
    return ids


def _increasing(ids: np.ndarray) -> bool:
    """Strictly increasing, so without a duplicate (a file written sorted by gbifid): 1 ms for 1,000,000 ids."""
    return bool((ids[1:] > ids[:-1]).all())


def _gold_rows_in(ids: np.ndarray, sorted_gold: np.ndarray, increasing: bool) -> np.ndarray:
    """The positions, in row order, of the rows whose id is a gold id. Increasing ids are searched for each gold
    id (200,000 binary searches, not 1,000,000: 4 ms instead of 23)."""
    if not increasing:
        return np.flatnonzero(_keep(sorted_gold, ids))
    at = np.searchsorted(ids, sorted_gold)
    at = at[: np.searchsorted(at, len(ids))]  # gold ids past the last id
    return at[ids[at] == sorted_gold[: len(at)]]


def _unique_across(ids: list[np.ndarray], increasing: list[bool]) -> np.ndarray | None:
    """None when the files' ids are already known unique (each increasing, each file's after the previous
    one's); else every id in one array for ``_check_unique``."""
    filled = [values for values in ids if len(values)]
    if all(increasing) and all(a[-1] < b[0] for a, b in zip(filled, filled[1:], strict=False)):
        return None
    return ids[0] if len(ids) == 1 else np.concatenate(ids)


def _read_columns(tasks: list[tuple], columns: KeptColumns, threads: int) -> None:
    """``tasks`` (file, first frame row, kept positions, name, name as written), file by file, on ``threads``
    threads, each column in batches of BATCH_ROWS, filtered to the kept positions and copied into ``columns``.

    Each thread opens a file once for all the columns it reads of it (opening parses the footer: 0.5 ms;
    readers are not shared between threads), and hands its freed batches back every RELEASE_EVERY columns:
    mimalloc returns a thread's free pages only when that thread asks. Measured for 1,000,000 x 33, prep's
    peak above imports: 93 MiB asking only at the end, 75-80 asking after every column, which then spent a
    third of the column reads' CPU faulting in fresh pages for the next column (every 4: ~30 ms less CPU,
    2-4 MiB more than every column).
    """
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for task in tasks:
        pending.put(task)

    def read(source: pq.ParquetFile, offset: int, rows_at: np.ndarray, name: str, written: str) -> None:
        """One column's kept rows into ``columns``."""
        start = 0
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=[written], use_threads=False):
            low, high = np.searchsorted(rows_at, (start, start + batch.num_rows))
            values = selected(name, batch.column(0), rows_at[low:high] - start)
            columns.put(name, offset, values)
            offset += len(values)
            start += batch.num_rows

    def work() -> None:
        file, source, done = None, None, 0
        try:
            while True:
                try:
                    task = pending.get_nowait()
                except queue.Empty:
                    return
                if task[0] != file:
                    if source is not None:
                        source.close()
                    file, source = task[0], pq.ParquetFile(task[0])
                read(source, *task[1:])
                done += 1
                if done % RELEASE_EVERY == 0:
                    pa.default_memory_pool().release_unused()  # this thread's freed batches (see above)
        except BaseException:
            with contextlib.suppress(queue.Empty):  # the others stop too: the result is lost anyway
                while True:
                    pending.get_nowait()
            raise
        finally:
            if source is not None:
                source.close()
            pa.default_memory_pool().release_unused()

    with ThreadPoolExecutor(threads, thread_name_prefix="parquet-column") as pool:
        for done in [pool.submit(work) for _ in range(max(1, min(threads, len(tasks))))]:
            done.result()


def _parquet_gold_rows(files: list[Path], sorted_gold: np.ndarray, threads: int) -> tuple[pd.DataFrame, int]:
    """Two passes. First the gbifid column of every file: the kept positions, the kept ids, and the duplicate
    check over every id. Then every other column of every file alone (``_read_columns``).

    One column at a time rather than ``iter_batches`` over all columns: a writer may put a million rows in
    one row group, and a reader of every column then holds the whole row group's pages (measured: 125-170
    MB for 1,000,000 x 33). In batches rather than whole column chunks (``read_row_group``): an 8 MB
    decoded column freed after each use left 40-70 MB of freed pages resident in the allocator; the decoding
    costs the same either way.
    """
    plans, all_ids, increasing, kept_ids, rows, rows_kept = [], [], [], [], 0, 0
    for file, wanted, include in _columns_of(files):
        with pq.ParquetFile(file) as source:
            ids = _parquet_ids(source, include[wanted.index(ID_COLUMN)])
            schema = source.schema_arrow
        increasing.append(_increasing(ids))
        rows_at = _gold_rows_in(ids, sorted_gold, increasing[-1])
        kept_ids.append(ids[rows_at])
        all_ids.append(ids)
        plans.append((file, wanted, include, schema, rows_kept, rows_at))
        rows, rows_kept = rows + len(ids), rows_kept + len(rows_at)
    del ids
    if not rows_kept:
        raise _FullRead
    # Ids in order are unique already; others are sorted for the check, beside the column reads.
    unchecked = _unique_across(all_ids, increasing)
    del all_ids
    columns = KeptColumns(rows_kept)
    for _, wanted, include, schema, _, _ in plans:
        for name, written in zip(wanted, include, strict=True):
            columns.add(name, schema.field(written).type)
    columns.put(ID_COLUMN, 0, np.concatenate(kept_ids))
    del kept_ids
    tasks = [
        (file, offset, rows_at, name, written)
        for file, wanted, include, _, offset, rows_at in plans
        for name, written in zip(wanted, include, strict=True)
        if name != ID_COLUMN
    ]
    if unchecked is None:
        _read_columns(tasks, columns, threads)
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="parquet-ids") as check:
            # Its copy of the ids is freed long before the columns fill.
            unique = check.submit(_check_unique, unchecked, "stable" if all(increasing) else "quicksort")
            del unchecked
            _read_columns(tasks, columns, threads)
            unique.result()
    return columns.frame(rows_kept), rows


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
    for file, wanted, include in _columns_of(files):
        at = wanted.index(ID_COLUMN)

        def reduce(table: pa.Table, wanted=wanted, at=at):
            values = _int64_ids(table.column(at).combine_chunks())
            keep = _keep(sorted_gold, values)
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
        raise _FullRead
    _check_unique(ids[:rows], kind="stable")
    del ids
    return columns.frame(rows_kept), rows


def stream_gold_rows(path: Path, gold_ids: np.ndarray) -> tuple[pd.DataFrame, int] | None:
    """(the feature rows whose gbifid is a gold id, as the frame prep reads; the number of feature rows), read
    piece by piece on pyarrow's thread count; None when the full read must decide.

    Peak memory is the kept rows plus a piece per thread (and every row's id, 8 bytes each, for the
    duplicate check), instead of the whole table: 1,000,000 x 33 columns is 250 MB decoded for 200,000 kept
    rows. Anything unusual returns None so the caller reads the whole input the old way and prepare_dataset's
    errors describe the real input: ids that are not integers or have nulls, duplicate ids anywhere in the
    file (not only among gold rows), no gold id present, a CSV whose later pieces do not fit the types of
    its first block, files of a folder that disagree on columns or on the kind of a column's values, a folder
    mixing CSV and parquet.
    """
    sorted_gold = _sorted_unique(gold_ids)
    if not len(sorted_gold):
        return None
    try:
        files = table_files(path)
        kinds = {file.suffix.lower() == ".csv" for file in files}
        if len(kinds) > 1:
            raise _FullRead
        read = _csv_gold_rows if kinds == {True} else _parquet_gold_rows
        return read(files, sorted_gold, pa.cpu_count())
    except (_FullRead, PieceMismatch, DataContractError, pa.ArrowException, OSError):
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


def read_features(path: Path, gold_ids: pd.Series) -> tuple[pd.DataFrame, int]:
    """Read the features, keeping only rows whose gbifid is in the gold data when that is safe to do early.

    Feature tables are much larger than gold data (1,000,000 vs 200,000 rows): streaming them piece by
    piece and keeping only gold rows bounds memory by the joined frame, not the file. It is only an
    optimisation: whenever the ids need checking (not integers, nulls, duplicates) or nothing would be
    left, the full table goes to ``prepare_dataset`` so its errors describe the real input. Ids are never
    narrowed to float32 (covariates are), so ids written as floats stay exact or are reported.
    """
    gold_values = _gold_id_values(gold_ids)
    if gold_values is not None:
        streamed = stream_gold_rows(path, gold_values)
        if streamed is not None:
            # Hand the pieces' freed buffers back to the OS (mimalloc keeps them otherwise), so the join and
            # the writes that follow do not stack their peak on top of them.
            pa.default_memory_pool().release_unused()
            return streamed
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
