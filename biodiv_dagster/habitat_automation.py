"""The habitat map follows every deployment: one `habitat_job` run per `batch_deployment` that deployed a version.

The sensor walks `batch_deployment` events after its cursor (a storage id), as the registration sensor walks
`deployable_model` events, and requests a map for each event whose gate deployed its candidate (a kept
version already has its map). `biodiv run` / `main` call `habitat_run_requests` themselves after registering,
in process; the run tag `biodiv/batch_deployment_storage_id` keeps a later `biodiv ui` from mapping the same
deployment again. Only with the local step launcher: habitat_suitability reads the site's data locally.
"""

import dagster as dg

from biodiv_dagster.deployment.assets import PRIORITY_TAG
from biodiv_dagster.deployment.upstream import metadata_values
from biodiv_dagster.launcher.base import StepLauncher
from biodiv_dagster.launcher.local import LocalStepLauncher
from biodiv_dagster.partitions import site_species_partitions

HABITAT_JOB = "habitat_job"
WATCHED_ASSET = dg.AssetKey("batch_deployment")
DEPLOYMENT_STORAGE_ID_TAG = "biodiv/batch_deployment_storage_id"
BATCH_LIMIT = 100
# Maps queue behind training and registration runs (priority 0 and 1): in a backfill every model is deployed
# first and the maps follow, instead of each map holding a run slot a model is waiting for.
MAP_PRIORITY = "-1"

habitat_job = dg.define_asset_job(
    HABITAT_JOB,
    selection=dg.AssetSelection.assets("habitat_suitability"),
    partitions_def=site_species_partitions,
    description="Map the deployed model over the partition's site (run after each deployment by habitat_sensor).",
)


def already_mapped(instance: dg.DagsterInstance, storage_id: int) -> bool:
    """A habitat run for this deployment exists and did not fail."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={DEPLOYMENT_STORAGE_ID_TAG: str(storage_id)}), limit=5
    )
    failed = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    return any(record.dagster_run.status not in failed for record in records)


def habitat_run_requests(
    instance: dg.DagsterInstance, cursor: str | None, limit: int = BATCH_LIMIT
) -> tuple[list[dg.RunRequest], str | None]:
    """Run requests for the deployments after ``cursor`` that deployed a version, and the next cursor."""
    after = int(cursor) if cursor else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=WATCHED_ASSET, after_storage_id=after), limit=limit, ascending=True
    ).records
    requests = []
    for record in records:
        metadata = metadata_values(record.asset_materialization)
        partition = record.partition_key
        if not partition or not metadata.get("deployed") or already_mapped(instance, record.storage_id):
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"habitat-{partition}-{record.storage_id}",
                partition_key=partition,
                tags={
                    "correlation_id": str(metadata.get("correlation_id") or record.run_id),
                    DEPLOYMENT_STORAGE_ID_TAG: str(record.storage_id),
                    PRIORITY_TAG: MAP_PRIORITY,
                },
            )
        )
    return requests, str(records[-1].storage_id) if records else cursor


@dg.sensor(
    job=habitat_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Makes the habitat map of every newly deployed model (local step launcher only).",
)
def habitat_sensor(context: dg.SensorEvaluationContext, step_launcher: StepLauncher):
    if not isinstance(step_launcher, LocalStepLauncher):
        return dg.SkipReason("habitat_suitability reads the site's data locally: not with this step launcher.")
    requests, cursor = habitat_run_requests(context.instance, context.cursor)
    if requests:
        context.log.info(f"mapping {len(requests)} new deployment(s): {[r.partition_key for r in requests]}")
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def habitat_automation_definitions() -> dg.Definitions:
    return dg.Definitions(jobs=[habitat_job], sensors=[habitat_sensor])
