"""Presence-only species: prep adds seeded background points labelled 0, and nothing changes for species with
absences."""

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import rowcol
from stage_helpers import run_prep

from biodiv_core.data import background
from biodiv_core.data import datastore as ds
from biodiv_core.data.background import AUC_CAVEAT
from biodiv_core.data.generate import generate_datastore
from biodiv_core.data.prep import load_prepared
from biodiv_core.errors import BiodivError, ConfigError, DataContractError

SITE, SPECIES, OTHER = "yellowstone", "Lynx canadensis", "Cygnus buccinator"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    generate_datastore(
        root, sites=[SITE], species=[SPECIES, OTHER], rows=1500, raster_size=30, seed=3, presence_only=[SPECIES]
    )
    return root


def _prep(root, output, species=SPECIES, rasters=True, **values):
    covariates = str(ds.covariates_dir(root, SITE)) if rasters else None
    gold_dir = ds.species_file(root, SITE, species).parent
    summary = run_prep(
        ds.features_dir(root, SITE), gold_dir, species, output, site=SITE, covariates=covariates, **values
    )
    return summary, load_prepared(output)


def _presence_ids(root, species=SPECIES):
    gold = ds.read_table(ds.species_file(root, SITE, species))
    return set(gold["gbifid"])


def _cells_of(src, coords):
    return rowcol(src.transform, coords["decimallongitude"].to_numpy(), coords["decimallatitude"].to_numpy())


def test_generated_presence_only_species_has_present_rows_only(store):
    statuses = ds.read_table(ds.species_file(store, SITE, SPECIES))["occurrencestatus"]
    assert set(statuses) == {"PRESENT"} and len(statuses) > 100
    assert set(ds.read_table(ds.species_file(store, SITE, OTHER))["occurrencestatus"]) == {"PRESENT", "ABSENT"}


def test_background_from_feature_rows_never_a_presence_each_once_and_seeded(store, tmp_path):
    presences = _presence_ids(store)
    summary, data = _prep(store, tmp_path / "a", rasters=False, background_points=300, seed=5)
    assert summary["background_points"] == 300 and summary["background_source"] == "feature_rows"
    assert summary["auc_caveat"] == AUC_CAVEAT and summary["gold_rows"] == len(presences)
    background = data.targets.index[data.targets == 0]
    assert len(background) == len(set(background)) == 300 == summary["n_absent"]
    assert not set(background) & presences  # never a presence row
    feature_ids = set(ds.read_table(ds.features_dir(store, SITE), ["gbifid"])["gbifid"])
    assert set(background) <= feature_ids
    assert set(data.targets.index[data.targets == 1]) == presences
    assert data.coords.loc[background].notna().all().all()  # spatial CV and maps see them too

    _, again = _prep(store, tmp_path / "b", rasters=False, background_points=300, seed=5)
    _, other_seed = _prep(store, tmp_path / "c", rasters=False, background_points=300, seed=6)
    assert list(again.targets.index) == list(data.targets.index)
    pd.testing.assert_frame_equal(again.features, data.features)
    assert set(other_seed.targets.index[other_seed.targets == 0]) != set(background)


def test_background_is_at_most_all_the_site_has(store, tmp_path):
    presences = _presence_ids(store)
    summary, _ = _prep(store, tmp_path / "a", rasters=False)  # the default, 10,000, is more than the site has
    assert summary["background_points"] == 1500 - len(presences)
    summary, _ = _prep(store, tmp_path / "b", background_points=50_000, background_from="raster_cells")
    assert summary["background_points"] == 30 * 30  # every valid cell, once


def test_background_from_raster_cells_are_the_cells_values(store, tmp_path):
    summary, data = _prep(store, tmp_path / "a", background_points=200, seed=1, background_from="raster_cells")
    assert summary["background_source"] == "raster_cells" and summary["background_points"] == 200
    background = data.targets.index[data.targets == 0]
    assert (background < 0).all() and len(set(background)) == 200  # ids no GBIF record has, each cell once
    cells = -background.to_numpy() - 1
    stack_dir = ds.covariates_dir(store, SITE)
    with rasterio.open(stack_dir / "elevation.tif") as src:
        elevation = src.read(1).ravel()
        rows, cols = _cells_of(src, data.coords.loc[background])
    np.testing.assert_allclose(data.features.loc[background, "elevation"], elevation[cells], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(rows) * 30 + np.asarray(cols), cells)  # coordinates are the cell centres
    assert set(data.features.loc[background, "land_cover"].astype(str)) <= {
        "open_water", "wetland", "forest", "shrubland", "grassland", "barren", "developed"
    }  # fmt: skip
    _, again = _prep(store, tmp_path / "b", background_points=200, seed=1, background_from="raster_cells")
    assert list(again.targets.index) == list(data.targets.index)


def test_auto_draws_from_feature_rows_when_there_are_enough_else_from_raster_cells(store, tmp_path, monkeypatch):
    others = 1500 - len(_presence_ids(store))  # feature rows that are not presences
    monkeypatch.setattr(background, "MIN_FEATURE_BACKGROUND", others)
    summary, _ = _prep(store, tmp_path / "a", background_points=200)  # auto, and the site has rasters
    assert summary["background_source"] == "feature_rows" and not summary["covariates_used"]
    monkeypatch.setattr(background, "MIN_FEATURE_BACKGROUND", others + 1)
    summary, _ = _prep(store, tmp_path / "b", background_points=200)
    assert summary["background_source"] == "raster_cells" and summary["covariates_used"]
    summary, _ = _prep(store, tmp_path / "c", background_points=200, rasters=False)  # no rasters: rows, however few
    assert summary["background_source"] == "feature_rows"


def test_thinning_keeps_one_presence_per_cell(store, tmp_path):
    summary, data = _prep(store, tmp_path / "a", background_points=100, presence_thinning="cell")
    present = data.targets.index[data.targets == 1]
    with rasterio.open(ds.covariates_dir(store, SITE) / "elevation.tif") as src:
        rows, cols = _cells_of(src, data.coords.loc[present])
    cells = np.asarray(rows) * 30 + np.asarray(cols)
    assert len(set(cells)) == len(present) == summary["n_present"]
    assert summary["thinned_presences"] == len(_presence_ids(store)) - len(present) > 0


def test_species_with_absences_are_prepared_as_before(store, tmp_path):
    before, old = _prep(store, tmp_path / "a", species=OTHER, rasters=False)
    after, new = _prep(store, tmp_path / "b", species=OTHER, background_points=5, presence_thinning="cell")
    assert after["background_points"] == 0 and "auc_caveat" not in after
    pd.testing.assert_frame_equal(old.features, new.features)
    pd.testing.assert_series_equal(old.targets, new.targets)
    assert {k: v for k, v in before.items() if k != "output"} == {k: v for k, v in after.items() if k != "output"}


def _fails(error, fragments, *args, **kwargs):
    with pytest.raises(error) as err:
        _prep(*args, **kwargs)
    assert isinstance(err.value, BiodivError)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_presence_only_without_rows_left_for_background(tmp_path):
    root = tmp_path / "data"
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=200, gold_rows=200, raster_size=0)
    gold = ds.species_file(root, SITE, SPECIES)
    pd.read_csv(gold).assign(occurrenceStatus="PRESENT").to_csv(gold, index=False)  # every feature row a presence
    _fails(DataContractError, ["no rows besides the 200 presences", "add the site's other feature rows"], root,
           tmp_path / "out", rasters=False)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_raster_options_without_rasters_are_config_errors(store, tmp_path):
    _fails(ConfigError, ["presence_thinning=cell needs covariate rasters"], store, tmp_path / "a", rasters=False,
           presence_thinning="cell")  # fmt: skip
    _fails(ConfigError, ["background_from=raster_cells needs covariate rasters"], store, tmp_path / "b",
           rasters=False, background_from="raster_cells")  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_rasters_lacking_a_feature_column(store, tmp_path):
    rasters = tmp_path / "rasters"
    rasters.mkdir()
    for path in ds.covariates_dir(store, SITE).iterdir():
        if path.stem != "ndvi":
            (rasters / path.name).write_bytes(path.read_bytes())
    with pytest.raises(DataContractError, match=r"lack \['ndvi'\], feature columns background cells need"):
        run_prep(ds.features_dir(store, SITE), ds.species_file(store, SITE, SPECIES).parent, SPECIES,
                 tmp_path / "out", site=SITE, covariates=str(rasters))  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_rasters_without_a_valid_cell(store, tmp_path):
    rasters = tmp_path / "rasters"
    rasters.mkdir()
    for path in ds.covariates_dir(store, SITE).iterdir():
        (rasters / path.name).write_bytes(path.read_bytes())
    with rasterio.open(rasters / "slope.tif", "r+") as dst:
        dst.write(np.full((30, 30), dst.nodata, dtype="float32"), 1)
    with pytest.raises(DataContractError, match="have no cell where every covariate has a value"):
        run_prep(ds.features_dir(store, SITE), ds.species_file(store, SITE, SPECIES).parent, SPECIES,
                 tmp_path / "out", site=SITE, covariates=str(rasters))  # fmt: skip
    assert not (tmp_path / "out").exists()
