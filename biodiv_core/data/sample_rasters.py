"""The sample data's raster grid: covariates on cells, points placed in cells, the true surface per species.

The site's unit square (u east, v north, as in `landscape`) is cut into ``size`` x ``size`` cells over the
site's latitude/longitude box (EPSG:4326, row 0 at the north edge). Covariates are computed once per cell
centre, and a point takes the values of the cell it falls in: the feature table and the rasters agree by
construction, so a model trained on the points can be applied to every cell and compared with the true
probability surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biodiv_core.data.landscape import CATEGORICAL_COVARIATE, LAND_COVER, SiteProfile
from biodiv_core.data.rasters import write_raster

NODATA = -9999.0
CRS = "EPSG:4326"


@dataclass(frozen=True)
class SampleGrid:
    size: int
    profile: SiteProfile

    @property
    def transform(self):
        from rasterio.transform import Affine

        p = self.profile
        width, height = (p.lon[1] - p.lon[0]) / self.size, (p.lat[1] - p.lat[0]) / self.size
        return Affine(width, 0.0, p.lon[0], 0.0, -height, p.lat[1])  # north-west corner, rows run south

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(u, v) of every cell centre, row-major from the north-west corner."""
        centres = (np.arange(self.size) + 0.5) / self.size
        u = np.tile(centres, self.size)
        v = np.repeat(1.0 - centres, self.size)
        return u, v

    def cell_of(self, longitude: np.ndarray, latitude: np.ndarray) -> np.ndarray:
        """Flat (row-major) index of the cell holding each point, as a raster reader finds it (``rowcol``)."""
        from rasterio.transform import rowcol

        rows, cols = rowcol(self.transform, longitude, latitude)
        rows = np.clip(np.asarray(rows, dtype=np.int64), 0, self.size - 1)
        cols = np.clip(np.asarray(cols, dtype=np.int64), 0, self.size - 1)
        return rows * self.size + cols


def write_covariate_rasters(folder: Path, grid: SampleGrid, cells: dict[str, np.ndarray]) -> list[Path]:
    """One GeoTIFF per covariate (``<name>.tif``); land cover as class codes with the class names as tag."""
    paths = []
    for name, values in cells.items():
        categories = LAND_COVER if name == CATEGORICAL_COVARIATE else None
        paths.append(
            write_raster(
                folder / f"{name}.tif",
                np.asarray(values, dtype="float64").reshape(grid.size, grid.size),
                name=name,
                transform=grid.transform,
                crs=CRS,
                nodata=NODATA,
                categories=categories,
            )
        )
    return paths


def write_truth_surface(path: Path, grid: SampleGrid, probability: np.ndarray) -> Path:
    return write_raster(
        path,
        probability.reshape(grid.size, grid.size),
        name="probability",
        transform=grid.transform,
        crs=CRS,
        nodata=NODATA,
    )
