"""The gold rows of parquet feature files: the gbifid column of every file first, then each other column alone.

Columns are read on threads, in batches, and only each batch's kept rows are copied into the frame's arrays
(``kept_columns``), so peak memory follows the kept rows plus a batch per thread, not the file.
"""

from __future__ import annotations

import contextlib
import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from biodiv_core.data.contract import ID_COLUMN
from biodiv_core.data.feature_ids import FullRead, check_unique, columns_of, gold_mask, int64_ids
from biodiv_core.data.kept_columns import KeptColumns, selected

# Rows per parquet batch: small enough that a decoded batch is reused by the allocator, not left resident.
BATCH_ROWS = 65_536
# Columns a reading thread reads between handing its freed pages back (see _read_columns).
RELEASE_EVERY = 4


def _parquet_ids(source: pq.ParquetFile, written: str) -> np.ndarray:
    """Every id of the file as int64, batch by batch into an array sized from the footer."""
    rows = source.metadata.num_rows
    ids, start = np.empty(rows, dtype=np.int64), 0
    for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=[written], use_threads=False):
        values = int64_ids(batch.column(0))
        if start + len(values) > rows:
            raise FullRead
        ids[start : start + len(values)] = values
        start += len(values)
    if start != rows:
        raise FullRead
    return ids


def _increasing(ids: np.ndarray) -> bool:
    """Strictly increasing, so without a duplicate (a file written sorted by gbifid): 1 ms for 1,000,000 ids."""
    return bool((ids[1:] > ids[:-1]).all())


def _gold_rows_in(ids: np.ndarray, sorted_gold: np.ndarray, increasing: bool) -> np.ndarray:
    """The positions, in row order, of the rows whose id is a gold id. Increasing ids are searched for each gold
    id (200,000 binary searches, not 1,000,000: 4 ms instead of 23)."""
    if not increasing:
        return np.flatnonzero(gold_mask(sorted_gold, ids))
    at = np.searchsorted(ids, sorted_gold)
    at = at[: np.searchsorted(at, len(ids))]  # gold ids past the last id
    return at[ids[at] == sorted_gold[: len(at)]]


def _unique_across(ids: list[np.ndarray], increasing: list[bool]) -> np.ndarray | None:
    """None when the files' ids are already known unique (each increasing, each file's after the previous
    one's); else every id in one array for ``check_unique``."""
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


def parquet_ids(files: list[Path]) -> list[tuple]:
    """The first pass, which needs no gold ids (so it can run beside the gold read): every file's (file,
    lower-cased names, names as written, schema, ids, whether they increase)."""
    out = []
    for file, wanted, include in columns_of(files):
        with pq.ParquetFile(file) as source:
            ids = _parquet_ids(source, include[wanted.index(ID_COLUMN)])
            out.append((file, wanted, include, source.schema_arrow, ids, _increasing(ids)))
    return out


def parquet_gold_rows(
    files: list[Path], sorted_gold: np.ndarray, threads: int, ids_ahead: list[tuple] | None = None
) -> tuple[pd.DataFrame, int]:
    """Two passes. First the gbifid column of every file (``parquet_ids``, or ``ids_ahead`` when it was read
    already: emptied here, so its ids are freed once used): the kept positions, the kept ids, and the
    duplicate check over every id. Then every other column of every file alone (``_read_columns``).

    One column at a time rather than ``iter_batches`` over all columns: a writer may put a million rows in
    one row group, and a reader of every column then holds the whole row group's pages (measured: 125-170
    MB for 1,000,000 x 33). In batches rather than whole column chunks (``read_row_group``): an 8 MB
    decoded column freed after each use left 40-70 MB of freed pages resident in the allocator; the decoding
    costs the same either way.
    """
    read = list(ids_ahead) if ids_ahead and [entry[0] for entry in ids_ahead] == files else parquet_ids(files)
    if ids_ahead is not None:
        ids_ahead.clear()
    plans, all_ids, increasing, kept_ids, rows, rows_kept = [], [], [], [], 0, 0
    for file, wanted, include, schema, ids, ordered in read:
        increasing.append(ordered)
        rows_at = _gold_rows_in(ids, sorted_gold, ordered)
        kept_ids.append(ids[rows_at])
        all_ids.append(ids)
        plans.append((file, wanted, include, schema, rows_kept, rows_at))
        rows, rows_kept = rows + len(ids), rows_kept + len(rows_at)
    ids = read = None  # the ids live on in all_ids only, until the duplicate check
    if not rows_kept:
        raise FullRead
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
            unique = check.submit(check_unique, unchecked, "stable" if all(increasing) else "quicksort")
            del unchecked
            _read_columns(tasks, columns, threads)
            unique.result()
    return columns.frame(rows_kept), rows
