"""Covariate rasters: the data contract of ``<root>/<site>-covariates/<version>/*.tif`` and a windowed reader.

One single-band GeoTIFF per covariate. Its name is the band description (``rio info``'s ``descriptions``),
else the file stem, lower-cased like table columns; it must be the feature table's column name. All rasters
of a version share one grid (size, origin, cell size), one CRS and one nodata value, so cell ``(row, col)``
is the same place in every file. A categorical covariate holds integer class codes and names its classes in
the band tag ``categories`` (JSON list: code ``i`` is ``categories[i]``), the labels the feature table uses.

A cell is *valid* when no covariate is nodata (or NaN) there; only valid cells are predicted. Reading is
window by window (`windows`, `read_window`) so memory follows the window, never the raster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from biodiv_core.errors import DataContractError, NotFoundError

RASTER_SUFFIXES = (".tif", ".tiff")
CATEGORIES_TAG = "categories"
DEFAULT_WINDOW_CELLS = 65_536


@dataclass(frozen=True)
class CovariateStack:
    """The validated rasters of one covariates folder: name -> file, and the grid they share."""

    folder: Path
    files: dict[str, Path]
    width: int
    height: int
    transform: object  # affine.Affine
    crs: object  # rasterio.crs.CRS
    nodata: float | None
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.files)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the CRS's units."""
        from rasterio.transform import array_bounds

        return tuple(float(v) for v in array_bounds(self.height, self.width, self.transform))


def raster_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"Covariate raster folder {folder} does not exist: check the path or the data version.")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES and p.name[0] not in "._"
    )
    if not files:
        raise NotFoundError(
            f"Covariate raster folder {folder} holds no .tif files: put one GeoTIFF per covariate there."
        )
    return files


def _grid_text(src) -> str:
    t = src.transform
    return f"{src.width}x{src.height} cells, origin ({t.c:g}, {t.f:g}), cell size ({t.a:g}, {t.e:g})"


def _describe(path: Path, src) -> tuple[str, list[str] | None]:
    if src.count != 1:
        raise DataContractError(
            f"Covariate raster {path} has {src.count} bands: write one single-band GeoTIFF per covariate."
        )
    name = (src.descriptions[0] or path.stem).strip().lower()
    tag = src.tags(1).get(CATEGORIES_TAG)
    if tag is None:
        return name, None
    try:
        labels = [str(v) for v in json.loads(tag)]
    except (ValueError, TypeError) as exc:
        raise DataContractError(
            f"Covariate raster {path}: band tag {CATEGORIES_TAG!r} must be a JSON list of class names ({exc})."
        ) from None
    return name, labels


def _check_same(path: Path, src, first: Path, ref) -> None:
    """One line naming both files and what differs; the first file is the reference."""
    if (src.width, src.height) != (ref.width, ref.height) or not src.transform.almost_equals(ref.transform):
        raise DataContractError(
            f"Covariate rasters are not on one grid: {path.name} is {_grid_text(src)} but {first.name} is "
            f"{_grid_text(ref)} (in {path.parent}); resample them to one grid (same size, origin and cell size)."
        )
    if src.crs != ref.crs:
        raise DataContractError(
            f"Covariate rasters disagree on the CRS: {path.name} is {src.crs} but {first.name} is {ref.crs} "
            f"(in {path.parent}); reproject them to one CRS."
        )
    same_nodata = src.nodata == ref.nodata or (
        src.nodata is not None and ref.nodata is not None and np.isnan(src.nodata) and np.isnan(ref.nodata)
    )
    if not same_nodata:
        raise DataContractError(
            f"Covariate rasters disagree on nodata: {path.name} has {src.nodata} but {first.name} has {ref.nodata} "
            f"(in {path.parent}); give every covariate raster the same nodata value."
        )


def open_covariates(folder: str | os.PathLike, required: Sequence[str] | None = None) -> CovariateStack:
    """Validate the rasters of ``folder``; ``required`` (any case): covariates a model needs, each must be there."""
    import rasterio
    from rasterio.errors import RasterioIOError

    files = raster_files(folder)
    by_name: dict[str, Path] = {}
    categories: dict[str, list[str]] = {}
    ref = first = None
    for path in files:
        try:
            src = rasterio.open(path)
        except RasterioIOError as exc:
            raise DataContractError(f"Could not read covariate raster {path} as a GeoTIFF: {exc}.") from None
        with src:
            name, labels = _describe(path, src)
            if name in by_name:
                raise DataContractError(
                    f"Covariate rasters {by_name[name].name} and {path.name} both hold covariate {name!r} "
                    f"(in {path.parent}): keep one raster per covariate."
                )
            if ref is None:
                ref, first = _Grid.of(src), path
            else:
                _check_same(path, src, first, ref)
        by_name[name] = path
        if labels is not None:
            categories[name] = labels
    stack = CovariateStack(Path(folder), by_name, ref.width, ref.height, ref.transform, ref.crs, ref.nodata, categories)
    if required is not None:
        missing = [c for c in required if c.strip().lower() not in by_name]
        if missing:
            raise DataContractError(
                f"Covariate rasters in {stack.folder} lack {missing}, which the model was trained on "
                f"(rasters there: {sorted(by_name)}); add one GeoTIFF per missing covariate on the same grid."
            )
    return stack


@dataclass(frozen=True)
class _Grid:
    width: int
    height: int
    transform: object
    crs: object
    nodata: float | None

    @classmethod
    def of(cls, src) -> _Grid:
        return cls(src.width, src.height, src.transform, src.crs, src.nodata)


def windows(stack: CovariateStack, max_cells: int = DEFAULT_WINDOW_CELLS) -> Iterator:
    """Row-major blocks of at most ``max_cells`` cells covering the grid (``rasterio.windows.Window``).

    Square where the grid allows: tiled GeoTIFFs (256 x 256 blocks) are then read and written a few whole
    tiles at a time, where full-width strips would decompress each tile once per strip crossing it.
    """
    import math

    from rasterio.windows import Window

    cols = min(stack.width, max(1, math.isqrt(max(1, max_cells))))
    rows = max(1, max_cells // cols)
    for row in range(0, stack.height, rows):
        for col in range(0, stack.width, cols):
            yield Window(col, row, min(cols, stack.width - col), min(rows, stack.height - row))


@contextmanager
def opened(stack: CovariateStack, names: Sequence[str] | None = None):
    """{name: open dataset} for ``names`` (default all), closed on exit."""
    import rasterio

    wanted = [n.strip().lower() for n in (names or stack.names)]
    with ExitStack() as stack_of_files:
        yield {n: stack_of_files.enter_context(rasterio.open(stack.files[n])) for n in wanted}


def _column(values: np.ndarray, labels: list[str] | None) -> pd.Categorical | np.ndarray:
    if labels is None:
        return values
    codes = values.astype(np.int64)
    # Codes without a name become their own text, so scoring counts them as unseen levels.
    outside = (codes < 0) | (codes >= len(labels))
    if not outside.any():
        return pd.Categorical.from_codes(codes, categories=labels)
    extra = np.unique(codes[outside])
    names = list(labels)
    for text in (str(c) for c in extra.tolist()):
        if text not in names:
            names.append(text)
    target = np.array([names.index(str(c)) for c in extra.tolist()], dtype=np.int64)
    codes[outside] = target[np.searchsorted(extra, codes[outside])]  # per distinct code, not per cell
    return pd.Categorical.from_codes(codes, categories=names)


def read_window(stack: CovariateStack, datasets: dict, window) -> tuple[pd.DataFrame, np.ndarray]:
    """(one row per valid cell of ``window``, the window's valid mask); columns are the datasets' names.

    Columns keep the rasters' own type (float32 stays float32) and the frame wraps them without consolidating
    them into one block: the window's cells are held once as read and once as the frame, never more.
    """
    bands = {name: src.read(1, window=window) for name, src in datasets.items()}
    valid = np.ones((int(window.height), int(window.width)), dtype=bool)
    for values in bands.values():
        if np.issubdtype(values.dtype, np.floating):
            valid &= ~np.isnan(values)
        if stack.nodata is not None and not np.isnan(stack.nodata):
            valid &= values != stack.nodata
    columns = {}
    for name in list(bands):
        columns[name] = _column(bands.pop(name)[valid], stack.categories.get(name))  # each band freed once taken
    return pd.DataFrame(columns, copy=False), valid


def write_raster(
    path: str | os.PathLike,
    values: np.ndarray,
    *,
    name: str,
    transform,
    crs: str = "EPSG:4326",
    nodata: float | None = -9999.0,
    categories: Sequence[str] | None = None,
    dtype: str = "float32",
) -> Path:
    """One single-band tiled GeoTIFF named ``name`` (band description), class names as the categories tag."""
    import rasterio

    height, width = values.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
    }
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values.astype(dtype), 1)
        dst.set_band_description(1, name)
        if categories is not None:
            dst.update_tags(1, **{CATEGORIES_TAG: json.dumps(list(categories))})
    return Path(path)
