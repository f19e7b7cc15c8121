"""The covariate raster contract: one GeoTIFF per covariate on one grid; every way it can be wrong says what differs."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from biodiv_core.data.rasters import CATEGORIES_TAG, open_covariates, read_window, windows, write_raster
from biodiv_core.errors import DataContractError, NotFoundError

TRANSFORM = Affine(0.01, 0.0, -111.0, 0.0, -0.01, 45.0)


def _write(folder, name, values=None, **kwargs):
    values = np.arange(12 * 10, dtype="float64").reshape(12, 10) if values is None else values
    return write_raster(
        folder / f"{name}.tif", values, name=name, transform=kwargs.pop("transform", TRANSFORM), **kwargs
    )


@pytest.fixture
def folder(tmp_path):
    _write(tmp_path, "elevation")
    _write(tmp_path, "ndvi")
    return tmp_path


def test_a_valid_folder_opens_with_names_grid_and_categories(folder):
    _write(folder, "land_cover", np.zeros((12, 10)), categories=["forest", "water"])
    stack = open_covariates(folder, required=["ELEVATION", "land_cover"])
    assert stack.names == ["elevation", "land_cover", "ndvi"]
    assert (stack.width, stack.height, stack.nodata, str(stack.crs)) == (10, 12, -9999.0, "EPSG:4326")
    assert stack.categories == {"land_cover": ["forest", "water"]}
    assert stack.bounds == pytest.approx((-111.0, 44.88, -110.9, 45.0))


def test_the_band_description_names_the_covariate_over_the_file_stem(folder):
    write_raster(folder / "b01.tif", np.ones((12, 10)), name="Soil_Moisture", transform=TRANSFORM)
    assert "soil_moisture" in open_covariates(folder).names


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"values": np.ones((12, 11))}, r"not on one grid: slope\.tif is 11x12 cells.* elevation\.tif is 10x12"),
        ({"transform": Affine(0.02, 0, -111, 0, -0.02, 45)}, r"not on one grid: slope\.tif .*cell size \(0\.02"),
        ({"crs": "EPSG:32612"}, r"disagree on the CRS: slope\.tif is EPSG:32612 but elevation\.tif is EPSG:4326"),
        ({"nodata": 0.0}, r"disagree on nodata: slope\.tif has 0\.0 but elevation\.tif has -9999\.0"),
    ],
)
def test_rasters_that_disagree_name_both_files_and_what_differs(folder, bad, match):
    values = bad.pop("values", None)
    _write(folder, "slope", values, **bad)
    with pytest.raises(DataContractError, match=match) as error:
        open_covariates(folder)
    assert "\n" not in str(error.value)


def test_missing_covariates_are_listed_with_what_is_there(folder):
    with pytest.raises(DataContractError, match=r"lack \['slope'\].*rasters there: \['elevation', 'ndvi'\]"):
        open_covariates(folder, required=["elevation", "slope"])


def test_other_bad_folders(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        open_covariates(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(NotFoundError, match="no .tif files"):
        open_covariates(tmp_path)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataContractError, match=r"broken\.tif as a GeoTIFF"):
        open_covariates(tmp_path)
    (tmp_path / "broken.tif").unlink()
    profile = dict(driver="GTiff", width=4, height=4, count=2, dtype="float32", transform=TRANSFORM, crs="EPSG:4326")
    with rasterio.open(tmp_path / "two.tif", "w", **profile) as dst:
        dst.write(np.zeros((2, 4, 4), dtype="float32"))
    with pytest.raises(DataContractError, match=r"two\.tif has 2 bands"):
        open_covariates(tmp_path)


def test_duplicate_names_and_bad_category_tags(folder):
    write_raster(folder / "copy.tif", np.ones((12, 10)), name="ndvi", transform=TRANSFORM)
    with pytest.raises(DataContractError, match=r"ndvi\.tif and copy\.tif both hold covariate 'ndvi'|copy\.tif and"):
        open_covariates(folder)
    (folder / "copy.tif").unlink()
    path = _write(folder, "land_cover", np.zeros((12, 10)))
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(1, **{CATEGORIES_TAG: "forest,water"})
    with pytest.raises(DataContractError, match=r"land_cover\.tif: band tag 'categories' must be a JSON list"):
        open_covariates(folder)


def test_windows_cover_the_grid_once_and_stay_under_the_cell_budget(folder):
    stack = open_covariates(folder)
    for budget in (1, 7, 25, 10_000):
        seen = np.zeros((stack.height, stack.width), dtype=int)
        for w in windows(stack, budget):
            assert w.width * w.height <= max(budget, 1)
            seen[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
        assert (seen == 1).all(), budget


def test_read_window_drops_nodata_cells_and_names_classes(tmp_path):
    elevation = np.arange(12 * 10, dtype="float64").reshape(12, 10)
    elevation[0, :3] = -9999.0
    elevation[1, 0] = np.nan
    cover = np.ones((12, 10))
    cover[2, 2] = 7  # a code without a class name stays visible as its own text
    _write(tmp_path, "elevation", elevation)
    _write(tmp_path, "land_cover", cover, categories=["forest", "water"])
    stack = open_covariates(tmp_path)
    with rasterio.open(stack.files["elevation"]) as e, rasterio.open(stack.files["land_cover"]) as c:
        frame, valid = read_window(stack, {"elevation": e, "land_cover": c}, Window(0, 0, 10, 3))
    assert valid.shape == (3, 10) and valid.sum() == 26 == len(frame)
    assert not valid[0, :3].any() and not valid[1, 0]
    assert frame["elevation"].tolist()[:3] == [3.0, 4.0, 5.0]
    assert frame["elevation"].dtype == np.float32  # the raster's own type: no widened copy of the window
    assert set(frame["land_cover"].astype(str)) == {"water", "7"}
    with rasterio.open(stack.files["land_cover"]) as src:
        assert json.loads(src.tags(1)[CATEGORIES_TAG]) == ["forest", "water"]


def test_codes_without_a_class_name_keep_their_text_whatever_the_other_codes(tmp_path):
    cover = np.zeros((4, 5))
    cover[0, :] = [0, 1, 9, -2, 9]
    _write(tmp_path, "land_cover", cover, categories=["forest", "9"])  # a class named like an unnamed code
    stack = open_covariates(tmp_path)
    with rasterio.open(stack.files["land_cover"]) as c:
        frame, _ = read_window(stack, {"land_cover": c}, Window(0, 0, 5, 1))
    assert frame["land_cover"].astype(str).tolist() == ["forest", "9", "9", "-2", "9"]
