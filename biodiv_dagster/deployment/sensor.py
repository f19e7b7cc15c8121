"""Registration sensor: one register-and-deploy run per `deployable_model` materialization, per partition.

Not an ``@asset_sensor``: that reads only the newest event per tick and skips partitions materialized
between ticks. This walks every event after the cursor (a storage id) in order; run keys make a
re-evaluation from an old cursor request nothing twice.
"""

import dagster as dg

from biodiv_dagster.deployment.assets import register_and_deploy_job, serial_tags
from biodiv_dagster.deployment.upstream import STORAGE_ID_TAG, metadata_values
from biodiv_dagster.retraction import retracted_runs, storage_failure

WATCHED_ASSET = dg.AssetKey("deployable_model")
BATCH_LIMIT = 100


def run_key(partition: str, storage_id: int) -> str:
    return f"register-{partition}-{storage_id}"


def registration_run(instance: dg.DagsterInstance, storage_id: int) -> dg.DagsterRun | None:
    """A registration run for this materialization that did not fail (e.g. `biodiv run` did it in process).

    Run keys dedupe only the sensor's own requests; in-process runs carry the storage id tag instead.
    """
    records = instance.get_run_records(filters=dg.RunsFilter(tags={STORAGE_ID_TAG: str(storage_id)}), limit=5)
    failed = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    return next((r.dagster_run for r in records if r.dagster_run.status not in failed), None)


def already_registering(instance: dg.DagsterInstance, storage_id: int) -> bool:
    return registration_run(instance, storage_id) is not None


def _scored_in(instance: dg.DagsterInstance, record: dg.EventLogRecord, run: dg.DagsterRun) -> bool:
    """Whether the training run that made this model also materialized its partition's scores."""
    from biodiv_dagster.deployment.upstream import run_record

    return run_record(instance, "scores", str(record.partition_key), run.run_id) is not None


def registration_request(record: dg.EventLogRecord, run: dg.DagsterRun | None) -> dg.RunRequest:
    """The register-and-deploy run for one deployable_model materialization (of the training run ``run``)."""
    partition = str(record.partition_key)
    metadata = metadata_values(record.asset_materialization)
    correlation_id = metadata.get("correlation_id") or (run.tags.get("correlation_id") if run else None)
    return dg.RunRequest(
        run_key=run_key(partition, record.storage_id),
        partition_key=partition,
        tags={
            "correlation_id": str(correlation_id or record.run_id or run_key(partition, record.storage_id)),
            STORAGE_ID_TAG: str(record.storage_id),
            **serial_tags(partition),
        },
    )


def registration_run_requests(
    instance: dg.DagsterInstance, cursor: str | None, limit: int = BATCH_LIMIT
) -> tuple[list[dg.RunRequest], str | None]:
    """Run requests for the deployable_model events after ``cursor``, and the cursor to store next.

    Also what `biodiv run`/`main` call to register without a running daemon.
    """
    after = int(cursor) if cursor else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=WATCHED_ASSET, after_storage_id=after), limit=limit, ascending=True
    ).records
    requests, first_unfinished = [], None
    retracted = retracted_runs(instance, (record.run_id for record in records))
    for record in records:
        partition = record.partition_key
        if not partition or record.run_id in retracted or already_registering(instance, record.storage_id):
            continue  # an unpartitioned report cannot name a partition; a registered model is not registered again
        run = instance.get_run_by_id(record.run_id) if record.run_id else None
        if run is not None and run.status == dg.DagsterRunStatus.FAILURE and storage_failure(instance, run.run_id):
            continue  # failed on a full or read-only disk: its outputs are being retracted (retraction.py)
        if run is not None and not run.is_finished:
            # The training run is still going: its `scores` may come after `deployable_model` (steps run one at
            # a time). Register once it has ended; the cursor stays before this event until then.
            first_unfinished = first_unfinished or record.storage_id
            continue
        if run is not None and run.status == dg.DagsterRunStatus.FAILURE and not _scored_in(instance, record, run):
            continue  # its scores failed: the gate would read another run's scores for this model
        requests.append(registration_request(record, run))
    if first_unfinished is not None:
        # Events after it that were requested now are seen again next tick and skipped (already_registering).
        return requests, str(first_unfinished - 1)
    new_cursor = str(records[-1].storage_id) if records else cursor
    return requests, new_cursor


@dg.sensor(
    job=register_and_deploy_job,
    # A tick with nothing new costs ~0.01 s (benchmarks/partitions.py); a model waited up to 15 s for it before.
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers (and, past the quality gate, deploys) every new deployable_model materialization.",
)
def registration_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    requests, cursor = registration_run_requests(context.instance, context.cursor)
    if requests:
        context.log.info(f"requesting registration of {len(requests)} model(s): {[r.partition_key for r in requests]}")
    return dg.SensorResult(run_requests=requests, cursor=cursor)
