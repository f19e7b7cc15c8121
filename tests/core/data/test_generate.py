"""Synthetic sample data: layout, determinism, realistic covariates and a learnable known niche."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from sklearn.metrics import roc_auc_score

from biodiv_core.data import datastore as ds
from biodiv_core.data.generate import generate_datastore
from biodiv_core.data.landscape import CATEGORICAL_COVARIATE, LAND_COVER
from biodiv_core.errors import ConfigError, InvalidNameError
from biodiv_dagster.cli import main as cli_main

SPECIES = ("Cygnus buccinator", "Lynx canadensis")


def _digests(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    info = generate_datastore(root, sites=["yellowstone", "everglades"], species=SPECIES, rows=4000, seed=3)
    return root, info


def test_layout_is_exactly_the_data_contract(generated):
    root, info = generated
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        f"{site}-{kind}"
        for site in ("everglades", "yellowstone")
        for kind in (
            f"training-features/1/{site}_features.csv",
            "training-species/1/cygnus_buccinator_golddata.csv",
            "training-species/1/lynx_canadensis_golddata.csv",
            "truth/1/cygnus_buccinator_truth.csv",
            "truth/1/lynx_canadensis_truth.csv",
            "truth/1/cygnus_buccinator_probability.tif",
            "truth/1/lynx_canadensis_probability.tif",
            *(f"covariates/1/{name}.tif" for name in info["sites"][site]["covariates"]),
        )
    )
    site = info["sites"]["yellowstone"]
    assert site["features"] == str(ds.features_dir(root, "yellowstone"))
    assert site["species"]["Lynx canadensis"]["gold_file"] == str(
        ds.species_file(root, "yellowstone", "Lynx canadensis")
    )


def test_features_are_gbif_like(generated):
    root, _ = generated
    header = (ds.features_dir(root, "yellowstone") / "yellowstone_features.csv").read_text().splitlines()[0]
    assert header.startswith('"gbifID","decimalLatitude","decimalLongitude"')  # GBIF's mixed case
    features = ds.read_table(ds.features_dir(root, "yellowstone"))
    assert len(features) == 4000 and features.shape[1] == 3 + 12
    assert features["gbifid"].dtype == np.int64 and features["gbifid"].is_unique
    assert features["gbifid"].min() > 2**31  # beyond int32: catches narrowing bugs downstream
    assert features["decimallatitude"].between(44.13, 45.11).all()
    assert features["decimallongitude"].between(-111.16, -109.82).all()
    assert isinstance(features[CATEGORICAL_COVARIATE].dtype, pd.CategoricalDtype)
    assert set(features[CATEGORICAL_COVARIATE].cat.categories) <= set(LAND_COVER)
    assert features[CATEGORICAL_COVARIATE].nunique() >= 4
    numeric = features.drop(columns=["gbifid", CATEGORICAL_COVARIATE]).select_dtypes("number")
    assert numeric.shape[1] == 2 + 11 and not numeric.isna().any().any()


def test_covariates_are_correlated_and_spatially_smooth(generated):
    root, _ = generated
    f = ds.read_table(ds.features_dir(root, "yellowstone"))
    corr = f.drop(columns=[CATEGORICAL_COVARIATE]).corr()
    assert corr.loc["temperature_mean", "elevation"] < -0.8  # lapse rate
    assert corr.loc["ndvi", "precipitation_annual"] > 0.5  # greener where wetter
    assert corr.loc["soil_moisture", "precipitation_annual"] > 0.4
    # Spatial structure: a point's nearest neighbour has a similar value, far more than a random point.
    xy = f[["decimallongitude", "decimallatitude"]].to_numpy()
    _, nearest = cKDTree(xy).query(xy, k=2)
    for name in ("elevation", "precipitation_annual", "human_footprint"):
        values = f[name].to_numpy()
        assert np.corrcoef(values, values[nearest[:, 1]])[0, 1] > 0.8, name
    # Points cluster: the median nearest-neighbour distance is well below that of a uniform scatter.
    span = np.ptp(xy, axis=0)
    uniform = np.random.default_rng(0).random(xy.shape) * span
    dist = cKDTree(xy).query(xy, k=2)[0][:, 1]
    dist_uniform = cKDTree(uniform).query(uniform, k=2)[0][:, 1]
    assert np.median(dist) < 0.6 * np.median(dist_uniform)
    # Land cover follows the layers it is derived from.
    by_cover = f.groupby(CATEGORICAL_COVARIATE, observed=True)["ndvi"].median()
    assert by_cover["forest"] > by_cover["grassland"] > by_cover["barren"]


def test_gold_data_follows_the_true_probability(generated):
    root, info = generated
    for site in ("yellowstone", "everglades"):
        features = ds.read_table(ds.features_dir(root, site), ["gbifid"])
        for species in SPECIES:
            gold = ds.read_table(ds.species_file(root, site, species))
            assert list(gold.columns) == ["gbifid", "species", "basisofrecord", "occurrencestatus"]
            assert len(gold) == 3200 and gold["gbifid"].is_unique  # 80% of rows by default
            assert gold["gbifid"].isin(features["gbifid"]).all()
            assert set(gold["occurrencestatus"].unique()) == {"PRESENT", "ABSENT"}
            truth = ds.read_table(ds.truth_file(root, site, species))
            assert list(truth.columns) == ["gbifid", "probability"] and len(truth) == 4000
            assert truth["probability"].between(0, 1).all()
            data = gold.merge(truth, on="gbifid", validate="one_to_one")
            y = (data["occurrencestatus"] == "PRESENT").to_numpy()
            # Bayes-optimal AUC: learnable, not trivial.
            assert 0.75 < roc_auc_score(y, data["probability"]) < 0.95, (site, species)
            assert 0.15 < y.mean() < 0.6
            # Calibrated: the labels were drawn from the probability.
            assert abs(y.mean() - data["probability"].mean()) < 0.03
            counts = info["sites"][site]["species"][species]
            assert (counts["n_present"], counts["n_absent"]) == (int(y.sum()), int((~y).sum()))
            assert set(counts["niche"]) <= set(features.columns) | set(info["sites"][site]["covariates"])
    cygnus = ds.read_table(ds.species_file(root, "yellowstone", SPECIES[0]), ["gbifid"])["gbifid"]
    lynx = ds.read_table(ds.species_file(root, "yellowstone", SPECIES[1]), ["gbifid"])["gbifid"]
    assert not cygnus.equals(lynx)  # each species is its own labelled subset


def _cells_of(stack, features):
    from rasterio.transform import rowcol

    rows, cols = rowcol(stack.transform, features["decimallongitude"], features["decimallatitude"])
    return np.asarray(rows), np.asarray(cols)


def test_points_take_the_values_of_their_raster_cells_and_the_truth_surface_agrees(generated):
    import rasterio

    from biodiv_core.data.rasters import open_covariates

    root, info = generated
    site = info["sites"]["yellowstone"]
    stack = open_covariates(ds.covariates_dir(root, "yellowstone"), site["covariates"])
    assert (stack.width, stack.height, str(stack.crs)) == (100, 100, "EPSG:4326")
    assert stack.categories == {CATEGORICAL_COVARIATE: list(LAND_COVER)}
    features = ds.read_table(ds.features_dir(root, "yellowstone"))
    rows, cols = _cells_of(stack, features)
    for name, path in stack.files.items():
        with rasterio.open(path) as src:
            at_points = src.read(1)[rows, cols]
        if name == CATEGORICAL_COVARIATE:
            assert (np.asarray(LAND_COVER)[at_points.astype(int)] == features[name].astype(str)).all()
        else:  # float32 rasters, float64 table
            np.testing.assert_allclose(at_points, features[name], rtol=1e-6, err_msg=name)
    for species in SPECIES:
        truth = pd.read_csv(ds.truth_file(root, "yellowstone", species))
        with rasterio.open(ds.truth_surface_file(root, "yellowstone", species)) as src:
            surface = src.read(1)
        assert surface.min() >= 0 and surface.max() <= 1 and surface.std() > 0.05
        np.testing.assert_allclose(surface[rows, cols], truth["probability"], atol=1e-5)


def test_raster_size_zero_writes_points_only(tmp_path):
    generate_datastore(tmp_path, sites=["everglades"], species=["Lynx canadensis"], rows=300, raster_size=0)
    assert ds.covariates_dir(tmp_path, "everglades") is None
    assert ds.list_assets(tmp_path) == [
        "everglades-training-features",
        "everglades-training-species",
        "everglades-truth",
    ]
    features = ds.read_table(ds.features_dir(tmp_path, "everglades"))
    covariates = features.drop(columns=["gbifid", "decimallatitude", "decimallongitude"])
    assert len(covariates.drop_duplicates()) == 300  # every point its own values, no shared cells


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    kwargs = dict(sites=["yellowstone", "Mount Kenya"], species=["Cygnus buccinator"], rows=500, gold_rows=200)
    for fmt in ("csv", "parquet"):
        generate_datastore(tmp_path / f"a-{fmt}", seed=1, fmt=fmt, **kwargs)
        generate_datastore(tmp_path / f"b-{fmt}", seed=1, fmt=fmt, **kwargs)
        generate_datastore(tmp_path / f"c-{fmt}", seed=2, fmt=fmt, **kwargs)
        a = _digests(tmp_path / f"a-{fmt}")
        assert a == _digests(tmp_path / f"b-{fmt}")
        c = _digests(tmp_path / f"c-{fmt}")
        assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_csv_and_parquet_hold_the_same_data_and_parts_split_rows(tmp_path):
    generate_datastore(tmp_path / "csv", sites=["everglades"], species=["Lynx canadensis"], rows=900, fmt="csv")
    generate_datastore(
        tmp_path / "pq", sites=["everglades"], species=["Lynx canadensis"], rows=900, fmt="parquet", parts=3
    )
    files = sorted(p.name for p in ds.features_dir(tmp_path / "pq", "everglades").iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    a = ds.read_table(ds.features_dir(tmp_path / "csv", "everglades"))
    b = ds.read_table(ds.features_dir(tmp_path / "pq", "everglades"))
    pd.testing.assert_frame_equal(a, b, check_categorical=False)


def test_covariate_count_and_gold_rows_are_configurable(tmp_path):
    info = generate_datastore(tmp_path, sites=["s1"], species=["A b"], rows=300, n_covariates=20, gold_rows=120)
    features = ds.read_table(ds.features_dir(tmp_path, "s1"))
    assert features.shape[1] == 3 + 20 and len(info["sites"]["s1"]["covariates"]) == 20
    assert features.columns[-1] == CATEGORICAL_COVARIATE and "env_19" in features.columns
    assert len(ds.read_table(ds.species_file(tmp_path, "s1", "A b"))) == 120
    small = generate_datastore(tmp_path / "small", sites=["s1"], species=["A b"], rows=300, n_covariates=5)
    assert small["sites"]["s1"]["covariates"] == ["elevation", "temperature_mean", "temperature_range",
                                                   "precipitation_annual", CATEGORICAL_COVARIATE]  # fmt: skip


def test_existing_version_errors_unless_told_to_skip_or_overwrite(tmp_path):
    kwargs = dict(sites=["yellowstone"], species=["Lynx canadensis"], rows=200)
    generate_datastore(tmp_path, seed=0, **kwargs)
    before = _digests(tmp_path)
    with pytest.raises(ConfigError, match=r"already exists.*--version"):
        generate_datastore(tmp_path, seed=5, **kwargs)
    assert generate_datastore(tmp_path, seed=5, if_exists="skip", **kwargs)["sites"]["yellowstone"]["skipped"]
    assert _digests(tmp_path) == before
    generate_datastore(tmp_path, seed=5, if_exists="overwrite", **kwargs)
    assert _digests(tmp_path) != before
    generate_datastore(tmp_path, seed=5, version=2, **kwargs)
    assert ds.resolve_version(tmp_path, "yellowstone-training-features") == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rows": 5},
        {"fmt": "xlsx"},
        {"n_covariates": 2},
        {"gold_rows": 0},
        {"gold_rows": 10_000},
        {"version": 0},
        {"species": ["Lynx canadensis", "lynx-canadensis"]},
        {"raster_size": 1},
        {"raster_size": -4},
    ],
)
def test_bad_generator_parameters(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        generate_datastore(tmp_path / "store", **({"rows": 100} | kwargs))
    assert not (tmp_path / "store").exists()


def test_unsafe_site_or_species_names_are_rejected(tmp_path):
    with pytest.raises(InvalidNameError):
        generate_datastore(tmp_path, species=["../evil"], rows=100)
    with pytest.raises(InvalidNameError):
        generate_datastore(tmp_path, sites=["a/b"], rows=100)


def test_cli_generate_data(tmp_path, capsys, monkeypatch):
    root = tmp_path / "store"
    argv = ["generate-data", "--root", str(root), "--sites", "everglades", "--species", "Lynx canadensis"]
    argv += ["--rows", "300", "--gold-rows", "150", "--covariates", "8", "--format", "parquet", "--seed", "4"]
    assert cli_main(argv) == 0
    assert "Lynx canadensis" in capsys.readouterr().out
    features = ds.read_table(ds.features_dir(root, "everglades"))
    assert features.shape == (300, 3 + 8)
    assert len(ds.read_table(ds.species_file(root, "everglades", "Lynx canadensis"))) == 150
    # A second run for the same version fails with a clear message (exit code 2), and --if-exists skip is fine.
    assert cli_main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main([*argv, "--if-exists", "skip"]) == 0
    # --raster-size: the grid of the covariate rasters; 0 writes none.
    assert cli_main([*argv[:2], str(tmp_path / "grid"), *argv[3:], "--raster-size", "16"]) == 0
    assert {p.name for p in ds.covariates_dir(tmp_path / "grid", "everglades").iterdir()} == {
        f"{c}.tif" for c in features.columns[3:]
    }
    assert cli_main([*argv[:2], str(tmp_path / "none"), *argv[3:], "--raster-size", "0"]) == 0
    assert ds.covariates_dir(tmp_path / "none", "everglades") is None
    # Without --root, --sites and --species: BIODIV_DATA_ROOT and the config files.
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(tmp_path / "default"))
    assert cli_main(["generate-data", "--rows", "100"]) == 0
    assert ds.list_assets(tmp_path / "default") == [
        "everglades-covariates",
        "everglades-training-features",
        "everglades-training-species",
        "everglades-truth",
        "yellowstone-covariates",
        "yellowstone-training-features",
        "yellowstone-training-species",
        "yellowstone-truth",
    ]
    gold = sorted(p.name for p in ds.species_dir(tmp_path / "default", "yellowstone").iterdir())
    assert gold == [
        "cygnus_buccinator_golddata.csv",
        "haliaeetus_leucocephalus_golddata.csv",
        "lynx_canadensis_golddata.csv",
    ]
