"""Bad input to prep: one error of our family per problem, naming the file, the column and the fix; nothing written.

Every case starts from a small valid data store and breaks exactly one thing.
"""

import numpy as np
import pandas as pd
import pytest
from stage_helpers import run_prep

from biodiv_core.data import datastore as ds
from biodiv_core.errors import BiodivError, DataContractError, InvalidNameError, NotFoundError

SPECIES = "Cygnus buccinator"
GOLD = "cygnus_buccinator_golddata.csv"


def _valid(n=40):
    features = pd.DataFrame(
        {
            "gbifID": np.arange(1000, 1000 + n),
            "decimalLatitude": np.linspace(44.2, 45.0, n),
            "decimalLongitude": np.linspace(-111.0, -110.0, n),
            "elevation": np.linspace(1600, 3000, n).round(1),
            "ndvi": np.linspace(0.1, 0.8, n).round(3),
            "land_cover": ["forest", "grassland", "wetland", "shrubland"] * (n // 4),
        }
    )
    gold = pd.DataFrame({"gbifID": features["gbifID"], "occurrenceStatus": ["PRESENT", "ABSENT"] * (n // 2)})
    return features, gold


def _store(tmp_path, features, gold):
    fdir, sdir = tmp_path / "yellowstone-training-features" / "1", tmp_path / "yellowstone-training-species" / "1"
    fdir.mkdir(parents=True)
    sdir.mkdir(parents=True)
    for frame, path in ((features, fdir / "features.csv"), (gold, sdir / GOLD)):
        if isinstance(frame, str):
            path.write_text(frame)
        else:
            frame.to_csv(path, index=False)
    return fdir, sdir


def _fails(tmp_path, error, *fragments, species=SPECIES, features=None, species_dir=None, **kwargs):
    """Run prep on the store in tmp_path; assert the error, its message fragments, and that nothing was written."""
    fdir = features or tmp_path / "yellowstone-training-features" / "1"
    sdir = species_dir or tmp_path / "yellowstone-training-species" / "1"
    out_parent = tmp_path / "storage"
    out_parent.mkdir()
    with pytest.raises(error) as err:
        run_prep(fdir, sdir, species, out_parent / "prepared", **kwargs)
    assert isinstance(err.value, BiodivError)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert list(out_parent.iterdir()) == [], "prep left files behind"
    return message


def test_the_valid_store_prepares(tmp_path):
    """The baseline every other case breaks: it works."""
    _store(tmp_path, *_valid())
    summary = run_prep(
        tmp_path / "yellowstone-training-features" / "1",
        tmp_path / "yellowstone-training-species" / "1",
        SPECIES,
        tmp_path / "out",
        min_rows_per_class=5,
    )
    assert (summary["rows"], summary["n_present"], summary["n_features"]) == (40, 20, 3)


def test_features_without_gbifid(tmp_path):
    features, gold = _valid()
    _store(tmp_path, features.rename(columns={"gbifID": "id"}), gold)
    _fails(tmp_path, DataContractError, "features.csv", "'gbifid'", "id, decimallatitude", "Add the column")


def test_gold_without_gbifid(tmp_path):
    features, gold = _valid()
    _store(tmp_path, features, gold.rename(columns={"gbifID": "key"}))
    _fails(tmp_path, DataContractError, GOLD, "'gbifid'", "key, occurrenceStatus", "Add the column")


def test_gold_without_occurrencestatus(tmp_path):
    features, gold = _valid()
    _store(tmp_path, features, gold.rename(columns={"occurrenceStatus": "status"}))
    _fails(tmp_path, DataContractError, GOLD, "'occurrencestatus'", "gbifID, status")


def test_status_values_other_than_present_absent_are_listed(tmp_path):
    features, gold = _valid()
    gold.loc[:4, "occurrenceStatus"] = ["maybe", "1", "maybe", "PRESENT", "Unknown"]
    _store(tmp_path, features, gold)
    message = _fails(tmp_path, DataContractError, GOLD, "'occurrencestatus'", "PRESENT or ABSENT")
    assert "'maybe' (2 rows)" in message and "'1' (1 rows)" in message and "'Unknown' (1 rows)" in message
    assert "'PRESENT'" not in message.split("also holds")[1]  # valid values are not listed as offending


def test_only_one_class_after_the_join(tmp_path):
    features, gold = _valid()
    # ABSENT rows exist in the gold data but none of them has features: after the join only PRESENT is left.
    gold.loc[gold["occurrenceStatus"] == "ABSENT", "gbifID"] += 10_000
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, GOLD, "features.csv", "all 20 rows are PRESENT", "Add ABSENT records")


def test_fewer_rows_of_a_class_than_folds(tmp_path):
    features, gold = _valid()
    gold["occurrenceStatus"] = ["ABSENT"] * 37 + ["PRESENT"] * 3
    _store(tmp_path, features, gold)
    _fails(
        tmp_path, DataContractError, "class PRESENT has 3 rows", "fewer than 5", "lower n_folds", min_rows_per_class=5
    )


def test_duplicate_gbifids_in_features(tmp_path):
    features, gold = _valid()
    features.loc[5, "gbifID"] = features.loc[4, "gbifID"]
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, "features.csv", "'gbifid'", "1 duplicate ids", "1004", "deduplicate")


def test_duplicate_gbifids_in_gold(tmp_path):
    features, gold = _valid()
    gold = pd.concat([gold, gold.iloc[[3, 7]]])
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, GOLD, "2 duplicate ids", "1003, 1007", "deduplicate")


@pytest.mark.parametrize(("bad", "shown"), [("abc", "'abc'"), ("12.5", "12.5"), ("1e400", "inf")])
def test_ids_that_are_not_integers(tmp_path, bad, shown):
    features, gold = _valid()
    features["gbifID"] = features["gbifID"].astype(object)
    features.loc[7, "gbifID"] = bad
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, "features.csv", "'gbifid'", "integer ids", f"e.g. {shown}")


def test_gold_ids_that_are_not_integers(tmp_path):
    features, gold = _valid()
    gold["gbifID"] = gold["gbifID"].astype(str).str.replace("1001", "GBIF-1001")
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, GOLD, "'GBIF-1001'", "integer ids")


def test_missing_ids(tmp_path):
    features, gold = _valid()
    features["gbifID"] = features["gbifID"].astype(float)
    features.loc[2, "gbifID"] = np.nan
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, "features.csv", "'gbifid' is empty in 1 rows")


def test_empty_features_file(tmp_path):
    _store(tmp_path, "", _valid()[1])
    _fails(tmp_path, DataContractError, "features.csv is empty")


def test_empty_gold_file(tmp_path):
    _store(tmp_path, _valid()[0], "")
    _fails(tmp_path, DataContractError, f"{GOLD} is empty")


def test_header_only_gold_file(tmp_path):
    _store(tmp_path, _valid()[0], "gbifID,occurrenceStatus\n")
    _fails(tmp_path, DataContractError, GOLD, "no rows")


def test_gold_without_any_status(tmp_path):
    features, gold = _valid()
    gold["occurrenceStatus"] = None
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, GOLD, "'occurrencestatus' has no values")


def test_no_overlap_between_features_and_gold(tmp_path):
    features, gold = _valid()
    gold["gbifID"] += 50_000
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, GOLD, "features.csv", "share no rows", "same site and data version")


def test_feature_column_entirely_null(tmp_path):
    features, gold = _valid()
    features["ndvi"] = np.nan
    _store(tmp_path, features, gold)
    _fails(tmp_path, DataContractError, "features.csv", "'ndvi' has no values", "drop the column")


def test_feature_column_null_on_every_joined_row(tmp_path):
    features, gold = _valid()
    features.loc[features.index < 20, "ndvi"] = np.nan
    _store(tmp_path, features, gold.iloc[:20])
    _fails(tmp_path, DataContractError, "'ndvi' has no values in the 20 rows that have gold data")


def test_no_feature_columns(tmp_path):
    features, gold = _valid()
    _store(tmp_path, features[["gbifID", "decimalLatitude", "decimalLongitude"]], gold)
    _fails(tmp_path, DataContractError, "features.csv", "no feature columns")


@pytest.mark.parametrize("name", ["../Cygnus buccinator", "Cygnus/buccinator", "Cygnus\\buccinator", "a..b", " "])
def test_species_name_with_a_path_separator_or_dots(tmp_path, name):
    _store(tmp_path, *_valid())
    _fails(tmp_path, InvalidNameError, "species name", species=name)


def test_site_name_with_a_path_separator(tmp_path):
    _store(tmp_path, *_valid())
    _fails(tmp_path, InvalidNameError, "site name", site="../yellowstone")


def test_data_asset_that_does_not_exist(tmp_path):
    _store(tmp_path, *_valid())
    _fails(tmp_path, NotFoundError, "does not exist", features=tmp_path / "everglades-training-features")


def test_data_version_that_does_not_exist_lists_the_versions(tmp_path):
    _store(tmp_path, *_valid())
    (tmp_path / "yellowstone-training-features" / "3").mkdir()
    (tmp_path / "yellowstone-training-features" / "3" / "f.csv").write_text("gbifid,x\n1,2\n")
    with pytest.raises(NotFoundError) as err:
        ds.resolve_data_path(tmp_path / "yellowstone-training-features", 2)
    for fragment in ("Version 2", "yellowstone-training-features", "versions that exist: 1, 3"):
        assert fragment in str(err.value)


def test_species_without_gold_file(tmp_path):
    _store(tmp_path, *_valid())
    _fails(
        tmp_path,
        NotFoundError,
        "No gold data for species 'Lynx canadensis'",
        "lynx_canadensis_golddata.csv",
        f"Gold files there: {GOLD}",
        "candidate_species.csv",
        species="Lynx canadensis",
    )


def test_existing_output_is_not_overwritten(tmp_path):
    fdir, sdir = _store(tmp_path, *_valid())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    with pytest.raises(FileExistsError):
        run_prep(fdir, sdir, SPECIES, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
