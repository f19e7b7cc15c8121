"""Keep the site x species partitions in step with config and the data store (DESIGN section 4).

A partition exists for every site of ``config/sites.csv`` that has a ``<site>-training-features``
asset in the data store, crossed with every species of ``config/candidate_species.csv`` that has a
gold file (``<stem>_golddata.csv``) in the species asset of at least one of those sites. Sync only
ever *adds* keys: history of a species dropped from config stays visible.

Partition keys are slugs; the step needs the real names (the gold file name comes from the species
name). The slug -> name mapping is stored in ``$DAGSTER_HOME/partition_names.json`` next to the
instance that holds the partitions; `resolve_names` reads it, falling back to the config files.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from biodiv_core import settings
from biodiv_core.atomic import file_lock
from biodiv_core.errors import ConfigError, NotFoundError
from biodiv_core.naming import features_asset_name, slugify, species_asset_name, species_file_name
from biodiv_dagster.partitions import SITE_DIMENSION, SPECIES_DIMENSION, site_partitions, species_partitions

NAMES_FILE = "partition_names.json"


@dataclass
class SyncPlan:
    """What the config and the data store say should exist (slug -> display name)."""

    sites: dict[str, str] = field(default_factory=dict)
    species: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # why a configured name got no partition


@dataclass
class SyncResult:
    plan: SyncPlan
    added_sites: list[str]
    added_species: list[str]


def read_name_column(path: Path, column: str) -> list[str]:
    """Names from one column of a config CSV (header required, blank lines and duplicates dropped)."""
    if not path.is_file():
        raise ConfigError(
            f"Config file {path} is missing: create it with a header line '{column}' and one name a line."
        )
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        if column not in fields:
            raise ConfigError(
                f"Config file {path} has no column {column!r} (columns: {reader.fieldnames}): "
                f"its first line must be '{column}'."
            )
        names = [(row.get(fields[column]) or "").strip() for row in reader]
    return list(dict.fromkeys(name for name in names if name))


def plan_sync(config_dir: Path | None = None, data_root: Path | None = None) -> SyncPlan:
    """Configured sites and species that have data (slug -> name); the rest are listed in ``skipped``."""
    from biodiv_core.data import datastore

    config_dir = config_dir or settings.config_dir()
    root = data_root or settings.data_root()
    plan = SyncPlan()
    for site in read_name_column(config_dir / "sites.csv", "site"):
        if datastore.list_versions(root, features_asset_name(site)):
            plan.sites[slugify(site, "site")] = site
        else:
            plan.skipped.append(f"site {site!r}: no {features_asset_name(site)} asset in {root}")
    species_dirs = []
    for site in plan.sites.values():
        versions = datastore.list_versions(root, species_asset_name(site))
        if versions:
            species_dirs.append(root / species_asset_name(site) / str(versions[-1]))
    for species in read_name_column(config_dir / "candidate_species.csv", "species"):
        file_name = species_file_name(species)
        if any((folder / file_name).is_file() for folder in species_dirs):
            plan.species[slugify(species)] = species
        else:
            plan.skipped.append(f"species {species!r}: no {file_name} in the latest species asset of any synced site")
    return plan


# --- slug -> display name ----------------------------------------------------------------------


def _names_path() -> Path:
    return settings.dagster_home() / NAMES_FILE


def load_names() -> dict[str, dict[str, str]]:
    path = _names_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}): delete it and run `biodiv sync`.") from exc
    return {
        SITE_DIMENSION: dict(data.get(SITE_DIMENSION, {})),
        SPECIES_DIMENSION: dict(data.get(SPECIES_DIMENSION, {})),
    }


def record_names(sites: dict[str, str], species: dict[str, str]) -> None:
    """Merge slug -> name pairs into the names file (atomic replace; existing names are kept)."""
    names = load_names()
    changed = False
    for dimension, new in ((SITE_DIMENSION, sites), (SPECIES_DIMENSION, species)):
        for slug, name in new.items():
            if names[dimension].get(slug) != name:
                names[dimension][slug] = name
                changed = True
    if not changed:
        return
    path = _names_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(names, indent=2, sort_keys=True))
    os.replace(tmp, path)


def resolve_names(site_slug: str, species_slug: str) -> tuple[str, str]:
    """(site name, species name) of a partition: the names file, else the config files.

    Site folders in the data store are slugs, so an unknown site falls back to its slug; a species
    must be known by name (its gold file name is derived from the name, not the slug).
    """
    names = load_names()
    site = names[SITE_DIMENSION].get(site_slug)
    species = names[SPECIES_DIMENSION].get(species_slug)
    if site is None or species is None:
        config_dir = settings.config_dir()
        if site is None:
            site = _from_config(config_dir / "sites.csv", "site", site_slug) or site_slug
        if species is None:
            species = _from_config(config_dir / "candidate_species.csv", "species", species_slug)
    if species is None:
        raise NotFoundError(
            f"Species partition {species_slug!r} has no known species name (not in {_names_path()} nor in "
            "config/candidate_species.csv): add the species to the config and run `biodiv sync`."
        )
    return site, species


def _from_config(path: Path, column: str, slug: str) -> str | None:
    try:
        names = read_name_column(path, column)
    except ConfigError:
        return None
    return next((name for name in names if slugify(name, column) == slug), None)


# --- applying a plan ---------------------------------------------------------------------------


def partition_requests(instance: dg.DagsterInstance, plan: SyncPlan) -> tuple[list[str], list[str]]:
    """Site and species keys of the plan that the instance does not have yet."""
    have_sites = set(instance.get_dynamic_partitions(site_partitions.name))
    have_species = set(instance.get_dynamic_partitions(species_partitions.name))
    return (
        [slug for slug in plan.sites if slug not in have_sites],
        [slug for slug in plan.species if slug not in have_species],
    )


def sync_partitions(instance: dg.DagsterInstance, plan: SyncPlan | None = None) -> SyncResult:
    """Add the planned partitions to ``instance`` now (what `biodiv sync` does); never deletes."""
    plan = plan or plan_sync()
    # Several `biodiv run`/`main` workers may add partitions at once: without the lock, two inserts of one new
    # site fail with a UNIQUE constraint error and concurrent names-file updates lose each other's names.
    with _sync_lock():
        record_names(plan.sites, plan.species)
        new_sites, new_species = partition_requests(instance, plan)
        if new_sites:
            instance.add_dynamic_partitions(site_partitions.name, new_sites)
        if new_species:
            instance.add_dynamic_partitions(species_partitions.name, new_species)
    return SyncResult(plan=plan, added_sites=new_sites, added_species=new_species)


@contextlib.contextmanager
def _sync_lock() -> Iterator[None]:
    """One process at a time per DAGSTER_HOME adds partitions and writes the names file."""
    with file_lock(_names_path().with_suffix(".lock")):
        yield


def add_partition(instance: dg.DagsterInstance, site: str, species: str) -> tuple[str, str]:
    """Add one (site, species) partition by name, recording the names; returns the slugs."""
    site_slug, species_slug = slugify(site, "site"), slugify(species)
    sync_partitions(instance, SyncPlan(sites={site_slug: site}, species={species_slug: species}))
    return site_slug, species_slug


@dg.sensor(
    name="partition_sync_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds site and species partitions found in config/*.csv and the data store (never deletes).",
)
def partition_sync_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    plan = plan_sync()
    record_names(plan.sites, plan.species)
    new_sites, new_species = partition_requests(context.instance, plan)
    requests = []
    if new_sites:
        requests.append(site_partitions.build_add_request(new_sites))
    if new_species:
        requests.append(species_partitions.build_add_request(new_species))
    if plan.skipped:
        context.log.info("not synced: " + "; ".join(plan.skipped))
    return dg.SensorResult(dynamic_partitions_requests=requests)
