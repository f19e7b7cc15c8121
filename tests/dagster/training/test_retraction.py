"""retraction.py on a real (test) instance: what the daemon's storage_failure_sensor does after a run failed on storage.

The `biodiv run` path is tested through the real process in tests/platform/test_reliability_cli_storage.py; here
the sensor the daemon evaluates for UI and backfill runs, and the rule that only storage failures retract.
"""

from __future__ import annotations

import dagster as dg

from biodiv_core import settings
from biodiv_dagster.deployment.rollback import storage_failure_sensor
from biodiv_dagster.retraction import (
    RETRACTED_TAG,
    STORAGE_ERROR_KEY,
    retract_if_storage_failure,
    usable_records,
)

PARTITIONS = dg.StaticPartitionsDefinition(["p"])


def _job(storage_error: bool):
    @dg.asset(partitions_def=PARTITIONS)
    def first(context) -> dg.MaterializeResult:
        folder = settings.storage_root() / "first" / context.run.run_id
        folder.mkdir(parents=True)
        (folder / "out.txt").write_text("done")
        return dg.MaterializeResult(metadata={"path": str(folder)})

    @dg.asset(partitions_def=PARTITIONS, deps=[first])
    def second() -> None:
        raise dg.Failure(
            description="Step score failed: cannot write /x (No space left on device): free space there",
            metadata={STORAGE_ERROR_KEY: storage_error},
            allow_retries=False,
        )

    return [first, second]


def _run(instance, storage_error: bool) -> dg.ExecuteInProcessResult:
    return dg.materialize(_job(storage_error), instance=instance, partition_key="p", raise_on_error=False)


def _latest_first(instance) -> dg.EventLogRecord | None:
    records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey("first"), asset_partitions=["p"])
    records = usable_records(instance, records_filter, limit=1)
    return records[0] if records else None


def test_the_sensor_retracts_a_storage_failure_and_readers_fall_back_to_the_last_good_run():
    with dg.instance_for_test() as instance:
        good = dg.materialize(_job(False)[:1], instance=instance, partition_key="p")
        failed = _run(instance, storage_error=True)
        assert not failed.success and _latest_first(instance).run_id == failed.run_id
        event = next(e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name=storage_failure_sensor.name,
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=failed.dagster_run,
        ).for_run_failure()
        storage_failure_sensor(context)

        assert instance.get_run_by_id(failed.run_id).tags[RETRACTED_TAG]
        assert not (settings.storage_root() / "first" / failed.run_id).exists()
        assert (settings.storage_root() / "first" / good.run_id / "out.txt").exists()
        assert _latest_first(instance).run_id == good.run_id  # the good run's output is the latest again
        [observation] = instance.fetch_observations(dg.AssetKey("first"), limit=5).records
        assert observation.asset_observation.metadata["retracted_run_id"].value == failed.run_id
        assert retract_if_storage_failure(instance, failed.run_id) == []  # once per run


def test_other_failures_keep_the_outputs_of_the_steps_that_succeeded():
    """Bad data or a crash is retried or fixed by the user; what finished before it is still a valid output."""
    with dg.instance_for_test() as instance:
        failed = _run(instance, storage_error=False)
        assert retract_if_storage_failure(instance, failed.run_id) == []
        assert _latest_first(instance).run_id == failed.run_id
        assert (settings.storage_root() / "first" / failed.run_id / "out.txt").exists()
