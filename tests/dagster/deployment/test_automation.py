"""Retraining automation: the weekly schedule and the new-data-version sensor request exactly the right partitions."""

import datetime as dt

import dagster as dg
import pytest
from deployment_helpers import add_partitions, report

from biodiv_core import naming
from biodiv_dagster.deployment.automation import new_data_version_sensor, retrain_job, weekly_retrain_schedule
from biodiv_dagster.launcher.local import LocalStepLauncher
from biodiv_dagster.partitions import site_species_partitions

TRAINING_ASSETS = {"prepared_data", "best_parameters", "train_test_split", "scores", "deployable_model"}


def _schedule(instance, when):
    return weekly_retrain_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))


def test_weekly_schedule_requests_every_partition_once_per_week():
    with dg.instance_for_test() as instance:
        assert isinstance(_schedule(instance, dt.datetime(2026, 3, 2, 3, tzinfo=dt.UTC)), dg.SkipReason)
        partitions = add_partitions(instance, ["yellowstone", "everglades"], ["cygnus-buccinator", "lynx-canadensis"])

        monday = dt.datetime(2026, 3, 2, 3, tzinfo=dt.UTC)
        requests = _schedule(instance, monday)
        assert sorted(r.partition_key for r in requests) == sorted(partitions)
        assert len({r.run_key for r in requests}) == len(partitions)
        assert {r.tags["correlation_id"] for r in requests} == {"weekly-2026-W10"}  # one id for the whole retrain

        # A partition added later is retrained too; next week's run keys differ from this week's.
        instance.add_dynamic_partitions("species", ["haliaeetus-leucocephalus"])
        next_week = _schedule(instance, monday + dt.timedelta(days=7))
        assert len(next_week) == len(partitions) + 2
        assert not {r.run_key for r in next_week} & {r.run_key for r in requests}
    assert weekly_retrain_schedule.job_name == retrain_job.name


def test_retrain_job_materializes_the_training_assets_only():
    # Stand-ins shaped like the real graph (docs/contracts.md); the registration assets stay out of the job.
    parts = {"partitions_def": site_species_partitions}

    @dg.asset(**parts)
    def prepared_data(): ...

    @dg.multi_asset(
        specs=[dg.AssetSpec(k, deps=[prepared_data], **parts) for k in ("best_parameters", "train_test_split")]
    )
    def best_parameters_and_split(): ...

    @dg.asset(deps=["best_parameters", "train_test_split"], **parts)
    def scores(): ...

    @dg.asset(deps=[prepared_data, "best_parameters"], **parts)
    def deployable_model(): ...

    @dg.asset(deps=[deployable_model, scores], **parts)
    def registered_model(): ...

    defs = dg.Definitions(
        assets=[prepared_data, best_parameters_and_split, scores, deployable_model, registered_model],
        jobs=[retrain_job],
    )
    selected = defs.resolve_job_def("retrain_job").asset_layer.selected_asset_keys
    assert {key.to_user_string() for key in selected} == TRAINING_ASSETS


def _add_version(root, asset, version):
    folder = root / asset / str(version)
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text("gbifid\n1\n")


def _trained(instance, partition, features_version, species_version):
    """prepared_data as the training asset reports it: the data-store versions it read."""
    site = partition.split("|")[0]
    versions = {naming.features_asset_name(site): features_version, naming.species_asset_name(site): species_version}
    report(instance, "prepared_data", partition, input_data_versions=dg.MetadataValue.json(versions))


def _sensor(instance, root):
    resources = {"step_launcher": LocalStepLauncher(data_root=str(root))}
    result = new_data_version_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    return [] if isinstance(result, dg.SkipReason) else result


def test_new_data_version_requests_exactly_the_affected_partitions(tmp_path):
    root = tmp_path / "store"
    sites = ["yellowstone", "everglades"]
    for site in sites:
        _add_version(root, naming.features_asset_name(site), 1)
        _add_version(root, naming.species_asset_name(site), 1)
    with dg.instance_for_test() as instance:
        species = ["cygnus-buccinator", "lynx-canadensis"]
        partitions = add_partitions(instance, sites + ["glacier"], species)  # glacier has no data in the store
        yellowstone = [p for p in partitions if p.startswith("yellowstone|")]
        everglades = [p for p in partitions if p.startswith("everglades|")]
        for partition in yellowstone + everglades[:1]:  # everglades|lynx-canadensis never trained
            _trained(instance, partition, 1, 1)
        assert _sensor(instance, root) == []

        # New features version for yellowstone: both trained yellowstone partitions, nothing else.
        _add_version(root, naming.features_asset_name("yellowstone"), 2)
        requests = _sensor(instance, root)
        assert sorted(r.partition_key for r in requests) == sorted(yellowstone)
        assert {r.tags["correlation_id"] for r in requests} == {
            "data-yellowstone-training-features-2-yellowstone-training-species-1"
        }
        # Ticking again before the retrain finished asks again with the same run keys (launched once).
        assert {r.run_key for r in _sensor(instance, root)} == {r.run_key for r in requests}

        # The retrain of one partition lands: only the other one is still stale.
        _trained(instance, yellowstone[0], 2, 1)
        assert [r.partition_key for r in _sensor(instance, root)] == [yellowstone[1]]
        _trained(instance, yellowstone[1], 2, 1)
        assert _sensor(instance, root) == []

        # New species version for everglades: its trained partition only.
        _add_version(root, naming.species_asset_name("everglades"), 2)
        requests = _sensor(instance, root)
        assert [r.partition_key for r in requests] == everglades[:1]
        assert requests[0].run_key.startswith(f"data-{everglades[0]}-")
        assert requests[0].run_key.endswith("everglades-training-species-2")
    assert new_data_version_sensor.job_name == retrain_job.name


def test_retraining_starts_stopped_locally_and_running_in_production(monkeypatch):
    """No run of its own on a laptop; BIODIV_AUTOMATION=production (the production instance) turns both on."""
    from biodiv_core.errors import ConfigError
    from biodiv_dagster.deployment import automation
    from biodiv_dagster.deployment.sensor import registration_sensor
    from biodiv_dagster.habitat_automation import habitat_sensor

    monkeypatch.delenv("BIODIV_AUTOMATION", raising=False)
    assert weekly_retrain_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert new_data_version_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    # What follows a user's own materialization stays on: registering its model, mapping a deployment.
    assert registration_sensor.default_status == habitat_sensor.default_status == dg.DefaultSensorStatus.RUNNING

    monkeypatch.setenv("BIODIV_AUTOMATION", "production")
    assert automation._schedule_status() == dg.DefaultScheduleStatus.RUNNING
    assert automation._sensor_status() == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("BIODIV_AUTOMATION", "sometimes")
    with pytest.raises(ConfigError, match="BIODIV_AUTOMATION"):
        automation.retraining_runs_by_default()


def test_habitat_maps_follow_new_deployments_once():
    from biodiv_dagster.habitat_automation import DEPLOYMENT_STORAGE_ID_TAG, habitat_run_requests

    with dg.instance_for_test() as instance:
        [kept, deployed] = add_partitions(instance, ["everglades"], ["cygnus-buccinator", "lynx-canadensis"])
        report(instance, "batch_deployment", kept, deployed=False, deployed_version="1", correlation_id="c1")
        storage_id = report(instance, "batch_deployment", deployed, deployed=True, deployed_version="2")
        requests, cursor = habitat_run_requests(instance, None)
        assert [r.partition_key for r in requests] == [deployed]  # a kept version already has its map
        assert requests[0].tags[DEPLOYMENT_STORAGE_ID_TAG] == str(storage_id)
        assert int(requests[0].tags["dagster/priority"]) < 0  # behind training runs: models deploy first
        assert cursor == str(storage_id)
        assert habitat_run_requests(instance, cursor) == ([], cursor)

        # A map made in process (`biodiv run`) is not made again from an older cursor.
        instance.create_run_for_job(
            dg.GraphDefinition("stand_in", node_defs=[]).to_job(),
            tags={DEPLOYMENT_STORAGE_ID_TAG: str(storage_id)},
            status=dg.DagsterRunStatus.SUCCESS,
        )
        assert habitat_run_requests(instance, None)[0] == []
