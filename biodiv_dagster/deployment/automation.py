"""Retraining automation: a weekly retrain of every partition, and a retrain of exactly the partitions whose
input data got a new version in the data store.

Both request runs of `retrain_job` (the training assets up to deployable_model); the registration sensor
then registers and deploys what they produce. Dynamic partitions rule out
``build_schedule_from_partitioned_job``, so the schedule enumerates the partitions itself.

New data versions: prepared_data records the data-store versions it read (metadata ``input_data_versions``,
``{"<site>-training-features": 2, "<site>-training-species": 1}``); the sensor compares them with the latest
versions the step launcher resolves (local store or AzureML data assets). Run keys carry the versions, so a
new version triggers one retrain per affected partition, however often the sensor ticks.
"""

import datetime as dt
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dagster as dg

from biodiv_core.errors import BiodivError, ConfigError
from biodiv_dagster.deployment.upstream import metadata_values
from biodiv_dagster.launcher.base import StepLauncher
from biodiv_dagster.partitions import site_species_partitions
from biodiv_dagster.retraction import usable_records

WEEKLY_CRON = "0 3 * * 1"  # Mondays 03:00 UTC
# Retraining on its own is for a production instance: on a laptop the schedule and the new-data sensor start
# stopped (turn them on in the UI, or start Dagster with BIODIV_AUTOMATION=production).
AUTOMATION_ENV = "BIODIV_AUTOMATION"
AUTOMATION_MODES = ("local", "production")


def retraining_runs_by_default() -> bool:
    """Whether the retrain schedule and sensor start running (``BIODIV_AUTOMATION=production``) or stopped."""
    mode = (os.environ.get(AUTOMATION_ENV) or "local").strip().lower()
    if mode not in AUTOMATION_MODES:
        raise ConfigError(f"{AUTOMATION_ENV}={mode!r} is not one of {', '.join(AUTOMATION_MODES)}.")
    return mode == "production"


def _schedule_status() -> dg.DefaultScheduleStatus:
    running = retraining_runs_by_default()
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


def _sensor_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if retraining_runs_by_default() else dg.DefaultSensorStatus.STOPPED


VERSIONS_KEY = "input_data_versions"  # prepared_data metadata: {data asset name: version read}

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
    default_status=_schedule_status(),
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
    trained_on: dict[str, int]  # data asset -> version prepared_data read (its `input_data_versions` metadata)
    latest: dict[str, int]  # data asset -> the store's latest version now


def _recorded_versions(instance: dg.DagsterInstance, partition: str) -> dict[str, int] | None:
    records = usable_records(  # a retracted prepared_data (retraction.py) did not train the partition
        instance, dg.AssetRecordsFilter(asset_key=dg.AssetKey("prepared_data"), asset_partitions=[partition]), limit=1
    )
    if not records:
        return None  # never trained: the weekly run or a manual backfill trains it first
    versions = metadata_values(records[0].asset_materialization).get(VERSIONS_KEY)
    try:
        return {str(asset): int(version) for asset, version in dict(versions).items()}
    except (TypeError, ValueError):
        return None  # an old materialization without the versions: nothing to compare


def stale_partitions(
    instance: dg.DagsterInstance, latest_version: Callable[[str], int], partitions: Iterable[str]
) -> list[StalePartition]:
    """Partitions whose last prepared_data read an older version of an input than ``latest_version(asset)``."""
    cache: dict[str, int | None] = {}

    def latest(asset: str) -> int | None:
        if asset not in cache:
            try:
                cache[asset] = int(latest_version(asset))
            except BiodivError:
                cache[asset] = None  # gone from the store: nothing to retrain from
        return cache[asset]

    stale = []
    for partition in partitions:
        recorded = _recorded_versions(instance, partition)
        if not recorded:
            continue
        now = {asset: latest(asset) for asset in recorded}
        if any(version is None for version in now.values()):
            continue
        if any(now[asset] > recorded[asset] for asset in recorded):
            stale.append(StalePartition(partition, recorded, now))
    return stale


def data_version_run_requests(
    instance: dg.DagsterInstance, latest_version: Callable[[str], int]
) -> list[dg.RunRequest]:
    requests = []
    for item in stale_partitions(instance, latest_version, all_partition_keys(instance)):
        versions = "-".join(f"{asset}-{version}" for asset, version in sorted(item.latest.items()))
        requests.append(
            dg.RunRequest(
                run_key=f"data-{item.partition}-{versions}",
                partition_key=item.partition,
                # Partitions retrained because of the same new data versions share one correlation id.
                tags={"correlation_id": f"data-{versions}"},
            )
        )
    return requests


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=60,
    default_status=_sensor_status(),
    description="Retrains exactly the partitions whose features or species data got a new version in the data store.",
)
def new_data_version_sensor(context: dg.SensorEvaluationContext, step_launcher: StepLauncher):
    # The launcher resolves versions where prep reads them: the local store or AzureML data assets.
    requests = data_version_run_requests(context.instance, lambda asset: step_launcher.data_input(asset)[1])
    if not requests:
        return dg.SkipReason("Every trained partition is on the latest data versions.")
    context.log.info(f"new data versions: retraining {[r.partition_key for r in requests]}")
    return requests
