"""Suitability surfaces: every valid cell through the one scoring path, in windows, as a COG and a map."""

import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from model_quality_data import train_booster

from biodiv_core.data import datastore as ds
from biodiv_core.data.generate import generate_datastore
from biodiv_core.data.rasters import open_covariates
from biodiv_core.serving import surface
from biodiv_core.serving.scoring import model_inputs, score
from biodiv_core.serving.similarity import build_reference

SITE, SPECIES = "yellowstone", "Lynx canadensis"
NOT_FEATURES = ["gbifid", "decimallatitude", "decimallongitude"]


def _training(root):
    features = ds.read_table(ds.features_dir(root, SITE))
    gold = ds.read_table(ds.species_file(root, SITE, SPECIES), columns=["gbifid", "occurrencestatus"])
    labelled = features.merge(gold, on="gbifid")
    y = (labelled["occurrencestatus"] == "PRESENT").astype(int).to_numpy()
    return labelled.drop(columns=[*NOT_FEATURES, "occurrencestatus"]), y


def _fit(root):
    X, y = _training(root)
    booster = train_booster(X, y, rounds=80)
    return booster, model_inputs(booster, X, threshold=0.35)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=4000, raster_size=48, seed=2)
    folder = ds.covariates_dir(root, SITE)
    # A block of nodata in one covariate: those cells are not predicted.
    with rasterio.open(folder / "elevation.tif", "r+") as dst:
        values = dst.read(1)
        values[:5, :7] = dst.nodata
        dst.write(values, 1)
    booster, inputs = _fit(root)
    return root, open_covariates(folder, inputs.features), booster, inputs


def _all_cells(stack):
    """Every cell as one table (the test's reference; the surface never holds this)."""
    frame = {}
    for name, path in stack.files.items():
        with rasterio.open(path) as src:
            values = src.read(1).ravel()
        if name in stack.categories:
            values = np.asarray(stack.categories[name], dtype=object)[values.astype(int)]
        frame[name] = values
    return pd.DataFrame(frame)


def test_surface_is_the_scoring_path_on_every_valid_cell_whatever_the_window(site, tmp_path):
    _, stack, booster, inputs = site
    small = surface.predict_surface(stack, booster, inputs, _mkdir(tmp_path / "a"), window_cells=97)
    whole = surface.predict_surface(stack, booster, inputs, _mkdir(tmp_path / "b"), window_cells=10**6)
    with rasterio.open(small["suitability_raster"]) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.count == 2 and src.dtypes == ("float32", "float32") and src.descriptions == surface.BANDS
        assert src.nodata == -9999.0 and src.crs == stack.crs and src.transform == stack.transform
        probability, presence = src.read(1), src.read(2)
    with rasterio.open(whole["suitability_raster"]) as src:
        np.testing.assert_array_equal(src.read(), np.stack([probability, presence]))

    valid = np.ones((stack.height, stack.width), dtype=bool)
    valid[:5, :7] = False
    assert (probability[~valid] == -9999.0).all() and (presence[~valid] == -9999.0).all()
    assert small["valid_cells"] == valid.sum() and small["cells"] == stack.width * stack.height
    expected = score(_all_cells(stack)[valid.ravel()], booster, inputs)
    np.testing.assert_allclose(probability[valid], expected["probability"], rtol=1e-6)
    assert (presence[valid] == expected["presence"]).all()
    assert (presence[valid] == (probability[valid] >= inputs.threshold)).all()
    assert small["surface_share_present"] == pytest.approx(expected["presence"].mean())
    assert small["surface_probability_mean"] == pytest.approx(expected["probability"].mean(), rel=1e-5)
    assert Path(small["suitability_map"]).read_bytes()[:4] == b"\x89PNG"


def test_mess_band_flags_the_cells_outside_the_training_conditions(site, tmp_path):
    root, stack, booster, inputs = site
    assert len(surface._bands(inputs)) == 2  # a model without a reference: no MESS band (checked above)
    # The reference of the low half of the training elevations: the high cells lie outside it.
    X, _ = _training(root)
    low = X[X["elevation"] <= X["elevation"].median()]
    with_reference = replace(inputs, reference=build_reference(low, inputs.features, inputs.categories))
    result = surface.predict_surface(stack, booster, with_reference, _mkdir(tmp_path / "m"), window_cells=211)
    with rasterio.open(result["suitability_raster"]) as src:
        assert src.count == 3 and src.descriptions == (*surface.BANDS, surface.MESS_BAND)
        mess = src.read(3)
    valid = np.ones((stack.height, stack.width), dtype=bool)
    valid[:5, :7] = False
    assert (mess[~valid] == -9999.0).all()
    expected = score(_all_cells(stack)[valid.ravel()], booster, with_reference)
    np.testing.assert_allclose(mess[valid], np.maximum(expected["mess"], surface.MESS_FLOOR), rtol=1e-5, atol=1e-4)
    share = result["surface_extrapolated_share"]
    assert share == pytest.approx(expected["extrapolated"].mean()) and 0.2 < share < 0.8
    cells = _all_cells(stack)[valid.ravel()]
    high = (cells["elevation"] > low["elevation"].max()).to_numpy()
    assert expected["extrapolated"].to_numpy()[high].all()
    assert Path(result["suitability_map"]).read_bytes()[:4] == b"\x89PNG"


def test_surface_correlates_with_the_true_probability_surface(site, tmp_path):
    root, stack, booster, inputs = site
    result = surface.predict_surface(stack, booster, inputs, _mkdir(tmp_path / "s"))
    with (
        rasterio.open(result["suitability_raster"]) as ours,
        rasterio.open(ds.truth_surface_file(root, SITE, SPECIES)) as truth,
    ):
        predicted, true = ours.read(1, masked=True), truth.read(1)
    valid = ~np.ma.getmaskarray(predicted)
    pearson = np.corrcoef(predicted[valid], true[valid])[0, 1]
    print(f"surface vs truth: Pearson {pearson:.3f} over {valid.sum()} cells")
    assert pearson >= 0.8


def _peak_bytes(stack, booster, inputs, out, cells):
    tracemalloc.start()
    try:
        surface.predict_surface(stack, booster, inputs, out, window_cells=cells)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_follows_the_window_not_the_raster(tmp_path, monkeypatch):
    """Python-side peak (numpy, pandas) of a 4x larger raster is no larger: one window is held at a time."""
    # The map (a fixed-size figure from a preview of at most MAP_PIXELS a side) is bounded on its own, and at
    # these sizes the preview would outweigh a window: measure the windows.
    monkeypatch.setattr(surface, "plot_surface", lambda *args, **kwargs: None)
    monkeypatch.setattr(surface, "_preview", lambda path, band: np.ma.masked_array(np.zeros((1, 1))))
    peaks = {}
    window = 8192
    for size in (128, 256):
        root = tmp_path / f"s{size}"
        generate_datastore(root, sites=[SITE], species=[SPECIES], rows=600, raster_size=size, n_covariates=6)
        booster, inputs = _fit(root)
        X, _ = _training(root)  # with the MESS band: its pass is bounded by the window too
        inputs = replace(inputs, reference=build_reference(X, inputs.features, inputs.categories))
        stack = open_covariates(ds.covariates_dir(root, SITE), inputs.features)
        peaks[size] = _peak_bytes(stack, booster, inputs, _mkdir(tmp_path / f"out{size}"), cells=window)
    frame_bytes = window * len(inputs.features) * 8  # one window's cells x features as float64
    print(f"peak traced bytes {peaks}, one window's frame {frame_bytes}")
    assert peaks[256] <= 1.2 * peaks[128]
    # The window's cells as read (float32, shared with the model's frame), LightGBM's matrix (float32) or the
    # MESS pass, and the scores (~1.7x measured): never the raster.
    assert peaks[256] <= 2 * frame_bytes < 256 * 256 * len(inputs.features) * 8 / 2


def _mkdir(path):
    path.mkdir(parents=True)
    return path


def test_category_columns_score_like_text_columns_unseen_levels_included(site):
    """Raster windows hand land cover over as a pandas category: re-coded by its categories, same result as text."""
    _, stack, booster, inputs = site
    cells = _all_cells(stack).head(500).copy()
    cells.loc[:9, "land_cover"] = "glacier"  # a class training never saw
    as_text = score(cells.assign(land_cover=cells["land_cover"].astype(object)), booster, inputs)
    as_category = score(cells.assign(land_cover=cells["land_cover"].astype("category")), booster, inputs)
    pd.testing.assert_frame_equal(as_text, as_category)
    assert as_text.attrs["unseen_levels"] == as_category.attrs["unseen_levels"] == {"land_cover": 10}
