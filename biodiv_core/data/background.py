"""Background points for presence-only species: where the species was not recorded is unknown, not absent.

Most GBIF occurrences are presences only. For a species whose gold data holds PRESENT rows only, prep adds
background points labelled 0, the way SDM tools do (elapid's background sampling, biomod2's
pseudo-absences): a seeded random sample of the site's environment, from the covariate raster cells (every
valid cell equally likely) or from the site's feature rows that are not presences (the run setting
``background_from``; "auto": feature rows when there are enough of them, `MIN_FEATURE_BACKGROUND`, else raster
cells when the site has rasters). Feature rows were collected by the same observers as the presences, so they
share their sampling bias and cancel it ("target-group background", Phillips et al. 2009); raster cells do not
(docs/model-quality.md has the measurement that made feature rows the default). The model then ranks
presences against the site's environment, so its AUC says how well it tells presences from background, not
from absences (``AUC_CAVEAT``).

Background rows join the data as extra feature rows with ABSENT gold rows, so every rule of the prep
contract applies to them as to real rows. Raster cells get ids no GBIF record has: ``-(flat cell index + 1)``.
Each point is drawn once (sampling without replacement), never a presence row, and the same inputs and seed
give the same points (candidates are sorted before the draw, so the order of rows or windows does not matter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from biodiv_core.data.contract import CLASSES, COORDINATE_COLUMNS, ID_COLUMN, TARGET_COLUMN
from biodiv_core.data.contract import _ids as exact_ids
from biodiv_core.data.datastore import read_arrow
from biodiv_core.errors import ConfigError, DataContractError

AUC_CAVEAT = (
    "presence-only species: ROC-AUC (and every absence-based metric) compares presences with background "
    "points, not with absences; it ranks presences above the site's average environment and cannot reach 1"
)
FROM_RASTERS, FROM_FEATURES = "raster_cells", "feature_rows"  # values of the background_from setting
# "auto" draws from the feature rows (target-group background) when at least this many are not presences: a
# background of fewer points describes the site's environment too coarsely, and the rasters (when there are
# any) then do better. The measurement behind the default is in docs/model-quality.md.
MIN_FEATURE_BACKGROUND = 1000
# Sample streams of this module, apart from the split's and tuning's uses of the run seed.
_BACKGROUND_STREAM = 31


@dataclass
class Background:
    """What prep adds for a presence-only species (an empty one for species with absences)."""

    points: int = 0
    source: str | None = None
    thinned_presences: int = 0
    covariates_used: bool = False  # raster cells drawn or presences thinned: the output depends on the rasters

    def summary(self) -> dict:
        out = {"background_points": self.points, "background_source": self.source}
        out["covariates_used"] = self.covariates_used
        if self.points:
            out |= {"thinned_presences": self.thinned_presences, "auc_caveat": AUC_CAVEAT}
        return out


def is_presence_only(gold: pd.DataFrame) -> bool:
    """True when every status the gold rows hold is PRESENT (any case and spacing), and there is one.

    Unknown statuses are not presence-only: prepare_dataset reports them.
    """
    statuses = {str(v).strip().upper() for v in pd.unique(gold[TARGET_COLUMN].dropna())} - {""}
    return statuses == {"PRESENT"}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _BACKGROUND_STREAM])


def feature_candidates(features_path: Path, source: str, presence_ids: np.ndarray) -> np.ndarray:
    """The feature-row ids that are not presences, sorted and unique."""
    ids = read_arrow(features_path, [ID_COLUMN])[ID_COLUMN].to_pandas()
    return np.setdiff1d(exact_ids(ids, source, ID_COLUMN), presence_ids)


def feature_background_ids(
    candidates: np.ndarray, source: str, presence_ids: np.ndarray, n: int, seed: int
) -> np.ndarray:
    """Up to ``n`` of the feature-row ids ``candidates`` (`feature_candidates`), drawn without replacement
    (sorted first, so the draw does not depend on row order)."""
    if not len(candidates):
        raise DataContractError(
            f"{source} has no rows besides the {len(np.unique(presence_ids))} presences of this presence-only "
            "species, so no background points can be drawn: add the site's other feature rows (or covariate "
            "rasters), or ABSENT records to the gold data."
        )
    take = min(n, len(candidates))
    return np.sort(_rng(seed).choice(candidates, size=take, replace=False))


def _lonlat_to_crs(crs, longitude: np.ndarray, latitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if crs is None or crs.is_geographic:
        return longitude, latitude
    from rasterio.warp import transform

    x, y = transform("EPSG:4326", crs, longitude, latitude)
    return np.asarray(x), np.asarray(y)


def _cell_lonlat(stack, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(longitude, latitude) of the centres of cells ``flat`` (row-major)."""
    from rasterio.transform import xy

    x, y = xy(stack.transform, flat // stack.width, flat % stack.width)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if stack.crs is None or stack.crs.is_geographic:
        return x, y
    from rasterio.warp import transform

    lon, lat = transform(stack.crs, "EPSG:4326", x, y)
    return np.asarray(lon), np.asarray(lat)


def _window_cells(stack, window, valid: np.ndarray) -> np.ndarray:
    """Flat (row-major) grid index of each valid cell of ``window``, in read_window's row order."""
    rows, cols = np.nonzero(valid)
    return (rows + int(window.row_off)) * stack.width + cols + int(window.col_off)


def raster_background(stack, columns: list[str], n: int, seed: int, with_coordinates: bool) -> pd.DataFrame:
    """Up to ``n`` valid cells of ``stack`` drawn without replacement: gbifid ``-(cell + 1)``, ``columns`` (the
    feature columns), and the cell centres' decimallatitude/decimallongitude when ``with_coordinates``.

    Two windowed passes (memory follows a window and the sample, not the raster): the valid cells, then the
    sampled cells' values.
    """
    from biodiv_core.data.rasters import opened, read_window, windows

    missing = [c for c in columns if c not in stack.files]
    if missing:
        raise DataContractError(
            f"Covariate rasters in {stack.folder} lack {missing}, feature columns background cells need "
            f"(rasters there: {sorted(stack.files)}); add one GeoTIFF per missing covariate on the same grid."
        )
    with opened(stack, columns) as datasets:
        valid_cells = [_window_cells(stack, w, read_window(stack, datasets, w)[1]) for w in windows(stack)]
        valid = np.sort(np.concatenate(valid_cells)) if valid_cells else np.empty(0, dtype=np.int64)
        if not len(valid):
            raise DataContractError(
                f"Covariate rasters in {stack.folder} have no cell where every covariate has a value, so no "
                "background points can be drawn: check their nodata, or remove the rasters to draw from feature rows."
            )
        chosen = np.sort(_rng(seed).choice(valid, size=min(n, len(valid)), replace=False))
        parts = []
        for window in windows(stack):
            table, mask = read_window(stack, datasets, window)
            keep = np.isin(_window_cells(stack, window, mask), chosen, assume_unique=True)
            if keep.any():
                part = table[keep].reset_index(drop=True)
                part.insert(0, ID_COLUMN, -(_window_cells(stack, window, mask)[keep] + 1))
                parts.append(part)
    frame = pd.concat(parts, ignore_index=True).sort_values(ID_COLUMN, ascending=False, ignore_index=True)
    if with_coordinates:
        longitude, latitude = _cell_lonlat(stack, -frame[ID_COLUMN].to_numpy() - 1)
        frame["decimallatitude"], frame["decimallongitude"] = latitude, longitude
    return frame


def thin_to_cells(presences: pd.DataFrame, stack, source: str) -> pd.DataFrame:
    """One presence per raster cell (the lowest gbifid of each); presences outside the grid or without
    coordinates are kept."""
    from rasterio.transform import rowcol

    if not all(c in presences.columns for c in COORDINATE_COLUMNS):
        raise DataContractError(
            f"presence_thinning=cell needs the presences' coordinates, but {source} has no "
            f"{' / '.join(COORDINATE_COLUMNS)} columns: add them, or set presence_thinning: none."
        )
    lat = pd.to_numeric(presences["decimallatitude"], errors="coerce").to_numpy(dtype=np.float64)
    lon = pd.to_numeric(presences["decimallongitude"], errors="coerce").to_numpy(dtype=np.float64)
    located = ~(np.isnan(lat) | np.isnan(lon))
    x, y = _lonlat_to_crs(stack.crs, lon[located], lat[located])
    rows, cols = (np.asarray(v, dtype=np.int64) for v in rowcol(stack.transform, x, y))
    inside = (rows >= 0) & (rows < stack.height) & (cols >= 0) & (cols < stack.width)
    cell = np.full(len(presences), -1, dtype=np.int64)
    at = np.flatnonzero(located)[inside]
    cell[at] = rows[inside] * stack.width + cols[inside]
    order = np.argsort(presences[ID_COLUMN].to_numpy(), kind="stable")
    first = ~pd.Series(cell[order]).duplicated().to_numpy() | (cell[order] < 0)
    keep = np.zeros(len(presences), dtype=bool)
    keep[order[first]] = True
    return presences[keep]


def with_background(
    features_path: Path,
    gold: pd.DataFrame,
    *,
    covariates: str | Path | None,
    n: int,
    seed: int,
    background_from: str,
    thinning: str,
    features_source: str,
    gold_source: str,
) -> tuple[pd.DataFrame, pd.DataFrame, int, Background]:
    """(feature rows, gold rows, rows of the feature table, what was added) of a presence-only species:
    its presences (thinned to one a cell when ``thinning`` is "cell") plus ``n`` background points (at most
    all there are) as extra feature rows labelled ABSENT in the gold rows.

    ``background_from``: "raster_cells", "feature_rows", or "auto": feature rows when at least
    `MIN_FEATURE_BACKGROUND` of them are not presences or the site has no rasters (``covariates`` None),
    else raster cells.
    """
    from biodiv_core.data.rasters import open_covariates
    from biodiv_core.data.streaming import read_features

    for wanted, option in (
        (background_from == FROM_RASTERS, "background_from=raster_cells"),
        (thinning == "cell", "presence_thinning=cell"),
    ):
        if wanted and covariates is None:
            raise ConfigError(
                f"{option} needs covariate rasters, but the site of {features_source} has none: add "
                "<site>-covariates rasters, or set it back to its default (see config/run.yml)."
            )
    presence_ids = exact_ids(gold[ID_COLUMN], gold_source, ID_COLUMN)
    candidates = (
        None if background_from == FROM_RASTERS else feature_candidates(features_path, features_source, presence_ids)
    )
    use_cells = covariates is not None and (
        background_from == FROM_RASTERS
        or (background_from != FROM_FEATURES and len(candidates) < MIN_FEATURE_BACKGROUND)
    )
    stack = open_covariates(covariates) if use_cells or thinning == "cell" else None
    if use_cells:
        frame, rows = read_features(features_path, gold[ID_COLUMN])
    else:
        ids = feature_background_ids(candidates, features_source, presence_ids, n, seed)
        frame, rows = read_features(features_path, pd.Series(np.concatenate([presence_ids, ids])))
    thinned = 0
    if thinning == "cell" and ID_COLUMN in frame.columns:
        joined = frame[frame[ID_COLUMN].isin(presence_ids)]
        dropped = np.setdiff1d(joined[ID_COLUMN].to_numpy(), thin_to_cells(joined, stack, features_source)[ID_COLUMN])
        gold, thinned = gold[~gold[ID_COLUMN].isin(dropped)], len(dropped)
    if use_cells:
        columns = [c for c in frame.columns if c not in (ID_COLUMN, *COORDINATE_COLUMNS)]
        cells = raster_background(stack, columns, n, seed, all(c in frame.columns for c in COORDINATE_COLUMNS))
        frame, ids = pd.concat([frame, cells], ignore_index=True), cells[ID_COLUMN].to_numpy()
    gold = pd.concat([gold, absent_rows(ids)], ignore_index=True)
    source = FROM_RASTERS if use_cells else FROM_FEATURES
    return frame, gold, rows, Background(len(ids), source, thinned, covariates_used=stack is not None)


def absent_rows(ids: np.ndarray) -> pd.DataFrame:
    """Gold rows labelling ``ids`` ABSENT: background points enter the data as such."""
    absent = next(name for name, value in CLASSES.items() if value == 0)
    return pd.DataFrame({ID_COLUMN: ids, TARGET_COLUMN: absent})
