"""Read what upstream assets reported for a partition: materialization metadata from the Dagster instance.

Downstream code never guesses file paths (docs/contracts.md): the launcher's metadata says where things are.
"""

import dagster as dg

from biodiv_core.errors import NotFoundError
from biodiv_dagster.partitions import split_partition_key
from biodiv_dagster.retraction import usable, usable_records

# Run tag set by the registration sensor: the deployable_model event the run was requested for.
STORAGE_ID_TAG = "biodiv/deployable_model_storage_id"


def metadata_values(event: dg.AssetMaterialization) -> dict[str, object]:
    """Plain Python values of an event's metadata (MetadataValue wrappers unwrapped)."""
    return {key: getattr(value, "value", value) for key, value in (event.metadata or {}).items()}


def latest_record(
    instance: dg.DagsterInstance, asset: str, partition: str, storage_id: int | None = None
) -> dg.EventLogRecord:
    """The newest materialization of ``asset`` for ``partition`` (or exactly the one at ``storage_id``), leaving
    out those of runs whose outputs were retracted (retraction.py)."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(asset),
        asset_partitions=[str(partition)],
        storage_ids=[storage_id] if storage_id is not None else None,
    )
    records = usable_records(instance, records_filter, limit=1)
    if not records:
        which = f"with storage id {storage_id}" if storage_id is not None else "yet"
        raise NotFoundError(
            f"Asset {asset!r} has no materialization for partition {partition!r} {which}: "
            f"materialize {asset} for that partition first."
        )
    return records[0]


RUN_RECORD_WINDOW = 50  # recent materializations of a partition searched for one run's


def run_records(
    instance: dg.DagsterInstance, asset: str, partition: str, run_ids, window: int = RUN_RECORD_WINDOW
) -> dict[str, dg.EventLogRecord]:
    """The newest materialization of ``asset`` for ``partition`` made by each of ``run_ids`` (those that made one).

    What a run pairs with its own upstream output: the partition's latest may be another run's that ran at the same
    time (two `biodiv run`s of one partition). Read from the asset index (its storage ids are the ones the
    registration sensor and STORAGE_ID_TAG use; SQLite's per-run event logs number their events apart), once for
    all of ``run_ids``.
    """
    wanted = {run_id for run_id in run_ids if run_id}
    if not wanted:
        return {}
    records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)])
    newest: dict[str, dg.EventLogRecord] = {}
    for record in usable(instance, instance.fetch_materializations(records_filter, limit=window).records):
        if record.run_id in wanted:
            newest.setdefault(record.run_id, record)
    return newest


def run_record(
    instance: dg.DagsterInstance, asset: str, partition: str, run_id: str | None, window: int = RUN_RECORD_WINDOW
) -> dg.EventLogRecord | None:
    """The newest materialization of ``asset`` for ``partition`` made by run ``run_id`` (None if it made none)."""
    return run_records(instance, asset, partition, (run_id,), window).get(run_id) if run_id else None


def matching_record(
    instance: dg.DagsterInstance, asset: str, partition: str, correlation_id: str | None, window: int = 20
) -> dg.EventLogRecord:
    """The newest materialization of ``asset`` for ``partition`` from the same correlation id, else the newest.

    Pairs a model with the scores computed in the same training run even if another run scored later.
    """
    records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)])
    records = usable_records(instance, records_filter, limit=window)
    if not records:
        return latest_record(instance, asset, partition)  # raises the clear "not materialized" error
    if correlation_id:
        for record in records:
            if metadata_values(record.asset_materialization).get("correlation_id") == correlation_id:
                return record
    return records[0]


def require(metadata: dict[str, object], key: str, asset: str, partition: str) -> object:
    value = metadata.get(key)
    if value is None or value == "":
        raise NotFoundError(
            f"The {asset} materialization of partition {partition!r} has no {key!r} metadata "
            f"(it has {sorted(metadata)}): re-materialize {asset} with a step that reports it."
        )
    return value


def display_names(instance: dg.DagsterInstance, partition: str) -> tuple[str, str]:
    """Site and species as the user wrote them (prepared_data metadata), else the partition slugs."""
    site_slug, species_slug = split_partition_key(partition)
    try:
        metadata = metadata_values(latest_record(instance, "prepared_data", partition).asset_materialization)
    except NotFoundError:  # prepared_data not materialized here (e.g. reported runless): slugs are good names too
        metadata = {}
    return str(metadata.get("site") or site_slug), str(metadata.get("species") or species_slug)
