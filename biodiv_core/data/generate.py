"""Synthetic GBIF-like sample data with a known truth, written in the data-store layout (DESIGN section 3).

Per site: points clustered in space (observers visit places, not a grid), environmental covariates
derived from a few smooth latent fields so they are spatially structured and correlated the way real
layers are (temperature falls with elevation and latitude, NDVI follows rain and warmth, land cover
follows NDVI, moisture and people). Per species: a niche, i.e. a logistic response to a few covariates
(linear terms, one quadratic optimum, a land-cover effect) giving the true presence probability, from
which PRESENT/ABSENT is drawn. The probability is written beside the data (``<site>-truth``) so tests
can compare a model's AUC with the Bayes-optimal one; training never reads it.

Everything is vectorised numpy and deterministic for a seed: the same arguments give byte-identical files.
The niche is a fixed function of the covariates, calibrated on a reference sample that does not depend on
``rows``, so 5,000 and 1,000,000 rows of the same seed describe the same species.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from biodiv_core.atomic import atomic_output_dir
from biodiv_core.data.landscape import (
    CATEGORICAL_COVARIATE,
    DEFAULT_SITES,
    DEFAULT_SPECIES,
    LAND_COVER,
    MIN_COVARIATES,
    NUMERIC_COVARIATES,
    REFERENCE_ROWS,
    covariates_at,
    make_landscape,
    make_niche,
    name_key,
    sample_points,
    select_covariates,
)
from biodiv_core.data.sample_rasters import SampleGrid, write_covariate_rasters, write_truth_surface
from biodiv_core.errors import ConfigError
from biodiv_core.naming import (
    covariates_asset_name,
    features_asset_name,
    slugify,
    species_asset_name,
    species_file_name,
    species_stem,
    truth_asset_name,
    validate_name,
)

# Small by default: tests and `make run` generate data often. 100 x 100 cells of ~1 km at the sample sites.
DEFAULT_RASTER_SIZE = 100
MAX_RASTER_SIZE = 20_000

# --------------------------------------------------------------------------- writing


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path, compression="snappy")
    else:
        pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def _write_features(table: pa.Table, folder: Path, site_slug: str, fmt: str, parts: int) -> list[Path]:
    paths = []
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    for i in range(parts):
        name = f"{site_slug}_features.{fmt}" if parts == 1 else f"part-{i:05d}.{fmt}"
        _write(table.slice(bounds[i], bounds[i + 1] - bounds[i]), folder / name, fmt)
        paths.append(folder / name)
    return paths


def _claim_targets(folders: list[Path], if_exists: str) -> bool:
    """Make way for a site's version folders; False when they all exist and ``if_exists`` is "skip"."""
    existing = [f for f in folders if f.exists()]
    if not existing:
        return True
    if if_exists == "error":
        raise ConfigError(
            f"Data store folder {existing[0]} already exists: choose another version (--version), another --root, "
            "or pass --if-exists overwrite|skip."
        )
    if if_exists == "skip" and len(existing) == len(folders):
        return False
    # Overwrite, or a partial earlier write under "skip": the data is deterministic, so write it all again.
    for folder in existing:
        shutil.rmtree(folder)
    return True


def generate_datastore(
    root: str | os.PathLike,
    sites: Sequence[str] = DEFAULT_SITES,
    species: Sequence[str] = DEFAULT_SPECIES,
    rows: int = 5000,
    seed: int = 0,
    version: int = 1,
    fmt: str = "csv",
    n_covariates: int = 12,
    gold_rows: int | None = None,
    parts: int = 1,
    if_exists: str = "error",
    raster_size: int = DEFAULT_RASTER_SIZE,
    presence_only: Sequence[str] = (),
) -> dict:
    """Write sample data for every site and species into a data store at ``root``; return a summary.

    ``rows`` points per site with ``n_covariates`` covariate columns (the last is the categorical
    ``land_cover``); ``gold_rows`` labelled points per species (default 80% of ``rows``, each species
    its own random subset); features as ``fmt`` (csv or parquet) in ``parts`` files; gold data always
    csv, as the contract names it. ``if_exists``: "error" (default), "overwrite" or "skip" a version
    folder that already exists. ``raster_size``: the site's covariate rasters and true surfaces are
    ``raster_size`` x ``raster_size`` cells and every point takes its cell's values; 0 writes no rasters
    and gives each point its own values. ``presence_only``: species (of ``species``) whose gold file keeps
    its PRESENT rows only, as most GBIF downloads are: the same presences, drawn from the true probability,
    without the ABSENT rows.
    """
    if rows < 10:
        raise ConfigError(f"rows={rows} is too small: generate at least 10 points per site.")
    if Path(root).exists() and not Path(root).is_dir():
        raise ConfigError(f"Data store root {root} is a file, not a folder: give a folder (it is created if missing).")
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"fmt={fmt!r} is not supported: use 'csv' or 'parquet'.")
    if n_covariates < MIN_COVARIATES:
        raise ConfigError(f"n_covariates={n_covariates} is too few: use at least {MIN_COVARIATES}.")
    if gold_rows is None:
        gold_rows = max(1, int(rows * 0.8))
    if not 1 <= gold_rows <= rows:
        raise ConfigError(f"gold_rows={gold_rows} must be between 1 and rows={rows}.")
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"version={version!r} must be a positive integer.")
    if not 1 <= parts <= rows:
        raise ConfigError(f"parts={parts} must be between 1 and rows={rows}.")
    if raster_size != 0 and not 2 <= raster_size <= MAX_RASTER_SIZE:
        raise ConfigError(f"raster_size={raster_size} must be 0 (no rasters) or between 2 and {MAX_RASTER_SIZE}.")
    if if_exists not in ("error", "overwrite", "skip"):
        raise ConfigError(f"if_exists={if_exists!r} must be 'error', 'overwrite' or 'skip'.")
    sites = [validate_name(s, "site") for s in sites]
    species = [validate_name(s, "species") for s in species]
    if not sites or not species:
        raise ConfigError("Give at least one site and one species.")
    presence_only = {validate_name(s, "species") for s in presence_only}
    if presence_only - set(species):
        raise ConfigError(
            f"presence_only species {sorted(presence_only - set(species))} are not among the species {species}: "
            "list them in the species too."
        )
    if len({species_file_name(s) for s in species}) != len(species):
        raise ConfigError(f"Species {species} map to the same gold file name: list each species once.")

    root = Path(root)
    summary: dict = {"root": str(root), "version": version, "rows": rows, "gold_rows": gold_rows, "sites": {}}
    options = _SiteOptions(
        rows=rows,
        seed=seed,
        version=version,
        fmt=fmt,
        n_covariates=n_covariates,
        gold_rows=gold_rows,
        parts=parts,
        if_exists=if_exists,
        raster_size=raster_size,
        presence_only=frozenset(presence_only),
    )
    for site in sites:
        summary["sites"][site] = _generate_site(root, site, species, options)
    return summary


@dataclass(frozen=True)
class _SiteOptions:
    """What every site of one `generate_datastore` call is written with (validated there)."""

    rows: int
    seed: int
    version: int
    fmt: str
    n_covariates: int
    gold_rows: int
    parts: int
    if_exists: str
    raster_size: int
    presence_only: frozenset[str]

    @property
    def n_extra(self) -> int:
        """Latent extra covariates beyond the named ones (and the categorical)."""
        return max(0, self.n_covariates - 1 - len(NUMERIC_COVARIATES))


def _point_values(land, grid, u, v, coordinates, rng, n_covariates):
    """Covariates at the points: their cells' values (and every cell's) when there is a grid."""
    if grid is None:
        return select_covariates(covariates_at(land, u, v, rng), n_covariates), None
    cell_rng = np.random.default_rng([rng.integers(2**32), 8])
    cells = select_covariates(covariates_at(land, *grid.cell_centres(), cell_rng), n_covariates)
    # The cell of the coordinates as written (rounded), so a reader of the file finds the same cell.
    index = grid.cell_of(*coordinates)
    return {k: values[index] for k, values in cells.items()}, cells


def _generate_site(root: Path, site: str, species: Sequence[str], options: _SiteOptions) -> dict:
    targets = {
        "features": root / features_asset_name(site) / str(options.version),
        "species": root / species_asset_name(site) / str(options.version),
        "truth": root / truth_asset_name(site) / str(options.version),
    }
    if options.raster_size:
        targets["covariates"] = root / covariates_asset_name(site) / str(options.version)
    info: dict = {kind: str(folder) for kind, folder in targets.items()} | {"species": {}}
    if not _claim_targets(list(targets.values()), options.if_exists):
        info["skipped"] = True
        return info

    land = make_landscape(site, options.seed, options.n_extra)
    reference_rng = np.random.default_rng([options.seed, name_key(site), 4])
    reference = covariates_at(land, *sample_points(land, REFERENCE_ROWS, reference_rng), reference_rng)
    reference = select_covariates(reference, options.n_covariates)

    rng = np.random.default_rng([options.seed, name_key(site), 5])
    u, v = sample_points(land, options.rows, rng)
    p = land.profile
    latitude = np.round(p.lat[0] + v * (p.lat[1] - p.lat[0]), 5)
    longitude = np.round(p.lon[0] + u * (p.lon[1] - p.lon[0]), 5)
    grid = SampleGrid(options.raster_size, land.profile) if options.raster_size else None
    values, cells = _point_values(land, grid, u, v, (longitude, latitude), rng, options.n_covariates)
    # GBIF ids: unique, increasing with gaps, int64 (larger than int32 to catch narrowing bugs).
    ids = 3_000_000_000 + np.cumsum(rng.integers(1, 5000, options.rows, dtype=np.int64))

    numeric = [k for k in values if k != CATEGORICAL_COVARIATE]
    columns = {"gbifID": ids, "decimalLatitude": latitude, "decimalLongitude": longitude}
    columns |= {k: values[k] for k in numeric}
    cover = pa.DictionaryArray.from_arrays(pa.array(values[CATEGORICAL_COVARIATE]), pa.array(LAND_COVER))
    features = pa.table(columns | {CATEGORICAL_COVARIATE: cover.cast(pa.string())})
    info |= {"rows": options.rows, "covariates": numeric + [CATEGORICAL_COVARIATE]}

    with ExitStack() as folders:
        tmp = {kind: folders.enter_context(atomic_output_dir(folder)) for kind, folder in targets.items()}
        features_tmp, species_tmp, truth_tmp = tmp["features"], tmp["species"], tmp["truth"]
        written = _write_features(features, features_tmp, slugify(site, "site"), options.fmt, options.parts)
        if grid is not None:
            rasters = write_covariate_rasters(tmp["covariates"], grid, cells)
            info["covariate_rasters"] = [str(targets["covariates"] / p.name) for p in rasters]
        info["feature_files"] = [str(targets["features"] / f.name) for f in written]
        for name in species:
            niche = make_niche(site, name, options.seed, reference, numeric)
            probability = niche.probability(values)
            sp_rng = np.random.default_rng([options.seed, name_key(site), name_key(name.lower()), 6])
            present = sp_rng.random(options.rows) < probability
            gold = np.sort(sp_rng.choice(options.rows, size=options.gold_rows, replace=False))
            if name in options.presence_only:  # the same draw, absences left out: presences sampled from the truth
                gold = gold[present[gold]]
            status = np.where(present[gold], "PRESENT", "ABSENT")
            gold_table = pa.table(
                {
                    "gbifID": ids[gold],
                    "species": pa.array([name] * len(gold)),
                    "basisOfRecord": pa.array(["HUMAN_OBSERVATION"] * len(gold)),
                    "occurrenceStatus": pa.array(status),
                }
            )
            _write(gold_table, species_tmp / species_file_name(name), "csv")
            truth = pa.table({"gbifid": ids, "probability": np.round(probability, 6)})
            _write(truth, truth_tmp / f"{species_stem(name)}_truth.csv", "csv")
            if grid is not None:
                surface = f"{species_stem(name)}_probability.tif"
                write_truth_surface(truth_tmp / surface, grid, niche.probability(cells))
                info["species"][name] = {"truth_surface": str(targets["truth"] / surface)}
            n_present = int(present[gold].sum())
            info["species"][name] = info["species"].get(name, {}) | {
                "gold_file": str(targets["species"] / species_file_name(name)),
                "truth_file": str(targets["truth"] / f"{species_stem(name)}_truth.csv"),
                "n_present": n_present,
                "n_absent": len(gold) - n_present,
                "presence_only": name in options.presence_only,
                "niche": sorted(niche.linear) + [niche.quadratic[0], CATEGORICAL_COVARIATE],
            }
    return info
