"""Restarts: the registration sensor's cursor survives a daemon restart; nothing is skipped, nothing repeated.

Emulated at the sensor / run-key level (a real `dagster-daemon` start costs ~15 s and each daemon-launched run
another ~6 s on this machine): the "daemon" ticks the real sensor against the persistent instance on
DAGSTER_HOME, stores its cursor in the instance's key-value storage and launches each request as a run
tagged with its run key (what the daemon does: a run key that already has a run is never launched again).
A restart is a new DagsterInstance from the same DAGSTER_HOME. A 6-partition backfill is registered across
it: 3 partitions before the stop, 3 finishing while the daemon is down, plus a crash between launching runs
and saving the cursor (a re-tick from the stale cursor).
"""

import dagster as dg
import pytest
from deployment_helpers import add_partitions, copy_model, report_trained, save_model

from biodiv_core import naming
from biodiv_dagster.deployment.assets import QualityGate, batch_deployment, register_and_deploy_job, registered_model
from biodiv_dagster.deployment.local import LocalDeploymentBackend
from biodiv_dagster.deployment.sensor import registration_sensor
from biodiv_dagster.instance import get_instance
from biodiv_dagster.partitions import split_partition_key

CURSOR_KEY = "biodiv-test/registration_sensor_cursor"
RUN_KEY_TAG = "dagster/run_key"


class Daemon:
    """What the sensor daemon does per tick, against whatever instance it was started with."""

    def __init__(self, instance):
        self.instance = instance
        defs = dg.Definitions(
            assets=[registered_model, batch_deployment],
            jobs=[register_and_deploy_job],
            resources={"deployment_backend": LocalDeploymentBackend(), "quality_gate": QualityGate(auc_floor=0.5)},
        )
        self.job = defs.resolve_job_def(registration_sensor.job_name)

    def stored_cursor(self):
        return self.instance.run_storage.get_cursor_values({CURSOR_KEY}).get(CURSOR_KEY)

    def evaluate(self, cursor):
        result = registration_sensor(dg.build_sensor_context(instance=self.instance, cursor=cursor))
        return result.run_requests, result.cursor

    def launch(self, requests):
        launched = []
        for request in requests:
            if self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key})):
                continue  # the daemon skips a run key it has launched before
            result = self.job.execute_in_process(
                instance=self.instance,
                partition_key=request.partition_key,
                tags={**request.tags, RUN_KEY_TAG: request.run_key},
            )
            assert result.success
            launched.append(request.partition_key)
        return launched

    def tick(self):
        requests, cursor = self.evaluate(self.stored_cursor())
        launched = self.launch(requests)
        self.instance.run_storage.set_cursor_values({CURSOR_KEY: cursor or ""})
        return launched


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "lgbm_gbif_model"
    save_model(folder)
    return folder


def test_registration_across_a_daemon_restart_skips_nothing_and_repeats_nothing(model_dir, tmp_path):
    instance = get_instance()
    partitions = add_partitions(instance, ["everglades", "yellowstone"], ["cygnus-buccinator", "lynx-canadensis", "a"])
    assert len(partitions) == 6
    first, second = partitions[:3], partitions[3:]

    def train(instance, batch):
        for partition in batch:
            folder = copy_model(model_dir, tmp_path / partition.replace("|", "_"))
            report_trained(instance, partition, folder, 0.8, f"cid-{partition}")

    # Before the stop: three partitions trained and registered.
    daemon = Daemon(instance)
    train(instance, first)
    assert sorted(daemon.tick()) == sorted(first)
    cursor_before_stop = daemon.stored_cursor()
    assert daemon.tick() == []  # nothing new

    # Daemon stopped (instance dropped); three more partitions finish training meanwhile.
    del daemon, instance
    train(get_instance(), second)

    # Restart: a new instance on the same DAGSTER_HOME picks the cursor up where it was.
    restarted = Daemon(get_instance())
    assert restarted.stored_cursor() == cursor_before_stop
    # A crash between launching and saving the cursor re-evaluates from an old cursor: the registered three are not
    # requested again (their registration runs exist); run keys would stop a repeat anyway.
    stale_requests, _ = restarted.evaluate(None)
    assert sorted(r.partition_key for r in stale_requests) == sorted(second)
    assert sorted(restarted.launch(stale_requests)) == sorted(second)
    assert restarted.tick() == [] and restarted.tick() == []

    # Every partition registered exactly once, and deployed.
    instance = get_instance()
    records = instance.fetch_materializations(dg.AssetKey("registered_model"), limit=100).records
    assert sorted(r.partition_key for r in records) == sorted(partitions)
    from mlflow import MlflowClient

    client = MlflowClient(registry_uri=LocalDeploymentBackend().backend().tracking_uri)
    for partition in partitions:
        name = naming.model_name(*split_partition_key(partition))
        assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
        assert LocalDeploymentBackend().deployed_version(name).version == "1"
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="register_and_deploy_job"))
    assert len(runs) == 6 and all(run.is_success for run in runs)
