"""Column types prep must not get wrong: ids written as floats, and numeric columns with a few non-numeric cells.

Ids are never narrowed: ids written as floats (``4294967396.0``, what pandas writes for an integer column with a
missing cell; real GBIF ids are past 2^32) convert exactly to int64, on the streamed read (parquet and CSV) and on
the full-read fallback, in features and gold files, or the file is rejected (2^53 and past as float64, 2^24 and
past as float32). A text column that is at least 90% numbers is a DataContractError, not a category with one
level per value; only columns that are text by content become categories.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stage_helpers import run_prep

from biodiv_core.data import streaming
from biodiv_core.data.contract import CATEGORY_MAX_LEVELS, NUMERIC_SHARE, prepare_dataset
from biodiv_core.data.prep import load_prepared
from biodiv_core.errors import DataContractError

SPECIES = "Cygnus buccinator"
GOLD = "cygnus_buccinator_golddata.csv"
BASE = 2**32 + 100  # past 2^32 as real gbifids are; float32 would round these to multiples of 512


def _tables(n=400, seed=0, base=BASE):
    """Features whose covariates tell each row apart (``row`` = its position), and gold data for every row."""
    rng = np.random.default_rng(seed)
    ids = base + rng.permutation(n) * 3  # close together: rounding any of them lands on another id
    features = pd.DataFrame(
        {
            "gbifID": ids,
            "decimalLatitude": np.linspace(25.2, 26.0, n),
            "decimalLongitude": np.linspace(-81.0, -80.0, n),
            "row": np.arange(n, dtype=float),
            "land_cover": rng.choice(["forest", "wetland", "grassland"], n),
        }
    )
    gold = pd.DataFrame({"gbifID": ids, "occurrenceStatus": rng.choice(["PRESENT", "ABSENT"], n)})
    return features, gold


def _with_float_ids(frame):
    """What a pandas round trip writes when some other cell is missing: the ids as ``4294967396.0``."""
    frame = frame.copy()
    frame["gbifID"] = frame["gbifID"].astype(float)
    return frame


def _store(tmp_path, features, gold, fmt="csv"):
    fdir, sdir = tmp_path / "f" / "1", tmp_path / "s" / "1"
    fdir.mkdir(parents=True)
    sdir.mkdir(parents=True)
    if fmt == "csv":
        features.to_csv(fdir / "features.csv", index=False)
    else:
        pq.write_table(pa.Table.from_pandas(features, preserve_index=False), fdir / "features.parquet", 100)
    gold.to_csv(sdir / GOLD, index=False)
    return fdir, sdir


def _assert_rows_kept_their_ids(prepared_folder, features, gold):
    data = load_prepared(prepared_folder)
    expected = features.set_index(features["gbifID"].astype(np.int64))
    assert data.features.index.dtype == np.int64
    assert set(data.features.index) == set(expected.index)
    # Each id still carries its own covariates and its own label: nothing was joined onto another row.
    np.testing.assert_array_equal(data.features["row"].to_numpy(), expected.loc[data.features.index, "row"].to_numpy())
    labels = gold.set_index(gold["gbifID"].astype(np.int64))["occurrenceStatus"].map({"PRESENT": 1, "ABSENT": 0})
    np.testing.assert_array_equal(data.targets.to_numpy(), labels.loc[data.targets.index].to_numpy())


# --------------------------------------------------------------------------- ids written as floats


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("path", ["streamed", "full read"])
def test_float_ids_past_2_32_keep_their_rows(tmp_path, monkeypatch, fmt, path):
    features, gold = _tables()
    features = _with_float_ids(features)
    features.loc[5, "row"] = np.nan  # the missing cell that made pandas write floats
    fdir, sdir = _store(tmp_path, features, gold, fmt)
    gold_ids = pd.Series(gold["gbifID"].to_numpy())
    if path == "streamed":
        assert streaming.stream_gold_rows(fdir, gold_ids.to_numpy()) is not None
    else:
        monkeypatch.setattr(streaming, "stream_gold_rows", lambda *args: None)
    summary = run_prep(fdir, sdir, SPECIES, tmp_path / "out")
    assert summary["rows"] == len(features)
    _assert_rows_kept_their_ids(tmp_path / "out", features, gold)


def test_unique_float_ids_are_not_reported_as_duplicates(tmp_path):
    """Was: '1 duplicate id, e.g. 3000466432', an id not in the file (float32 rounding)."""
    features, gold = _tables(base=3_000_466_000)
    fdir, sdir = _store(tmp_path, _with_float_ids(features), gold)
    assert run_prep(fdir, sdir, SPECIES, tmp_path / "out")["rows"] == len(features)


def test_a_real_duplicate_float_id_is_reported_with_the_id_of_the_file(tmp_path):
    features, gold = _tables(base=3_000_466_000)
    features = _with_float_ids(features)
    features.loc[7, "gbifID"] = features.loc[3, "gbifID"]
    fdir, sdir = _store(tmp_path, features, gold)
    with pytest.raises(DataContractError, match=rf"1 duplicate ids, e\.g\. {int(features.loc[3, 'gbifID'])}\."):
        run_prep(fdir, sdir, SPECIES, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_float_ids_in_the_gold_file_join_exactly_and_still_stream(tmp_path, monkeypatch):
    features, gold = _tables()
    fdir, sdir = _store(tmp_path, features, _with_float_ids(gold))
    streamed = []
    real = streaming.stream_gold_rows
    monkeypatch.setattr(streaming, "stream_gold_rows", lambda *a: streamed.append(real(*a)) or streamed[-1])
    run_prep(fdir, sdir, SPECIES, tmp_path / "out")
    assert streamed and streamed[0] is not None
    _assert_rows_kept_their_ids(tmp_path / "out", features, gold)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("where", ["features", "gold"])
def test_float_ids_of_2_53_and_past_are_rejected_naming_file_and_column(tmp_path, fmt, where):
    features, gold = _tables(base=2**53 + 10)
    if where == "features":
        features = _with_float_ids(features)
    else:
        gold = _with_float_ids(gold)
    fdir, sdir = _store(tmp_path, features, gold, fmt)
    with pytest.raises(DataContractError) as err:
        run_prep(fdir, sdir, SPECIES, tmp_path / "out")
    message = str(err.value)
    named = str(fdir / f"features.{fmt}") if where == "features" else str(sdir / GOLD)
    assert message.startswith(named) and "'gbifid'" in message and "2^53 or more" in message
    assert "write the ids as whole numbers" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_float32_ids_past_2_24_are_rejected(tmp_path):
    features, gold = _tables()
    table = pa.Table.from_pandas(features.astype({"gbifID": np.float32}), preserve_index=False)
    fdir, sdir = _store(tmp_path, features, gold)
    (fdir / "features.csv").unlink()
    pq.write_table(table, fdir / "features.parquet")
    with pytest.raises(DataContractError, match=r"features\.parquet: column 'gbifid' .*\(float32\).*2\^24 or more"):
        run_prep(fdir, sdir, SPECIES, tmp_path / "out")


def test_unsigned_ids_past_int64_are_rejected():
    features, gold = _tables(n=40)
    features["gbifID"] = features["gbifID"].astype(np.uint64)
    features.loc[3, "gbifID"] = np.uint64(2**63 + 5)
    gold.loc[3, "gbifID"] = -5  # what the id would wrap to as int64
    with pytest.raises(DataContractError, match=r"features\.parquet: column 'gbifid' holds ids of 2\^63 or more"):
        prepare_dataset(features, gold, features_source="features.parquet")


def test_a_folder_with_integer_and_float_id_parts_streams_exact_int64_ids(tmp_path):
    features, gold = _tables()
    fdir, sdir = _store(tmp_path, features.iloc[:200], gold)
    _with_float_ids(features.iloc[200:]).to_csv(fdir / "part2.csv", index=False)
    frame, rows = streaming.stream_gold_rows(fdir, gold["gbifID"].to_numpy())
    assert rows == len(features) and frame["gbifid"].dtype == np.int64
    run_prep(fdir, sdir, SPECIES, tmp_path / "out")
    _assert_rows_kept_their_ids(tmp_path / "out", features, gold)


def test_the_streamed_id_column_is_never_narrowed():
    table = pa.table({"gbifid": pa.array([float(BASE), float(BASE + 1)]), "ndvi": pa.array([0.5, 0.25])})
    narrowed = streaming._narrow_floats(table)
    assert narrowed.schema.field("gbifid").type == pa.float64()
    assert narrowed.schema.field("ndvi").type == pa.float32()


# --------------------------------------------------------------------------- numeric columns with text cells


def _frames(values, n=None):
    n = n or len(values)
    features = pd.DataFrame({"gbifid": np.arange(1000, 1000 + n), "elevation": values})
    gold = pd.DataFrame({"gbifid": features["gbifid"], "occurrencestatus": ["PRESENT", "ABSENT"] * (n // 2)})
    return features, gold


def _prepare(values):
    return prepare_dataset(*_frames(values), features_source="features.csv")


def test_text_in_a_numeric_column_is_an_error_with_count_and_examples(tmp_path):
    features, gold = _tables(n=40)
    features["row"] = features["row"].astype(object)
    features.loc[[3, 9, 11], "row"] = ["high", "high", "low"]
    fdir, sdir = _store(tmp_path, features, gold)
    with pytest.raises(DataContractError) as err:
        run_prep(fdir, sdir, SPECIES, tmp_path / "out")
    message = str(err.value)
    assert message.startswith(str(fdir / "features.csv")) and "feature column 'row'" in message
    assert "37 of its 40 filled cells" in message and "3 cells are not plain numbers" in message
    assert "'high', 'low'" in message and "replace them with numbers" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_thousands_separators_are_an_error_that_says_so(tmp_path, fmt):
    features, gold = _tables(n=40)
    features["row"] = [f"{v * 100:,.1f}" for v in features["row"]]  # '3,100.0': mostly past 1,000
    fdir, sdir = _store(tmp_path, features, gold, fmt)
    with pytest.raises(DataContractError) as err:
        run_prep(fdir, sdir, SPECIES, tmp_path / "out")
    message = str(err.value)
    assert "feature column 'row'" in message and "30 cells are not plain numbers" in message
    assert "thousands separators" in message and "3,136.0 -> 3136.0" in message
    assert not (tmp_path / "out").exists()


def test_the_rule_is_90_percent_of_the_filled_cells():
    assert NUMERIC_SHARE == 0.9
    with pytest.raises(DataContractError, match=r"18 of its 20 filled cells .* 2 cells .*'high'"):
        _prepare([str(i) for i in range(18)] + ["high", "high"])
    below = _prepare([str(i) for i in range(17)] + ["high", "low", "high"]).features["elevation"]
    assert isinstance(below.dtype, pd.CategoricalDtype)  # 85% numbers: text by content, a category
    # Missing cells do not count either way.
    with pytest.raises(DataContractError, match=r"9 of its 10 filled cells"):
        _prepare([str(i) for i in range(9)] + ["high"] + [None] * 10)


def test_numbers_stored_as_text_are_numbers():
    features, gold = _frames(["1.5", "2", " 3", None, "1e3", "-4"] * 4)
    prepared = prepare_dataset(features.astype({"elevation": "string"}), gold).features["elevation"]
    assert prepared.dtype == np.float32
    np.testing.assert_array_equal(prepared.to_numpy()[:6], np.array([1.5, 2, 3, np.nan, 1000, -4], np.float32))


def test_text_columns_stay_categories_and_categories_of_numbers_stay_categories():
    features, gold = _frames(["forest", "wetland", "1", "2"] * 5)
    features["code"] = pd.Categorical([11, 21, 22, 11] * 5)
    prepared = prepare_dataset(features, gold).features
    assert list(prepared["elevation"].cat.categories) == ["1", "2", "forest", "wetland"]
    assert isinstance(prepared["code"].dtype, pd.CategoricalDtype)


def test_a_text_column_with_one_level_per_value_is_not_a_category():
    assert CATEGORY_MAX_LEVELS == 100
    with pytest.raises(DataContractError) as err:
        _prepare([f"note {i}" for i in range(300)] + ["forest"] * 100)  # 301 levels in 400 cells
    message = str(err.value)
    assert "feature column 'elevation' holds 301 distinct text values in its 400 filled cells" in message
    assert "'forest'" in message and "drop the column, or map its values to a few classes" in message
    # Many levels, but few per cell (150 in 400), or few levels in all (60 in 60): categories.
    assert _prepare([f"county {i % 150}" for i in range(400)]).features["elevation"].cat.categories.size == 150
    assert _prepare([f"site {i}" for i in range(60)]).features["elevation"].cat.categories.size == 60
