"""Continuous suitability surfaces: a model applied to every valid cell of a site's covariate rasters.

Cells are read, scored and written window by window (`biodiv_core.data.rasters.windows`): each window's
valid cells become one table that goes through `biodiv_core.serving.scoring.score`, the one scoring path, so
the surface and a batch-scored table of the same cells agree. Memory follows the window (``window_cells``),
never the raster. Output (into an existing folder):

- ``suitability.tif``: Cloud-Optimized GeoTIFF, float32, band 1 ``probability``, band 2 ``presence`` (0/1 at
  the model's threshold); cells invalid in the covariates are nodata in both;
- ``suitability_map.png``: the probability surface with a colour bar (nodata grey), read from the COG's
  overviews so drawing it is bounded too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from biodiv_core.data.rasters import DEFAULT_WINDOW_CELLS, CovariateStack, opened, read_window, windows
from biodiv_core.evaluation.plots import plot_surface
from biodiv_core.serving.scoring import ModelInputs, score

SURFACE_FILE = "suitability.tif"
SURFACE_MAP_FILE = "suitability_map.png"
BANDS = ("probability", "presence")
OUTPUT_NODATA = -9999.0
MAP_PIXELS = 800  # longest side of the PNG's source image
GDAL_CACHE_BYTES = 32 * 2**20  # GDAL's block cache would otherwise grow with the raster (5% of RAM)


def output_nodata(stack: CovariateStack) -> float:
    """The covariates' nodata when it cannot be mistaken for a probability or a class, else -9999."""
    nodata = stack.nodata
    if nodata is None or np.isnan(nodata) or 0.0 <= nodata <= 1.0:
        return OUTPUT_NODATA
    return float(np.float32(nodata))


def _score_window(frame, valid, model, inputs: ModelInputs, nodata: float) -> tuple[np.ndarray, np.ndarray, dict]:
    probability = np.full(valid.shape, nodata, dtype=np.float32)
    presence = np.full(valid.shape, nodata, dtype=np.float32)
    unseen: dict = {}
    if len(frame):
        scored = score(frame, model, inputs)
        p = scored["probability"].to_numpy(dtype=np.float32)
        probability[valid] = p
        presence[valid] = scored["presence"].to_numpy(dtype=np.float32)
        unseen = scored.attrs.get("unseen_levels", {})
    return probability, presence, unseen


class _Totals:
    """Running figures over the scored cells (no cell is kept)."""

    def __init__(self) -> None:
        self.cells = self.present = 0
        self.total = 0.0
        self.histogram = np.zeros(1000, dtype=np.int64)
        self.unseen: dict[str, int] = {}

    def add(self, probability: np.ndarray, presence: np.ndarray, unseen: dict) -> None:
        self.cells += len(probability)
        self.present += int(presence.sum())
        self.total += float(probability.sum(dtype=np.float64))
        self.histogram += np.bincount(np.minimum((probability * 1000).astype(np.int64), 999), minlength=1000)
        for name, count in unseen.items():
            self.unseen[name] = self.unseen.get(name, 0) + int(count)

    def quantile(self, q: float) -> float:
        if not self.cells:
            return float("nan")
        return float((np.searchsorted(np.cumsum(self.histogram), q * self.cells) + 0.5) / 1000)


def predict_surface(
    stack: CovariateStack,
    model: Any,
    inputs: ModelInputs,
    output: str | os.PathLike,
    title: str = "Habitat suitability",
    window_cells: int = DEFAULT_WINDOW_CELLS,
) -> dict:
    """Write the surface COG and its map into the folder ``output``; return its summary (paths, cell figures)."""
    import rasterio
    import rasterio.shutil

    output = Path(output)
    nodata = output_nodata(stack)
    staging = output / f"_{SURFACE_FILE}"
    profile = {
        "driver": "GTiff",
        "width": stack.width,
        "height": stack.height,
        "count": len(BANDS),
        "dtype": "float32",
        "crs": stack.crs,
        "transform": stack.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    totals = _Totals()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        with opened(stack, inputs.features) as datasets, rasterio.open(staging, "w", **profile) as dst:
            for band, name in enumerate(BANDS, start=1):
                dst.set_band_description(band, name)
            for window in windows(stack, window_cells):
                frame, valid = read_window(stack, datasets, window)
                probability, presence, unseen = _score_window(frame, valid, model, inputs, nodata)
                del frame
                totals.add(probability[valid], presence[valid], unseen)
                dst.write(probability, 1, window=window)
                dst.write(presence, 2, window=window)
        # The COG driver writes tiles and overviews from the staged file; it cannot be written window by window.
        rasterio.shutil.copy(staging, output / SURFACE_FILE, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256)
        staging.unlink()
        preview = _preview(output / SURFACE_FILE)
    left, bottom, right, top = stack.bounds
    plot_surface(
        preview, (left, right, bottom, top), output / SURFACE_MAP_FILE, title, geographic=stack.crs.is_geographic
    )
    cells = stack.width * stack.height
    return {
        "suitability_raster": str(output / SURFACE_FILE),
        "suitability_map": str(output / SURFACE_MAP_FILE),
        "cells": cells,
        "valid_cells": totals.cells,
        "surface_probability_mean": totals.total / totals.cells if totals.cells else float("nan"),
        "surface_probability_median": totals.quantile(0.5),
        "surface_share_present": totals.present / totals.cells if totals.cells else float("nan"),
        "surface_unseen_levels": totals.unseen,
        "threshold": inputs.threshold,
    }


def _preview(path: Path) -> np.ma.MaskedArray:
    """Band 1 at most MAP_PIXELS on its longest side (GDAL reads the nearest overview)."""
    import rasterio

    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / MAP_PIXELS)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        return src.read(1, out_shape=shape, masked=True)
