"""The columns of the kept feature rows, filled piece by piece straight into the arrays of the pandas frame.

The streamed read used to gather Arrow pieces, concatenate them and copy the result into pandas
(``Table.to_pandas``): the kept rows were held twice at the end, and the two copies lived in different heaps
(Arrow's allocator and numpy's), so the first did not make room for the second. Here every floating column
is one numpy array allocated up front (float32: prepare_dataset narrows covariates anyway; coordinates keep
their type, see ``streaming``) and each piece is copied into its rows as soon as it is read, so the frame is
built once and only one piece per reading thread is held beside it. The id column is int64 (the ids the
row mask already converted). Anything else (text, integers, booleans, dictionaries) is rare and small: its
Arrow pieces are kept and converted at the end, column by column, with ``to_pandas``'s own rules (strings
become categories), exactly as the table was before.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa

from biodiv_core.data.contract import COORDINATE_COLUMNS, ID_COLUMN


class PieceMismatch(Exception):
    """A piece does not fit its column (another type than the first piece's, or more rows than planned)."""


def _numpy_dtype(name: str, arrow_type: pa.DataType):
    """The numpy type a column is gathered into, or None to keep its Arrow pieces.

    Never float32 for the id or the coordinates: float32 holds integers exactly only below 2^24, and
    coordinates are written as float64 degrees.
    """
    if name == ID_COLUMN:
        return np.dtype(np.int64)
    if pa.types.is_floating(arrow_type):
        if name in COORDINATE_COLUMNS:
            return np.dtype(arrow_type.to_pandas_dtype())
        return np.dtype(np.float32)
    return None


def selected(name: str, column: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> np.ndarray | pa.Array:
    """``column``'s values at the positions ``rows``, as ``KeptColumns.put`` takes them: numpy for a column
    gathered into numpy (a take with the positions costs half of Arrow's filter here), else Arrow."""
    if _numpy_dtype(name, column.type) is not None and pa.types.is_floating(column.type):
        return column.to_numpy(zero_copy_only=False).take(rows)  # nulls -> NaN, as to_pandas gives them
    return column.take(pa.array(rows))


class KeptColumns:
    """``capacity`` rows of the named columns (``add``), filled by ``put``.

    Pieces may arrive in any order and from several threads (each call writes its own rows); ``frame``
    returns the first ``rows`` rows in row order.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._types: dict[str, pa.DataType] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._pieces: dict[str, list[tuple[int, pa.Array]]] = {}
        self._filled: dict[str, int] = {}  # rows written into each numpy column, checked by ``frame``
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._types)

    def add(self, name: str, arrow_type: pa.DataType) -> None:
        """Declare a column (the first file's type), or check a later file's type against it."""
        if name in self._types:
            if self._types[name] != arrow_type and not _gathered_alike(name, self._types[name], arrow_type):
                raise PieceMismatch(name)
            return
        self._types[name] = arrow_type
        dtype = _numpy_dtype(name, arrow_type)
        if dtype is None:
            self._pieces[name] = []
        else:
            # np.empty: pages are only touched (and resident) as pieces fill them.
            self._arrays[name] = np.empty(self.capacity, dtype=dtype)
            self._filled[name] = 0

    def put(self, name: str, offset: int, values: pa.Array | pa.ChunkedArray | np.ndarray) -> None:
        """The column's values for rows ``offset`` .. ``offset + len(values)`` (safe from several threads)."""
        if offset + len(values) > self.capacity:
            raise PieceMismatch(name)
        if name in self._arrays:
            if not isinstance(values, np.ndarray):
                if not pa.types.is_floating(values.type):
                    raise PieceMismatch(name)
                values = values.to_numpy(zero_copy_only=False)  # nulls -> NaN, as to_pandas gives them
            # float64 -> float32 on the way; a value past float32 becomes inf, which prep rejects naming the column
            # (feature_checks.check_finite), so numpy's overflow warning would only add a line to the terminal.
            with np.errstate(over="ignore"):
                self._arrays[name][offset : offset + len(values)] = values
            with self._lock:
                self._filled[name] += len(values)
            return
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        self._pieces[name].append((offset, chunks))  # list.append: atomic under the GIL

    def frame(self, rows: int) -> pd.DataFrame:
        """The first ``rows`` rows as a pandas frame: the numpy columns without a copy, the others converted one
        at a time (their pieces must share one type, else PieceMismatch)."""
        columns = {}
        for name in self._types:
            if name in self._arrays:
                if self._filled[name] != rows:  # never: the rows not written would hold whatever memory held
                    raise PieceMismatch(name)
                columns[name] = self._arrays[name][:rows]
                continue
            pieces = [chunk for _, chunks in sorted(self._pieces.pop(name), key=lambda p: p[0]) for chunk in chunks]
            if len({piece.type for piece in pieces}) > 1:
                raise PieceMismatch(name)
            chunked = pa.chunked_array(pieces, type=pieces[0].type if pieces else self._types[name])
            del pieces
            if len(chunked) != rows:  # never: pandas would align the column on its index and fill in NaN
                raise PieceMismatch(name)
            columns[name] = chunked.to_pandas(strings_to_categorical=True, self_destruct=True)
        self._arrays = {}
        return pd.DataFrame(columns, copy=False)


def _gathered_alike(name: str, first: pa.DataType, later: pa.DataType) -> bool:
    """Files typing a column differently still fill the same array: ids of any type (the mask converted them),
    float32 and float64 covariates (both become float32). Coordinates must agree: their type is kept."""
    if name == ID_COLUMN:
        return True
    return name not in COORDINATE_COLUMNS and pa.types.is_floating(first) and pa.types.is_floating(later)
