"""prep reads large features piece by piece, keeping only gold rows: same result as reading everything.

The streamed read is only an optimisation: these cases check it agrees with the full read, that id checks
still see the whole file, and that inputs it cannot stream fall back to the full read.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stage_helpers import run_prep

from biodiv_core.data import parquet_rows, streaming
from biodiv_core.data.contract import prepare_dataset
from biodiv_core.data.datastore import read_table
from biodiv_core.data.streaming import read_features
from biodiv_core.errors import DataContractError

SPECIES = "Cygnus buccinator"
GOLD = "cygnus_buccinator_golddata.csv"


def _frames(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {
            "gbifID": rng.permutation(np.arange(10_000, 10_000 + n)),
            "decimalLatitude": rng.uniform(44, 45, n),
            "decimalLongitude": rng.uniform(-111, -110, n),
            "elevation": rng.integers(1600, 3000, n),
            "ndvi": rng.uniform(0, 1, n).round(4),
            "land_cover": rng.choice(["forest", "grassland", "wetland"], n),
        }
    )
    gold_ids = rng.choice(features["gbifID"].to_numpy(), n // 5, replace=False)
    gold = pd.DataFrame({"gbifID": gold_ids, "occurrenceStatus": rng.choice(["PRESENT", "ABSENT"], len(gold_ids))})
    return features, gold


def _write(folder, features, fmt, parts=1):
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(features)), parts)):
        frame = features.iloc[part]
        if fmt == "csv":
            frame.to_csv(folder / f"part{i}.csv", index=False)
        else:  # small row groups: the reader must walk several
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"part{i}.parquet", 3000)
    return folder


def _full(folder, gold, monkeypatch):
    """The full read (the fallback, and prep's reader before streaming): whole table, filtered in Arrow."""
    with monkeypatch.context() as patch:
        patch.setattr(streaming, "stream_gold_rows", lambda *args: None)
        frame, rows = streaming.read_features(folder, gold["gbifid"])
    assert rows == len(read_table(folder, ["gbifid"]))
    return prepare_dataset(frame, gold)


@pytest.mark.parametrize(("fmt", "parts"), [("parquet", 1), ("parquet", 3), ("csv", 1), ("csv", 2)])
def test_streamed_read_prepares_the_same_data(tmp_path, monkeypatch, fmt, parts):
    features, gold = _frames()
    folder = _write(tmp_path / "features", features, fmt, parts)
    gold = gold.set_axis(gold.columns.str.lower(), axis=1)
    assert streaming.stream_gold_rows(folder, gold["gbifid"].to_numpy()) is not None  # the streamed path is taken
    frame, rows = read_features(folder, gold["gbifid"])
    assert rows == len(features) and len(frame) == len(gold)  # only gold rows were kept
    streamed, full = prepare_dataset(frame, gold), _full(folder, gold, monkeypatch)
    pd.testing.assert_frame_equal(streamed.features, full.features)
    pd.testing.assert_series_equal(streamed.targets, full.targets)
    pd.testing.assert_frame_equal(streamed.coords, full.coords)
    assert streamed.features["ndvi"].dtype == np.float32 and streamed.coords["decimallatitude"].dtype == np.float64


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_duplicate_outside_the_gold_rows_is_still_an_error(tmp_path, fmt):
    features, gold = _frames()
    outside = np.setdiff1d(features["gbifID"], gold["gbifID"])
    rows = np.flatnonzero(features["gbifID"].isin(outside[:2]))
    features.loc[rows[1], "gbifID"] = features.loc[rows[0], "gbifID"]  # far apart, neither a gold id
    folder = _write(tmp_path / "f" / "1", features, fmt)
    (tmp_path / "s" / "1").mkdir(parents=True)
    gold.to_csv(tmp_path / "s" / "1" / GOLD, index=False)
    with pytest.raises(DataContractError, match="1 duplicate ids"):
        run_prep(folder, tmp_path / "s" / "1", SPECIES, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _sorted_parts(layout: str) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Parquet parts whose ids are each in increasing order (as a writer sorting by gbifid leaves them), laid out
    so that the ids are known unique without a sort ("ordered"), or need the check: parts whose id ranges
    interleave, a duplicate across two parts, a duplicate next to itself in one part."""
    features, gold = _frames()
    features = features.sort_values("gbifID", ignore_index=True)
    outside = np.setdiff1d(features["gbifID"], gold["gbifID"])  # ids that are not gold ids
    if layout == "interleaved":
        return [features.iloc[0::2], features.iloc[1::2]], gold
    first, second = features.iloc[:10_000].copy(), features.iloc[10_000:].copy()
    if layout == "duplicate across parts":  # part 2 starts with part 1's last id
        at = int(np.searchsorted(first["gbifID"], outside[outside < second["gbifID"].iloc[0]][-1]))
        first = first.iloc[: at + 1]
        second.iloc[0, 0] = first["gbifID"].iloc[-1]
    elif layout == "duplicate in a part":  # non-decreasing, not increasing
        at = int(np.flatnonzero(first["gbifID"].isin(outside))[100])
        first.iloc[at + 1, 0] = first.iloc[at, 0]
        assert not first["gbifID"].isin(gold["gbifID"]).iloc[at : at + 2].any()
    return [first, second], gold


@pytest.mark.parametrize("layout", ["ordered", "interleaved"])
def test_ids_in_order_are_read_as_the_full_read_reads_them(tmp_path, monkeypatch, layout):
    parts, gold = _sorted_parts(layout)
    gold = gold.set_axis(gold.columns.str.lower(), axis=1)
    folder = tmp_path / "features"
    folder.mkdir()
    for i, part in enumerate(parts):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part{i}.parquet", 3000)
    checked = []
    monkeypatch.setattr(parquet_rows, "check_unique", lambda ids, kind: checked.append(kind))
    frame, rows = read_features(folder, gold["gbifid"])
    assert checked == ([] if layout == "ordered" else ["stable"])  # in order: no sort; runs in order: merged
    assert rows == 20_000 and len(frame) == len(gold)
    streamed, full = prepare_dataset(frame, gold), _full(folder, gold, monkeypatch)
    pd.testing.assert_frame_equal(streamed.features, full.features)
    pd.testing.assert_series_equal(streamed.targets, full.targets)


@pytest.mark.parametrize("layout", ["duplicate across parts", "duplicate in a part"])
def test_a_duplicate_among_ids_in_order_is_still_an_error(tmp_path, layout):
    parts, gold = _sorted_parts(layout)
    folder = tmp_path / "f" / "1"
    folder.mkdir(parents=True)
    for i, part in enumerate(parts):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part{i}.parquet", 3000)
    assert streaming.stream_gold_rows(folder, gold["gbifID"].to_numpy()) is None  # the full read decides
    (tmp_path / "s" / "1").mkdir(parents=True)
    gold.to_csv(tmp_path / "s" / "1" / GOLD, index=False)
    with pytest.raises(DataContractError, match="1 duplicate ids"):
        run_prep(folder, tmp_path / "s" / "1", SPECIES, tmp_path / "out")


def test_ids_read_ahead_give_the_same_frame_and_are_freed_once_used(tmp_path):
    features, gold = _frames()
    folder = _write(tmp_path / "features", features, "parquet", parts=2)
    ahead = streaming.read_ids_ahead(folder)  # what run_prep reads beside the gold file
    assert [len(entry[4]) for entry in ahead] == [10_000, 10_000]
    frame, rows = read_features(folder, gold["gbifID"], ahead)
    assert ahead == []  # emptied: the ids are not held while the columns are read
    expected, expected_rows = read_features(folder, gold["gbifID"])
    assert rows == expected_rows == 20_000
    pd.testing.assert_frame_equal(frame, expected)
    # Ids read ahead of other files (a stale list) are not used.
    stale = streaming.read_ids_ahead(_write(tmp_path / "other", features.iloc[:5000], "parquet"))
    pd.testing.assert_frame_equal(read_features(folder, gold["gbifID"], stale)[0], expected)
    csv_folder = _write(tmp_path / "csv", features, "csv")
    assert streaming.read_ids_ahead(csv_folder) is None  # CSV: read in pieces
    # run_prep's read: the gold file, and the ids of parquet features beside it.
    gold.to_csv(tmp_path / GOLD, index=False)
    columns = ["gbifid", "occurrencestatus"]
    read, ids = streaming.read_gold_and_ids(tmp_path / GOLD, columns, folder)
    pd.testing.assert_frame_equal(read, streaming.read_gold(tmp_path / GOLD, columns))
    assert [len(entry[4]) for entry in ids] == [10_000, 10_000]
    assert streaming.read_gold_and_ids(tmp_path / GOLD, columns, csv_folder)[1] is None


def _text_late_in_elevation(gold_row: bool):
    features, gold = _frames()
    features["elevation"] = features["elevation"].astype(object)
    # Past the first 1 MB block: text after integers, on a gold row or not.
    rows = np.flatnonzero(features["gbifID"].isin(gold["gbifID"]) == gold_row)
    features.loc[rows[-3], "elevation"] = "abc"
    return features, gold.set_axis(gold.columns.str.lower(), axis=1)


def test_csv_whose_later_blocks_change_a_column_type_falls_back_to_the_full_read(tmp_path, monkeypatch):
    features, gold = _text_late_in_elevation(gold_row=False)
    folder = _write(tmp_path / "features", features, "csv")
    assert (folder / "part0.csv").stat().st_size > 2**20
    assert streaming.stream_gold_rows(folder, gold["gbifid"].to_numpy()) is None  # the stream gives up ...
    frame, _ = read_features(folder, gold["gbifid"])  # ... and the full read decides
    streamed = prepare_dataset(frame, gold).features
    pd.testing.assert_frame_equal(streamed, _full(folder, gold, monkeypatch).features)
    # Widened to text as read_csv does, but the rows with gold data are all numbers: a numeric feature.
    assert streamed["elevation"].dtype == np.float32


def test_text_in_a_numeric_column_on_a_gold_row_is_an_error_after_the_fallback(tmp_path):
    features, gold = _text_late_in_elevation(gold_row=True)
    folder = _write(tmp_path / "features", features, "csv")
    frame, _ = read_features(folder, gold["gbifid"])
    with pytest.raises(DataContractError, match=r"'elevation' is numeric \(3999 of its 4000 .*'abc'"):
        prepare_dataset(frame, gold, features_source="part0.csv")
