"""Local deployment backend (MLflow registry + endpoint records) and the registered_model/batch_deployment assets."""

import json

import dagster as dg
import pytest
from deployment_helpers import add_partitions, copy_model, report, report_trained, save_model

from biodiv_core import naming, settings
from biodiv_core.errors import ConfigError, NotFoundError
from biodiv_dagster.deployment.assets import QualityGate, batch_deployment, registered_model
from biodiv_dagster.deployment.local import LocalDeploymentBackend


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "lgbm_gbif_model"
    save_model(folder)
    return folder


def test_local_backend_registers_deploys_and_records_the_endpoint(model_dir, tmp_path):
    backend = LocalDeploymentBackend()
    name = naming.model_name("yellowstone", "Cygnus buccinator")
    assert backend.deployed_version(name) is None

    first = backend.register(str(model_dir), name, {"roc_auc": 0.81, "correlation_id": "c1", "partition": None})
    again = backend.register(str(model_dir), name, {"roc_auc": 0.81, "correlation_id": "c1"})
    assert again == first  # same source twice: one version
    second_dir = copy_model(model_dir, tmp_path / "second")
    second = backend.register(str(second_dir), name, {"roc_auc": 0.9})
    assert int(second) == int(first) + 1

    from mlflow import MlflowClient

    tags = MlflowClient(registry_uri=settings.mlflow_tracking_uri()).get_model_version(name, first).tags
    assert tags == {"roc_auc": "0.81", "correlation_id": "c1"}  # None values dropped

    endpoint = naming.endpoint_name("yellowstone", "Cygnus buccinator")
    info = backend.deploy(name, first, endpoint, "yellowstone", "Cygnus buccinator")
    deployed = backend.deployed_version(name)
    assert (deployed.version, deployed.roc_auc) == (first, 0.81)
    record_path = settings.endpoints_dir() / f"{endpoint}.json"
    assert info.location == str(record_path)
    record = json.loads(record_path.read_text())
    assert record["endpoint_name"] == endpoint
    assert record["model_name"] == name
    assert record["version"] == first
    assert record["model_source"] == str(model_dir)
    assert record["updated_at"]
    assert [p.name for p in record_path.parent.iterdir()] == [record_path.name]  # no temp files left

    backend.deploy(name, second, endpoint, "yellowstone", "Cygnus buccinator")
    assert backend.deployed_version(name).version == second
    assert json.loads(record_path.read_text())["version"] == second
    assert backend.model_location(name, second) == str(second_dir)
    with pytest.raises(NotFoundError, match="register and deploy"):
        backend.model_location(name, "99")


def test_unknown_mode_is_a_config_error(monkeypatch):
    from biodiv_dagster.backends import deployment_backend_from_env

    monkeypatch.setenv("BIODIV_DEPLOYMENT_MODE", "nowhere")
    with pytest.raises(ConfigError, match="BIODIV_DEPLOYMENT_MODE='nowhere'"):
        deployment_backend_from_env()
    monkeypatch.setenv("BIODIV_DEPLOYMENT_MODE", "azureml")
    assert type(deployment_backend_from_env()).__name__ == "AzureMLDeploymentBackend"
    monkeypatch.delenv("BIODIV_DEPLOYMENT_MODE")
    assert isinstance(deployment_backend_from_env(), LocalDeploymentBackend)


def _run(instance, partition, gate=None, tags=None):
    result = dg.materialize(
        [registered_model, batch_deployment],
        instance=instance,
        partition_key=partition,
        resources={"deployment_backend": LocalDeploymentBackend(), "quality_gate": gate or QualityGate(auc_floor=0.7)},
        tags=tags,
    )
    assert result.success
    meta = {}
    for event in result.get_asset_materialization_events():
        meta[event.asset_key.to_user_string()] = {k: v.value for k, v in event.materialization.metadata.items()}
    return meta["registered_model"], meta["batch_deployment"]


def test_assets_register_gate_and_deploy_from_upstream_metadata(model_dir, tmp_path):
    with dg.instance_for_test() as instance:
        (partition,) = add_partitions(instance, ["everglades"], ["haliaeetus-leucocephalus"])
        report(instance, "prepared_data", partition, site="everglades", species="Haliaeetus leucocephalus")
        name = naming.model_name("everglades", "Haliaeetus leucocephalus")
        endpoint = naming.endpoint_name("everglades", "Haliaeetus leucocephalus")

        # First model: above the floor, nothing deployed -> deployed.
        report_trained(instance, partition, model_dir, roc_auc=0.82, correlation_id="train-1")
        registered, deployment = _run(instance, partition)
        assert registered["model_name"] == name
        assert registered["model_uri"] == str(model_dir)
        assert registered["roc_auc"] == 0.82
        assert registered["correlation_id"] == "train-1"
        assert deployment["deployed"] is True
        assert deployment["deployed_version"] == registered["registered_version"]
        assert deployment["endpoint_name"] == endpoint
        assert "no version deployed yet" in deployment["reason"]
        v1 = registered["registered_version"]

        # Worse model (beyond the tolerance): registered, but the endpoint keeps v1.
        worse_dir = copy_model(model_dir, tmp_path / "worse")
        report_trained(instance, partition, worse_dir, roc_auc=0.74, correlation_id="train-2")
        registered, deployment = _run(instance, partition)
        assert registered["registered_version"] != v1
        assert deployment["deployed"] is False
        assert deployment["decision"] == "kept previous"
        assert deployment["deployed_version"] == v1
        assert "worse than the deployed version's 0.8200" in deployment["reason"]
        assert json.loads((settings.endpoints_dir() / f"{endpoint}.json").read_text())["version"] == v1

        # Scores from a later run must not be paired with an older model: matched by correlation id.
        report(instance, "scores", partition, roc_auc=0.99, correlation_id="other-run")
        registered, _ = _run(instance, partition)
        assert registered["roc_auc"] == 0.74

        # Better model: replaces v1; the correlation id of the run tag wins over upstream's.
        better_dir = copy_model(model_dir, tmp_path / "better")
        report_trained(instance, partition, better_dir, roc_auc=0.9, correlation_id="train-3")
        registered, deployment = _run(instance, partition, tags={"correlation_id": "sensor-cid"})
        assert deployment["deployed"] is True and deployment["previous_version"] == v1
        assert registered["correlation_id"] == deployment["correlation_id"] == "sensor-cid"
        assert LocalDeploymentBackend().deployed_version(name).version == registered["registered_version"]


def test_missing_upstream_metadata_fails_with_a_clear_message():
    with dg.instance_for_test() as instance:
        (partition,) = add_partitions(instance, ["everglades"], ["lynx-canadensis"])
        with pytest.raises(dg.Failure, match="'deployable_model' has no materialization for partition") as failure:
            _run(instance, partition)
        assert isinstance(failure.value.__cause__, NotFoundError)
        report(instance, "deployable_model", partition, correlation_id="x")
        report(instance, "scores", partition, roc_auc=0.9)
        with pytest.raises(dg.Failure, match="no 'model_path' metadata"):
            _run(instance, partition)
