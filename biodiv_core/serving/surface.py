"""Continuous suitability surfaces: a model applied to every valid cell of a site's covariate rasters.

Cells are read, scored and written window by window (`biodiv_core.data.rasters.windows`): each window's
valid cells become one table that goes through `biodiv_core.serving.scoring.score`, the one scoring path, so
the surface and a batch-scored table of the same cells agree. Memory follows the window (``window_cells``),
never the raster: one window's cells are held as read (float32 rasters stay float32, and the model's frame
wraps those arrays), plus LightGBM's matrix or the MESS pass, plus the scores, about 1.1-1.7x the window's
frame as float64 (benchmarks/README.md). Output (into an existing folder):

- ``suitability.tif``: Cloud-Optimized GeoTIFF, float32, band 1 ``probability``, band 2 ``presence`` (0/1 at
  the model's threshold) and, for a model saved with a covariate reference, band 3 ``mess`` (MESS,
  `serving.similarity`, floored at `MESS_FLOOR` to stay clear of nodata); cells invalid in the covariates are
  nodata in every band;
- ``suitability_map.png``: the probability surface with a colour bar (nodata grey), extrapolated cells (MESS < 0)
  hatched, read from the COG's overviews so drawing it is bounded too.
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
MESS_BAND = "mess"
MESS_FLOOR = -1000.0  # ten training ranges beyond the edge: flagged all the same, and never the nodata value
OUTPUT_NODATA = -9999.0
MAP_PIXELS = 800  # longest side of the PNG's source image
GDAL_CACHE_BYTES = 32 * 2**20  # GDAL's block cache would otherwise grow with the raster (5% of RAM)
# Overviews by NEAREST: every overview cell is a real cell's value, so presence stays 0/1, MESS a real MESS and
# nodata is not smeared into its neighbours; GDAL's default for COG (CUBIC) invents values, and took 2x the CPU
# of the whole copy and 2.5x the file size (4,000 x 4,000 cells, benchmarks/README.md). DEFLATE level 1: half
# the CPU of level 6 for a ~25% larger file, still a few MiB; DEFLATE is what every GeoTIFF reader reads.
COG_OPTIONS = {"COMPRESS": "DEFLATE", "LEVEL": 1, "RESAMPLING": "NEAREST", "BLOCKSIZE": 256}


def output_nodata(stack: CovariateStack) -> float:
    """The covariates' nodata when it cannot be mistaken for a probability, a class or a MESS, else -9999."""
    nodata = stack.nodata
    if nodata is None or np.isnan(nodata) or MESS_FLOOR <= nodata <= 100.0:
        return OUTPUT_NODATA
    return float(np.float32(nodata))


def _write_window(dst, window, cells, model, inputs: ModelInputs, nodata: float, totals: _Totals) -> None:
    """Score one window's cells (``read_window``'s table and mask), add them to ``totals`` and write the bands.

    Held at once: the window's table, its scores, and one output band; nothing outlives the call, so the
    next window is read with none of this one's arrays still held.
    """
    frame, valid = cells
    del cells
    scored = score(frame, model, inputs) if len(frame) else None
    del frame
    values: dict[str, np.ndarray] = {}
    for index, name in enumerate(_bands(inputs), start=1):
        band = np.full(valid.shape, nodata, dtype=np.float32)
        if scored is not None:
            values[name] = scored[name].to_numpy(dtype=np.float32)
            if name == MESS_BAND:
                np.maximum(values[name], MESS_FLOOR, out=values[name])  # NaN stays NaN: nothing known there
            band[valid] = values[name]
            if name == MESS_BAND:
                band[valid & np.isnan(band)] = nodata
        dst.write(band, index, window=window)
        del band
    if scored is not None:
        unseen = scored.attrs.get("unseen_levels", {})
        totals.add(values["probability"], values["presence"], unseen, values.get(MESS_BAND))


def _bands(inputs: ModelInputs) -> tuple[str, ...]:
    return BANDS if inputs.reference is None else (*BANDS, MESS_BAND)


class _Totals:
    """Running figures over the scored cells (no cell is kept)."""

    def __init__(self) -> None:
        self.cells = self.present = self.extrapolated = 0
        self.total = 0.0
        self.histogram = np.zeros(1000, dtype=np.int64)
        self.unseen: dict[str, int] = {}

    def add(self, probability: np.ndarray, presence: np.ndarray, unseen: dict, mess: np.ndarray | None) -> None:
        self.cells += len(probability)
        if mess is not None:
            self.extrapolated += int((mess < 0).sum())
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
        "count": len(_bands(inputs)),
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
            for band, name in enumerate(_bands(inputs), start=1):
                dst.set_band_description(band, name)
            for window in windows(stack, window_cells):
                _write_window(dst, window, read_window(stack, datasets, window), model, inputs, nodata, totals)
        # The COG driver writes tiles and overviews from the staged file; it cannot be written window by window.
        rasterio.shutil.copy(staging, output / SURFACE_FILE, driver="COG", **COG_OPTIONS)
        staging.unlink()
        preview = _preview(output / SURFACE_FILE, 1)
        extrapolated = None if inputs.reference is None else _preview(output / SURFACE_FILE, 3).filled(0.0) < 0
    left, bottom, right, top = stack.bounds
    plot_surface(
        preview,
        (left, right, bottom, top),
        output / SURFACE_MAP_FILE,
        title,
        geographic=stack.crs.is_geographic,
        extrapolated=extrapolated,
    )
    share = totals.extrapolated / totals.cells if totals.cells else float("nan")
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
        "surface_extrapolated_share": None if inputs.reference is None else share,
        "threshold": inputs.threshold,
    }


def _preview(path: Path, band: int) -> np.ma.MaskedArray:
    """``band`` at most MAP_PIXELS on its longest side (GDAL reads the nearest overview)."""
    import rasterio

    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / MAP_PIXELS)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        return src.read(band, out_shape=shape, masked=True)
