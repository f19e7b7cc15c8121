"""Retraining automation: a weekly retrain of every partition, and a retrain of exactly the partitions whose
input data got a new version in the data store.

Both request runs of `retrain_job` (the training assets up to deployable_model); the registration sensor
then registers and deploys what they produce. Dynamic partitions rule out
``build_schedule_from_partitioned_job``, so the schedule enumerates the partitions itself.

New data versions: prepared_data records the store versions it read (metadata ``features_version`` and
``species_version``); the sensor compares them with the store's latest versions. Run keys carry the version
pair, so a new version triggers one retrain per affected partition, however often the sensor ticks.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from biodiv_core import naming, settings
from biodiv_core.errors import BiodivError
from biodiv_dagster.deployment.upstream import metadata_values
from biodiv_dagster.partitions import site_species_partitions, split_partition_key

WEEKLY_CRON = "0 3 * * 1"  # Mondays 03:00 UTC

retrain_job = dg.define_asset_job(
    "retrain_job",
    # Everything deployable_model and scores are computed from (prepared_data, best_parameters, the split).
    selection=dg.AssetSelection.assets("deployable_model", "scores").upstream().materializable(),
    partitions_def=site_species_partitions,
    description="Retrain a partition: prepare, tune, score and train the deployable model.",
)


def all_partition_keys(instance: dg.DagsterInstance) -> list[str]:
    return [str(key) for key in site_species_partitions.get_partition_keys(dynamic_partitions_store=instance)]


@dg.schedule(
    cron_schedule=WEEKLY_CRON,
    job=retrain_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrain every site x species partition once a week (one run each, sharing a correlation id).",
)
def weekly_retrain_schedule(context: dg.ScheduleEvaluationContext):
    when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    week = when.strftime("%G-W%V")
    keys = all_partition_keys(context.instance)
    if not keys:
        return dg.SkipReason("No site x species partitions yet: run `biodiv sync` (or wait for the partition sensor).")
    return [
        dg.RunRequest(run_key=f"weekly-{week}-{key}", partition_key=key, tags={"correlation_id": f"weekly-{week}"})
        for key in keys
    ]


@dataclass(frozen=True)
class StalePartition:
    partition: str
    trained_on: tuple[int, int]  # (features_version, species_version) recorded by prepared_data
    latest: tuple[int, int]  # the store's latest versions now


def _latest_versions(data_root: Path, site: str) -> tuple[int, int] | None:
    from biodiv_core.datastore import resolve_version

    try:
        return (
            resolve_version(data_root, naming.features_asset_name(site)),
            resolve_version(data_root, naming.species_asset_name(site)),
        )
    except BiodivError:
        return None  # site not (or no longer) in the store: nothing to retrain from


def _recorded_versions(instance: dg.DagsterInstance, partition: str) -> tuple[int, int] | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("prepared_data"), asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None  # never trained: the weekly run or a manual backfill trains it first
    metadata = metadata_values(records[0].asset_materialization)
    try:
        return int(metadata["features_version"]), int(metadata["species_version"])
    except (KeyError, TypeError, ValueError):
        return None


def stale_partitions(instance: dg.DagsterInstance, data_root: Path, partitions: Iterable[str]) -> list[StalePartition]:
    """Partitions whose last prepared_data read an older features or species version than the store's latest."""
    latest_by_site: dict[str, tuple[int, int] | None] = {}
    stale = []
    for partition in partitions:
        site, _ = split_partition_key(partition)
        if site not in latest_by_site:
            latest_by_site[site] = _latest_versions(data_root, site)
        latest = latest_by_site[site]
        recorded = _recorded_versions(instance, partition)
        if latest is None or recorded is None:
            continue
        if latest[0] > recorded[0] or latest[1] > recorded[1]:
            stale.append(StalePartition(partition, recorded, latest))
    return stale


def data_version_run_requests(instance: dg.DagsterInstance, data_root: Path) -> list[dg.RunRequest]:
    requests = []
    for item in stale_partitions(instance, data_root, all_partition_keys(instance)):
        site, _ = split_partition_key(item.partition)
        versions = f"f{item.latest[0]}-s{item.latest[1]}"
        requests.append(
            dg.RunRequest(
                run_key=f"data-{item.partition}-{versions}",
                partition_key=item.partition,
                # Partitions retrained because of the same new site data share one correlation id.
                tags={"correlation_id": f"data-{site}-{versions}"},
            )
        )
    return requests


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains exactly the partitions whose features or species data got a new version in the data store.",
)
def new_data_version_sensor(context: dg.SensorEvaluationContext):
    requests = data_version_run_requests(context.instance, settings.data_root())
    if not requests:
        return dg.SkipReason("Every trained partition is on the latest data versions.")
    context.log.info(f"new data versions: retraining {[r.partition_key for r in requests]}")
    return requests
