"""Registration sensor: every deployable_model materialization is registered once, whatever the tick timing."""

import dagster as dg
import pytest
from deployment_helpers import add_partitions, copy_model, report_trained, save_model

from biodiv_core import naming
from biodiv_dagster.deployment.assets import (
    SERIAL_TAG,
    QualityGate,
    batch_deployment,
    register_and_deploy_job,
    registered_model,
)
from biodiv_dagster.deployment.local import LocalDeploymentBackend
from biodiv_dagster.deployment.sensor import registration_sensor
from biodiv_dagster.deployment.upstream import STORAGE_ID_TAG
from biodiv_dagster.partitions import split_partition_key


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "lgbm_gbif_model"
    save_model(folder)
    return folder


def _tick(instance, cursor):
    result = registration_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    return result.run_requests, result.cursor


def _execute(instance, request):
    """Run what the daemon would launch for a request (same assets, partition and tags)."""
    defs = dg.Definitions(
        assets=[registered_model, batch_deployment],
        jobs=[register_and_deploy_job],
        resources={"deployment_backend": LocalDeploymentBackend(), "quality_gate": QualityGate(auc_floor=0.7)},
    )
    job = defs.resolve_job_def(registration_sensor.job_name)
    result = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags)
    assert result.success
    # Queued one at a time per partition (config/dagster.yaml), ahead of training runs.
    assert result.dagster_run.tags[SERIAL_TAG] == request.partition_key
    assert result.dagster_run.tags["dagster/priority"] == "1"


def test_partitions_materialized_between_ticks_are_all_registered_once(model_dir, tmp_path):
    with dg.instance_for_test() as instance:
        partitions = add_partitions(instance, ["yellowstone"], ["cygnus-buccinator", "haliaeetus-leucocephalus"])
        partitions += add_partitions(instance, ["everglades"], ["lynx-canadensis"])
        assert _tick(instance, None) == ([], None)

        # Three partitions finish training between two ticks.
        storage_ids = {}
        for i, partition in enumerate(partitions):
            folder = copy_model(model_dir, tmp_path / f"m{i}")
            storage_ids[partition] = report_trained(instance, partition, folder, 0.8 + i / 100, f"cid-{i}")
        requests, cursor = _tick(instance, None)
        assert sorted(r.partition_key for r in requests) == sorted(partitions)
        assert {r.run_key for r in requests} == {f"register-{p}-{storage_ids[p]}" for p in partitions}
        assert {r.tags["correlation_id"] for r in requests} == {"cid-0", "cid-1", "cid-2"}
        assert {r.tags[STORAGE_ID_TAG] for r in requests} == {str(s) for s in storage_ids.values()}
        assert cursor == str(max(storage_ids.values()))

        # Nothing new: no requests, cursor kept.
        assert _tick(instance, cursor) == ([], cursor)
        # Re-evaluated from an old cursor: the same run keys, so the daemon launches nothing twice.
        replay, _ = _tick(instance, None)
        assert {r.run_key for r in replay} == {r.run_key for r in requests}

        for request in requests:
            _execute(instance, request)
        for request in replay:  # even if the runs were executed again, the registry gets no duplicates
            _execute(instance, request)
        backend = LocalDeploymentBackend()
        from mlflow import MlflowClient

        client = MlflowClient(registry_uri=backend.backend().tracking_uri)
        for partition in partitions:
            name = naming.model_name(*split_partition_key(partition))
            assert len(client.search_model_versions(f"name = '{name}'")) == 1
            assert backend.deployed_version(name).version == "1"


def test_two_materializations_of_one_partition_register_each_and_the_gate_keeps_the_better(model_dir, tmp_path):
    with dg.instance_for_test() as instance:
        (partition,) = add_partitions(instance, ["everglades"], ["cygnus-buccinator"])
        good = report_trained(instance, partition, copy_model(model_dir, tmp_path / "good"), 0.9, "good")
        worse = report_trained(instance, partition, copy_model(model_dir, tmp_path / "worse"), 0.8, "worse")
        requests, cursor = _tick(instance, None)
        assert [int(r.tags[STORAGE_ID_TAG]) for r in requests] == [good, worse]  # in materialization order
        for request in requests:
            _execute(instance, request)

        name = naming.model_name("everglades", "cygnus-buccinator")
        deployed = LocalDeploymentBackend().deployed_version(name)
        assert (deployed.version, deployed.roc_auc) == ("1", 0.9)  # version 2 (0.8) was registered, not deployed
        last = instance.fetch_materializations(dg.AssetKey("batch_deployment"), limit=1).records[0]
        metadata = last.asset_materialization.metadata
        assert metadata["deployed"].value is False
        assert metadata["candidate_version"].value == "2"
        assert "worse than the deployed version's 0.9000" in metadata["reason"].value

        # A later, batched tick sees only what is new.
        newer = report_trained(instance, partition, copy_model(model_dir, tmp_path / "newer"), 0.95, "newer")
        requests, _ = _tick(instance, cursor)
        assert [r.run_key for r in requests] == [f"register-{partition}-{newer}"]


def test_a_model_registered_in_process_is_not_requested_again(model_dir, tmp_path):
    """`biodiv run` registers in process; the sensor, started later (first `biodiv ui`), must not do it twice."""
    with dg.instance_for_test() as instance:
        [first, second] = add_partitions(instance, ["yellowstone"], ["cygnus-buccinator", "lynx-canadensis"])
        for i, partition in enumerate((first, second)):
            report_trained(instance, partition, copy_model(model_dir, tmp_path / f"m{i}"), 0.8, f"cid-{i}")
        requests, _ = _tick(instance, None)
        _execute(instance, next(r for r in requests if r.partition_key == first))  # as biodiv run does
        again, _ = _tick(instance, None)  # a fresh sensor: no cursor yet
        assert [r.partition_key for r in again] == [second]


def test_a_model_whose_run_failed_before_its_scores_is_not_registered():
    """The training run made deployable_model, then its scores step failed: registering that model would gate it
    against another run's scores. A run that scored it too is registered."""
    from biodiv_dagster.deployment.sensor import registration_run_requests
    from biodiv_dagster.partitions import site_species_partitions

    fail = {"scores": True}

    @dg.asset(name="deployable_model", partitions_def=site_species_partitions)
    def model():
        return dg.MaterializeResult(metadata={"model_uri": "file:///nowhere"})

    @dg.asset(name="scores", partitions_def=site_species_partitions, deps=[model])
    def scores():
        if fail["scores"]:
            raise RuntimeError("scores step failed")
        return dg.MaterializeResult(metadata={"roc_auc": 0.8})

    with dg.instance_for_test() as instance:
        [partition] = add_partitions(instance, ["everglades"], ["lynx-canadensis"])
        job = dg.Definitions(assets=[model, scores]).resolve_implicit_global_asset_job_def()
        failed = job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)
        assert not failed.success
        assert registration_run_requests(instance, None)[0] == []
        fail["scores"] = False
        scored = job.execute_in_process(instance=instance, partition_key=partition)
        from biodiv_dagster.deployment.upstream import run_record

        [request] = registration_run_requests(instance, None)[0]  # the scored run's model, and only that one
        assert request.tags[STORAGE_ID_TAG] == str(
            run_record(instance, "deployable_model", partition, scored.run_id).storage_id
        )
