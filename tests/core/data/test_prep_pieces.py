"""The pieces the streamed read is built from: CSV cut at line ends and parsed on threads, kept rows gathered into
the frame's arrays, the gold read, the output table. Each must give exactly what the whole-file read gives, or
hand over to it.
"""

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from biodiv_core.data import csv_pieces, parquet_rows, prep, streaming
from biodiv_core.data.datastore import read_table
from biodiv_core.data.kept_columns import KeptColumns, PieceMismatch


def _features(n=6000, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "gbifID": rng.permutation(np.arange(3_000_000_000, 3_000_000_000 + n)),
            "decimalLatitude": rng.uniform(44, 45, n),
            "decimalLongitude": rng.uniform(-111, -110, n),
            "elevation": rng.integers(1600, 3000, n),  # integers: kept as Arrow pieces, converted at the end
            "ndvi": np.where(rng.random(n) < 0.05, np.nan, rng.uniform(0, 1, n).round(4)),  # missing cells
            "land_cover": rng.choice(["forest", "grassland", "wetland"], n),
        }
    )


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few KB and parquet batches of 500 rows, so small files are read in many pieces."""
    monkeypatch.setattr(csv_pieces, "FIRST_BLOCK_BYTES", 4096)
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 3000)
    monkeypatch.setattr(parquet_rows, "BATCH_ROWS", 500)


def _full_read(folder, gold_ids, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(streaming, "stream_gold_rows", lambda *args: None)
        return streaming.read_features(folder, pd.Series(gold_ids))


# --------------------------------------------------------------------------- CSV pieces


@pytest.mark.parametrize(
    "text", [b"a,b\n1,2\n3,4\n", b"a,b\n1,2\n3,4", b"a,b\r\n1,2\r\n", b"a\n" + b"x" * 50 + b"\n1\n"]
)
def test_pieces_end_at_line_ends_and_give_back_the_whole_file(text):
    pieces = list(csv_pieces._pieces(io.BytesIO(text), 5, 4))
    assert b"".join(pieces) == text
    assert all(piece.endswith(b"\n") for piece in pieces[:-1])


def test_pieces_on_threads_read_what_read_csv_reads_in_file_order(tmp_path):
    path = tmp_path / "f.csv"
    _features().to_csv(path, index=False)
    names = list(pd.read_csv(path, nrows=0).columns)
    tables = list(csv_pieces.map_pieces(path, names, names, lambda t: t, threads=3, first_bytes=4096, piece_bytes=2000))
    assert len(tables) > 50
    assert pa.concat_tables(tables).equals(pacsv.read_csv(path))
    # A subset of the columns, in the order asked for.
    picked = list(csv_pieces.map_pieces(path, names, ["ndvi", "gbifID"], lambda t: t, threads=1, piece_bytes=2000))
    assert pa.concat_tables(picked).column_names == ["ndvi", "gbifID"]


def test_a_later_piece_that_does_not_fit_the_first_blocks_types_raises(tmp_path):
    frame = _features().astype({"elevation": object})
    frame.loc[len(frame) - 5, "elevation"] = "abc"  # past the first block
    path = tmp_path / "f.csv"
    frame.to_csv(path, index=False)
    names = list(frame.columns)
    with pytest.raises(pa.ArrowInvalid):
        list(csv_pieces.map_pieces(path, names, names, lambda t: t, threads=2, first_bytes=4096, piece_bytes=2000))


# --------------------------------------------------------------------------- the streamed frame


def _write(folder, frame, fmt, parts):
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        part = frame.iloc[rows]
        if fmt == "csv":
            part.to_csv(folder / f"part{i}.csv", index=False)
        else:
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part{i}.parquet", 1700)
    return folder


@pytest.mark.parametrize(("fmt", "parts"), [("parquet", 1), ("parquet", 3), ("csv", 1), ("csv", 3)])
def test_the_streamed_frame_is_the_full_reads_frame(tmp_path, monkeypatch, small_pieces, fmt, parts):
    features = _features()
    folder = _write(tmp_path / "features", features, fmt, parts)
    gold_ids = features["gbifID"].sample(frac=0.3, random_state=0).to_numpy()
    streamed = streaming.stream_gold_rows(folder, gold_ids)
    assert streamed is not None
    frame, rows = streamed
    full, full_rows = _full_read(folder, gold_ids, monkeypatch)
    assert rows == full_rows == len(features)
    pd.testing.assert_frame_equal(frame, full)  # same rows in file order, same columns, same dtypes
    assert frame["ndvi"].dtype == np.float32 and frame["decimallatitude"].dtype == np.float64
    assert frame["gbifid"].dtype == np.int64 and isinstance(frame["land_cover"].dtype, pd.CategoricalDtype)


def test_row_groups_smaller_than_a_batch_and_columns_of_every_kind_stream_exactly(tmp_path, monkeypatch):
    """The parquet reader cuts batches at different rows for different columns when row groups are small:
    each column must still take its own kept rows (this once misaligned them, and pandas filled in NaN)."""
    rng = np.random.default_rng(3)
    n = 5000
    features = pd.DataFrame(
        {
            "gbifID": rng.permutation(np.arange(n) + 10**9),
            "land_cover": pd.Categorical(rng.choice(["a", "b", "c"], n)),
            "wet": rng.random(n) < 0.5,
            "seen": pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(n), "s"),
            "ndvi": rng.random(n).astype(np.float32),
            "elevation": rng.integers(0, 9, n),
        }
    )
    folder = tmp_path / "features"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(features.iloc[:2500], preserve_index=False), folder / "a.parquet", 700)
    pq.write_table(pa.Table.from_pandas(features.iloc[2500:], preserve_index=False), folder / "b.parquet", 900)
    gold_ids = features["gbifID"].to_numpy()[::4]
    full, _ = _full_read(folder, gold_ids, monkeypatch)
    for _ in range(3):  # threads finish in any order
        frame, _ = streaming.stream_gold_rows(folder, gold_ids)
        pd.testing.assert_frame_equal(frame, full)


def test_parts_typing_a_covariate_differently_go_to_the_full_read(tmp_path, monkeypatch):
    features = _features()
    folder = tmp_path / "features"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(features.iloc[:3000], preserve_index=False), folder / "a.parquet")
    later = features.iloc[3000:].astype({"elevation": np.float64})  # integers in one part, floats in the other
    pq.write_table(pa.Table.from_pandas(later, preserve_index=False), folder / "b.parquet")
    gold_ids = features["gbifID"].to_numpy()[::3]
    assert streaming.stream_gold_rows(folder, gold_ids) is None
    frame, _ = streaming.read_features(folder, pd.Series(gold_ids))
    assert len(frame) == len(gold_ids)


def test_a_folder_mixing_csv_and_parquet_goes_to_the_full_read(tmp_path):
    features = _features()
    folder = tmp_path / "features"
    folder.mkdir()
    features.iloc[:3000].to_csv(folder / "a.csv", index=False)
    pq.write_table(pa.Table.from_pandas(features.iloc[3000:], preserve_index=False), folder / "b.parquet")
    assert streaming.stream_gold_rows(folder, features["gbifID"].to_numpy()[::3]) is None


def test_more_kept_rows_than_gold_ids_go_to_the_full_read(tmp_path, small_pieces):
    """A gold id twice in the features overflows the arrays sized by the gold ids: the full read reports it."""
    features = _features()
    features.loc[10, "gbifID"] = features.loc[4000, "gbifID"]
    folder = _write(tmp_path / "features", features, "csv", 1)
    assert streaming.stream_gold_rows(folder, features["gbifID"].to_numpy()) is None


def test_kept_columns_take_pieces_in_any_order_and_refuse_what_does_not_fit():
    columns = KeptColumns(6)
    columns.add("ndvi", pa.float64())
    columns.add("land_cover", pa.string())
    columns.put("ndvi", 3, np.array([4.0, 5.0, 6.0]))
    columns.put("land_cover", 3, pa.array(["c", None, "a"]))
    columns.put("ndvi", 0, pa.array([1.0, None, 3.0]))
    columns.put("land_cover", 0, pa.array(["a", "b", "c"]))
    frame = columns.frame(6)
    np.testing.assert_array_equal(frame["ndvi"].to_numpy(), np.array([1, np.nan, 3, 4, 5, 6], dtype=np.float32))
    assert frame["land_cover"].tolist() == ["a", "b", "c", "c", np.nan, "a"]
    with pytest.raises(PieceMismatch):
        columns.put("ndvi", 5, np.array([1.0, 2.0]))  # past the planned rows
    with pytest.raises(PieceMismatch):
        columns.add("ndvi", pa.int64())  # a later file with integers where the first had floats
    mixed = KeptColumns(2)
    mixed.add("code", pa.int64())
    mixed.put("code", 0, pa.array([1]))
    mixed.put("code", 1, pa.array([1.5]))
    with pytest.raises(PieceMismatch):
        mixed.frame(2)
    short = KeptColumns(3)
    short.add("ndvi", pa.float64())
    short.put("ndvi", 0, np.array([1.0, 2.0]))
    with pytest.raises(PieceMismatch):  # a row never written
        short.frame(3)


# --------------------------------------------------------------------------- gold read and output table


def test_the_gold_read_is_read_tables_and_falls_back_to_it(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_pieces, "FIRST_BLOCK_BYTES", 4096)
    monkeypatch.setattr(csv_pieces, "PIECE_BYTES", 3000)
    rng = np.random.default_rng(0)
    gold = pd.DataFrame(
        {
            "gbifID": np.arange(5000) + 3_000_000_000,
            "species": "Cygnus buccinator",
            "occurrenceStatus": rng.choice(["PRESENT", "ABSENT", None], 5000),
        }
    )
    path = tmp_path / "g.csv"
    gold.to_csv(path, index=False)
    columns = ["gbifid", "occurrencestatus"]
    pd.testing.assert_frame_equal(streaming.read_gold(path, columns), read_table(path, columns))
    gold = gold.astype({"gbifID": object})
    gold.loc[4990, "gbifID"] = "abc"  # a late piece widens the id column to text: read_table decides
    gold.to_csv(path, index=False)
    frame = streaming.read_gold(path, columns)
    pd.testing.assert_frame_equal(frame, read_table(path, columns))
    assert "abc" in set(frame["gbifid"].astype(str))


def test_the_output_table_is_reset_indexs_without_the_copy():
    frame = pd.DataFrame(
        {
            "ndvi": np.array([0.5, np.nan, 0.25], dtype=np.float32),
            "slope": np.array([1.0, 2.0, 3.0], dtype=np.float32),
            "land_cover": pd.Categorical(["a", "b", "a"]),
            "target": np.array([0, 1, 0], dtype=np.int8),
        },
        index=pd.Index(np.array([3_000_000_001, 3_000_000_002, 3_000_000_003]), name="gbifid"),
    )
    expected = pa.Table.from_pandas(frame.reset_index(), preserve_index=False)
    table = prep._table_with_id(frame)
    assert table.equals(expected) and table.schema.equals(expected.schema, check_metadata=True)
    assert table.column_names[0] == "gbifid" and table.column("ndvi").null_count == 1
