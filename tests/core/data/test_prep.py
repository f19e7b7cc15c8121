"""Prep stage on generated data and on small hand-made tables: counts, types, alignment, tolerance."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from stage_helpers import run_prep

from biodiv_core.data import datastore as ds
from biodiv_core.data.contract import prepare_dataset
from biodiv_core.data.generate import generate_datastore
from biodiv_core.data.prep import load_prepared

SPECIES = "Haliaeetus leucocephalus"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    generate_datastore(root, sites=["everglades"], species=[SPECIES, "Lynx canadensis"], rows=3000, seed=11)
    generate_datastore(root, sites=["everglades"], species=[SPECIES], rows=1000, seed=12, version=2, fmt="parquet")
    return root


def test_run_prep_on_generated_data(store, tmp_path):
    features_dir = ds.features_dir(store, "everglades", version=1)
    species_dir = ds.species_dir(store, "everglades", version=1)
    out = tmp_path / "prepared"
    summary = run_prep(features_dir, species_dir, SPECIES, out, site="everglades", correlation_id="c-1")

    gold = ds.read_table(species_dir / "haliaeetus_leucocephalus_golddata.csv")
    expected_present = int((gold["occurrencestatus"] == "PRESENT").sum())
    assert summary["rows"] == len(gold) == 2400
    assert (summary["n_present"], summary["n_absent"]) == (expected_present, len(gold) - expected_present)
    assert summary["feature_rows"] == 3000 and summary["gold_rows"] == 2400
    assert summary["gold_rows_without_features"] == 0 and summary["dropped_null_targets"] == 0
    assert summary["duplicates"] == 0
    assert summary["species"] == SPECIES and summary["site"] == "everglades" and summary["correlation_id"] == "c-1"
    assert summary["n_features"] == 12 == len(summary["features"])
    assert "decimallatitude" not in summary["features"] and "gbifid" not in summary["features"]
    assert summary["gold_file"].endswith("haliaeetus_leucocephalus_golddata.csv")
    assert summary["feature_files"] == [str(features_dir / "everglades_features.csv")]
    assert sorted(p.name for p in out.iterdir()) == [
        "coords.parquet",
        "features.parquet",
        "summary.json",
        "targets.parquet",
    ]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind

    data = load_prepared(out)
    assert list(data.features.columns) == summary["features"]
    assert data.features.index.name == "gbifid" and data.features.index.is_unique
    assert data.features.index.equals(data.targets.index) and data.features.index.equals(data.coords.index)
    assert (data.features.drop(columns="land_cover").dtypes == np.float32).all()
    assert isinstance(data.features["land_cover"].dtype, pd.CategoricalDtype)
    assert set(data.targets.unique()) == {0, 1} and int(data.targets.sum()) == expected_present
    assert list(data.coords.columns) == ["decimallatitude", "decimallongitude"]
    # Targets line up with the gold file row by row (through gbifid), and with the true probabilities.
    by_id = gold.set_index("gbifid")["occurrencestatus"].eq("PRESENT").astype(int)
    assert (by_id.loc[data.targets.index].to_numpy() == data.targets.to_numpy()).all()
    truth = ds.read_table(ds.truth_file(store, "everglades", SPECIES, 1)).set_index("gbifid")["probability"]
    assert 0.75 < roc_auc_score(data.targets, truth.loc[data.targets.index]) < 0.95
    # Features equal the source values (float32 rounding aside).
    source = ds.read_table(features_dir).set_index("gbifid").loc[data.features.index]
    np.testing.assert_allclose(data.features["elevation"], source["elevation"], rtol=1e-6)
    np.testing.assert_allclose(data.coords["decimallatitude"], source["decimallatitude"])


def test_run_prep_takes_the_latest_version_or_the_one_asked_for(store, tmp_path):
    features_asset = store / "everglades-training-features"
    species_asset = store / "everglades-training-species"
    latest = run_prep(features_asset, species_asset, SPECIES, tmp_path / "latest")
    assert latest["feature_rows"] == 1000 and latest["features_path"].endswith("/2")
    assert latest["feature_files"][0].endswith(".parquet")
    first = run_prep(features_asset / "1", species_asset / "1", SPECIES, tmp_path / "v1")
    assert first["feature_rows"] == 3000 and first["rows"] == 2400


def test_csv_and_parquet_inputs_prepare_identically(store, tmp_path):
    species_dir = ds.species_dir(store, "everglades", version=1)
    features = ds.read_table(ds.features_dir(store, "everglades", version=1))
    parquet = tmp_path / "features.parquet"
    features.to_parquet(parquet, index=False)
    run_prep(ds.features_dir(store, "everglades", version=1), species_dir, SPECIES, tmp_path / "a")
    run_prep(parquet, species_dir, SPECIES, tmp_path / "b")
    a, b = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "b")
    pd.testing.assert_frame_equal(a.features, b.features, check_categorical=False)
    pd.testing.assert_series_equal(a.targets, b.targets)


def test_the_early_filter_in_run_prep_changes_nothing(store, tmp_path):
    """run_prep filters features to gold ids in Arrow before pandas; the result equals the plain join."""
    features_dir = ds.features_dir(store, "everglades", version=1)
    gold_file = ds.species_file(store, "everglades", SPECIES, version=1)
    run_prep(features_dir, gold_file.parent, SPECIES, tmp_path / "out")
    fast = load_prepared(tmp_path / "out")
    plain = prepare_dataset(ds.read_table(features_dir), ds.read_table(gold_file))
    pd.testing.assert_frame_equal(fast.features, plain.features)
    pd.testing.assert_series_equal(fast.targets, plain.targets)


def _frames():
    features = pd.DataFrame(
        {
            "gbifID": np.arange(1, 21, dtype=np.int64),
            "decimalLatitude": np.linspace(44, 45, 20),
            "decimalLongitude": np.linspace(-111, -110, 20),
            "Elevation": np.arange(20) * 10,  # integers become float32 too
            "wet": [True, False] * 10,
            "land_cover": ["forest", "water"] * 10,  # plain strings become categories
            "occurrenceStatus": ["PRESENT"] * 20,  # a leaked label in the features must not become a feature
        }
    )
    gold = pd.DataFrame(
        {
            "GBIFID": [str(i) for i in range(1, 16)] + ["100", "101"],  # text ids, and two ids with no features
            "OccurrenceStatus": [" present", "ABSENT ", "Present", "absent", None] * 3 + ["PRESENT", "ABSENT"],
            "species": "x",
        }
    )
    return features, gold


def test_prepare_tolerates_case_whitespace_text_ids_and_missing_statuses():
    features, gold = _frames()
    data = prepare_dataset(features, gold, features_source="f.csv", gold_source="g.csv")
    assert list(data.features.columns) == ["elevation", "wet", "land_cover"]
    kept = [i for i in range(1, 16) if i % 5 != 0]  # every fifth status is missing
    assert data.features.index.tolist() == kept
    assert data.targets.tolist() == [1, 0, 1, 0] * 3
    assert data.stats["dropped_null_targets"] == 3
    assert data.stats["gold_rows_without_features"] == 2 and data.stats["gold_rows"] == 17
    assert data.features["elevation"].dtype == np.float32 and data.features["wet"].dtype == np.float32
    assert isinstance(data.features["land_cover"].dtype, pd.CategoricalDtype)
    assert data.coords.index.tolist() == kept


def test_prepare_respects_an_explicit_feature_list_and_works_without_coordinates():
    features, gold = _frames()
    data = prepare_dataset(features.drop(columns=["decimalLatitude"]), gold, feature_columns=["ELEVATION"])
    assert list(data.features.columns) == ["elevation"]
    assert data.coords is None
