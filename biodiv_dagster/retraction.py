"""A run that failed on a full or read-only disk does not leave its finished outputs looking like a good result.

A disk that fills in a later step (scores, deployable_model) finds the earlier steps of the same run done:
`prepared_data`, `best_parameters` and `train_test_split` materialized, their folders written. Left so, they are
the partition's "latest" — what the next run, the registration sensor and `biodiv run --json` read — although
the run that made them failed for a reason that may have cut them short too. So when such a run ends, each of
its materializations is retracted:

- its output folder is removed (local paths under the storage root only);
- an asset observation ``retracted`` (metadata: the run, the reason) is recorded for that asset and partition, so
  the asset's event history says why its latest materialization is not used, and an engine event on the run's
  page lists what was retracted (Dagster's own ``ASSET_FAILED_TO_MATERIALIZE`` event is not stored by the SQL
  event storages of Dagster OSS: ``can_store_asset_failure_events`` is False there);
- the run is tagged ``biodiv/outputs_retracted``, and every reader of "the latest materialization"
  (``usable_records``) skips that run's materializations, so the partition falls back to the last good one;
- its MLflow runs still RUNNING are ended FAILED, and all of them are tagged with the reason.

Dagster's own ``wipe_asset_partitions`` is not implemented for SQL event storage (SQLite, Postgres), and it
would wipe a partition's whole history, the earlier good runs included; hence the marker and the filter.
Who retracts: `biodiv run`/`main` after a failed in-process run, and the ``storage_failure_sensor`` for runs the
daemon launched (UI, backfills, sensors), both through `deployment/rollback.py` ``retract_and_withdraw``, which also
withdraws any model version registered from the retracted outputs.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import dagster as dg

logger = logging.getLogger(__name__)

STORAGE_ERROR_KEY = "storage_error"  # step failure metadata: the step failed on a full or read-only disk
RETRACTED_TAG = "biodiv/outputs_retracted"
RETRACTED = "storage_error"  # the tag's value (one value, so runs can be filtered by it)
MLFLOW_RETRACTED_TAG = "biodiv.outputs_retracted"
# How many older materializations a "latest" read looks through past retracted ones.
SCAN_WINDOW = 50


def storage_failure(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The description of the run's step failure caused by a full or read-only disk, else None."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data if entry.dagster_event else None
        user = data.user_failure_data if data else None
        flag = user.metadata.get(STORAGE_ERROR_KEY) if user and user.metadata else None
        if flag is not None and getattr(flag, "value", flag) is True:
            return user.description or "a step failed on a full or read-only disk"
    return None


def retract_if_storage_failure(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Retract the outputs of ``run_id`` if it failed on a full or read-only disk; the asset keys retracted.

    Never raises: the run's own failure is what the user must see (the instance may sit on the same full disk).
    """
    try:
        reason = storage_failure(instance, run_id)
        return retract_run_outputs(instance, run_id, reason) if reason else []
    except Exception as exc:
        logger.warning("could not retract the outputs of run %s: %s: %s", run_id, type(exc).__name__, exc)
        return []


def _materializations(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return [
        entry
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if entry.asset_materialization is not None
    ]


def retract_run_outputs(instance: dg.DagsterInstance, run_id: str, reason: str) -> list[str]:
    """Retract every materialization of ``run_id`` (see the module doc); the asset keys retracted. Once per run."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.tags.get(RETRACTED_TAG):
        return []
    # Tag first: from here on no reader takes the run's outputs, even while their folders are being removed.
    instance.add_run_tags(run_id, {RETRACTED_TAG: RETRACTED})
    retracted = []
    for entry in _materializations(instance, run_id):
        materialization = entry.asset_materialization
        removed = _remove_output(materialization)
        instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=materialization.asset_key,
                partition=materialization.partition,
                description=f"Retracted: run {run_id} failed on storage ({reason}); this output is not used.",
                metadata={"retracted_run_id": run_id, "reason": reason, "output_removed": removed},
            )
        )
        retracted.append(materialization.asset_key.to_user_string())
    if retracted:
        instance.report_engine_event(
            f"Retracted the outputs of this run ({', '.join(retracted)}): it failed on storage ({reason}).", run
        )
    _retract_mlflow_runs(run_id, reason)
    return retracted


def _remove_output(materialization: dg.AssetMaterialization) -> bool:
    """Remove the materialization's output folder if it is a local folder under the storage root; whether it is gone."""
    from biodiv_core import settings

    value = (materialization.metadata or {}).get("path")
    path = getattr(value, "value", value)
    if not isinstance(path, str) or "://" in path:
        return False  # no path, or a datastore URI (AzureML): not ours to delete from here
    folder = Path(path).resolve()
    if not folder.is_relative_to(settings.storage_root().resolve()):
        return False
    try:
        if folder.is_dir():
            shutil.rmtree(folder)
        else:
            folder.unlink(missing_ok=True)
    except OSError as exc:  # a read-only disk: the retraction tag still stops every reader
        logger.warning("could not remove %s of a retracted run: %s", folder, exc)
        return False
    return True


def _retract_mlflow_runs(run_id: str, reason: str) -> None:
    try:
        from mlflow import MlflowClient

        from biodiv_core import settings

        client = MlflowClient(settings.mlflow_tracking_uri())
        experiments = [e.experiment_id for e in client.search_experiments()]
        if not experiments:
            return
        for mlflow_run in client.search_runs(experiments, filter_string=f"tags.dagster_run_id = '{run_id}'"):
            client.set_tag(mlflow_run.info.run_id, MLFLOW_RETRACTED_TAG, reason[:5000])
            if mlflow_run.info.status == "RUNNING":
                client.set_terminated(mlflow_run.info.run_id, status="FAILED")
    except Exception as exc:  # never hide the run's own failure behind a tracking-store problem
        logger.warning("could not mark the MLflow runs of retracted run %s: %s: %s", run_id, type(exc).__name__, exc)


def retracted_runs(instance: dg.DagsterInstance, run_ids: Iterable[str | None]) -> set[str]:
    """Those of ``run_ids`` whose outputs were retracted."""
    ids = sorted({run_id for run_id in run_ids if run_id})
    if not ids:
        return set()
    filters = dg.RunsFilter(run_ids=ids, tags={RETRACTED_TAG: RETRACTED})
    return {record.dagster_run.run_id for record in instance.get_run_records(filters=filters, limit=len(ids))}


def usable(instance: dg.DagsterInstance, records: Sequence[dg.EventLogRecord]) -> list[dg.EventLogRecord]:
    """``records`` without the materializations of retracted runs (order kept)."""
    gone = retracted_runs(instance, (record.run_id for record in records))
    return [record for record in records if record.run_id not in gone]


def usable_records(
    instance: dg.DagsterInstance, records_filter: dg.AssetRecordsFilter, limit: int, ascending: bool = False
) -> list[dg.EventLogRecord]:
    """``instance.fetch_materializations`` without retracted runs' materializations: up to ``limit`` records."""
    records = instance.fetch_materializations(records_filter, limit=limit + SCAN_WINDOW, ascending=ascending).records
    return usable(instance, records)[:limit]
