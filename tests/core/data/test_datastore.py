"""The versioned data store and the table reader (DESIGN section 3)."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biodiv_core.data import datastore as ds
from biodiv_core.errors import DataContractError, InvalidNameError, NotFoundError


def _write_csv(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def store(tmp_path):
    """Features versions 1, 2 and 10 (10 > 2 numerically, not as text), plus folders that are not versions."""
    root = tmp_path / "store"
    for version in (1, 2, 10):
        _write_csv(
            root / "yellowstone-training-features" / str(version) / "f.csv",
            f"gbifID,Elevation\n1,{version}00.5\n2,{version}01.5\n",
        )
    for junk in ("0", "latest", "v3", "-1"):
        (root / "yellowstone-training-features" / junk).mkdir()
    _write_csv(
        root / "yellowstone-training-species" / "3" / "cygnus_buccinator_golddata.csv",
        "gbifID,occurrenceStatus,species\n1,PRESENT,Cygnus buccinator\n2,ABSENT,Cygnus buccinator\n",
    )
    return root


def test_versions_latest_is_the_highest_integer(store):
    assert ds.list_versions(store, "yellowstone-training-features") == [1, 2, 10]
    assert ds.resolve_version(store, "yellowstone-training-features") == 10
    assert ds.resolve_version(store, "yellowstone-training-features", "latest") == 10
    assert ds.features_dir(store, "yellowstone") == store / "yellowstone-training-features" / "10"
    assert ds.features_dir(store, "Yellowstone", version=2) == store / "yellowstone-training-features" / "2"
    assert ds.species_file(store, "yellowstone", "Cygnus buccinator").parent.name == "3"


def test_missing_version_lists_the_versions_that_exist(store):
    with pytest.raises(NotFoundError, match=r"Version 7 .*yellowstone-training-features.*1, 2, 10"):
        ds.features_dir(store, "yellowstone", version=7)
    with pytest.raises(NotFoundError, match="not a positive integer"):
        ds.resolve_version(store, "yellowstone-training-features", "v3")


def test_missing_asset_lists_the_assets_that_exist(store):
    with pytest.raises(NotFoundError) as err:
        ds.features_dir(store, "everglades")
    message = str(err.value)
    assert "everglades-training-features" in message
    assert "yellowstone-training-features" in message and "yellowstone-training-species" in message
    assert "biodiv generate-data" in message


def test_species_file_checks_the_name_and_lists_gold_files(store):
    with pytest.raises(InvalidNameError):
        ds.species_file(store, "yellowstone", "../../etc/passwd")
    with pytest.raises(NotFoundError, match=r"lynx_canadensis_golddata\.csv.*cygnus_buccinator_golddata\.csv"):
        ds.species_file(store, "yellowstone", "Lynx canadensis")


def test_read_table_csv_and_parquet_agree_and_lower_case_columns(tmp_path):
    frame = pd.DataFrame({"gbifID": [3, 1, 2], "Land_Cover": ["forest", "water", None], "NDVI": [0.5, 0.25, None]})
    csv_path = tmp_path / "t.csv"
    frame.to_csv(csv_path, index=False)
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), pq_path)
    for path in (csv_path, pq_path):
        table = ds.read_table(path)
        assert list(table.columns) == ["gbifid", "land_cover", "ndvi"]
        assert table["gbifid"].tolist() == [3, 1, 2]
        assert isinstance(table["land_cover"].dtype, pd.CategoricalDtype)
        assert table["land_cover"].isna().tolist() == [False, False, True]
        assert table["ndvi"].isna().sum() == 1


def test_read_table_reads_only_the_requested_columns_in_order(tmp_path):
    path = _write_csv(tmp_path / "g.csv", "occurrenceStatus,Junk,GBIFID\nPRESENT,x,1\nABSENT,y,2\n")
    table = ds.read_table(path, columns=["GbifId", "OCCURRENCESTATUS"])
    assert list(table.columns) == ["gbifid", "occurrencestatus"]
    assert table["gbifid"].tolist() == [1, 2]
    assert ds.read_arrow(path, ["junk"]).column_names == ["junk"]


def test_read_table_concatenates_the_files_of_a_folder_and_skips_bookkeeping(tmp_path):
    _write_csv(tmp_path / "a" / "part-0.csv", "gbifid,x\n1,1\n2,2\n")
    pq.write_table(pa.table({"GBIFID": [3], "X": [3.5]}), tmp_path / "a" / "part-1.parquet")
    _write_csv(tmp_path / "a" / "_SUCCESS.csv", "")
    _write_csv(tmp_path / "a" / ".hidden.csv", "gbifid,x\n9,9\n")
    (tmp_path / "a" / "notes.txt").write_text("not data")
    table = ds.read_table(tmp_path / "a")
    assert table["gbifid"].tolist() == [1, 2, 3]
    assert table["x"].tolist() == [1.0, 2.0, 3.5]  # int in one file, float in the other: promoted


def test_folder_with_files_of_different_columns_is_an_error(tmp_path):
    _write_csv(tmp_path / "a" / "part-0.csv", "gbifid,x\n1,1\n")
    _write_csv(tmp_path / "a" / "part-1.csv", "gbifid,y\n2,2\n")
    with pytest.raises(DataContractError, match=r"part-1\.csv.*same columns"):
        ds.read_table(tmp_path / "a")


def test_folder_without_tables_names_what_is_there(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.md").write_text("hi")
    with pytest.raises(NotFoundError, match=r"no \.csv or \.parquet files.*readme\.md"):
        ds.read_table(tmp_path / "a")
    with pytest.raises(NotFoundError, match="does not exist"):
        ds.read_table(tmp_path / "missing.csv")


def test_empty_and_header_only_files_name_the_file(tmp_path):
    empty = _write_csv(tmp_path / "empty.csv", "")
    with pytest.raises(DataContractError, match=r"empty\.csv is empty"):
        ds.read_table(empty)
    header = _write_csv(tmp_path / "header.csv", "gbifid,x\n")
    with pytest.raises(DataContractError, match=r"header\.csv has column names but no rows"):
        ds.read_table(header)
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataContractError, match=r"empty\.parquet is empty"):
        ds.read_table(tmp_path / "empty.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataContractError, match=r"broken\.parquet"):
        ds.read_table(tmp_path / "broken.parquet")


def test_missing_and_ambiguous_columns(tmp_path):
    path = _write_csv(tmp_path / "g.csv", "gbifID,status\n1,PRESENT\n")
    with pytest.raises(DataContractError, match=r"g\.csv has no column 'occurrencestatus'.*gbifID, status"):
        ds.read_table(path, ["gbifid", "occurrencestatus"])
    twice = _write_csv(tmp_path / "twice.csv", "gbifID,GBIFID\n1,2\n")
    with pytest.raises(DataContractError, match="same name ignoring case"):
        ds.read_table(twice)


def test_csv_column_that_changes_type_deep_in_the_file_is_read_as_text(tmp_path):
    # pyarrow infers types from the first block; a bad id far down must not become a parser crash.
    lines = ["gbifid,x"] + [f"{i},{i}" for i in range(200_000)] + ["abc,1"]
    path = _write_csv(tmp_path / "big.csv", "\n".join(lines) + "\n")
    table = ds.read_table(path)
    assert len(table) == 200_001
    assert table["gbifid"].iloc[-1] == "abc"
    assert table["x"].dtype.kind == "i"


def test_resolve_data_path_accepts_a_file_a_version_folder_or_an_asset_folder(store):
    asset = store / "yellowstone-training-features"
    assert ds.resolve_data_path(asset) == asset / "10"
    assert ds.resolve_data_path(asset, 2) == asset / "2"
    assert ds.resolve_data_path(asset / "1") == asset / "1"
    assert ds.resolve_data_path(asset / "1" / "f.csv") == asset / "1" / "f.csv"
    with pytest.raises(NotFoundError, match="1, 2, 10"):
        ds.resolve_data_path(asset, 5)
    with pytest.raises(NotFoundError, match="does not exist"):
        ds.resolve_data_path(store / "nope")


def test_csv_that_is_not_utf8_is_a_data_contract_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("gbifid,name\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataContractError, match=r"latin1\.csv is not UTF-8"):
        ds.read_table(path)
