"""A registered version that cannot be deployed, or whose training run is retracted afterwards (deployment/rollback.py).

Was: a failed deployment left the registry's version looking good and (local backend) the `deployed` alias already
on the new version while the endpoint record named the old one; a retracted run's registered version stayed
deployed. Now, on the MLflow registry and on the AzureML registry + batch endpoint (the fake workspace): the version
is tagged `deployable=false` with the reason, the endpoint keeps (or gets back) the version it served before, or
serves none when none is deployable, one line says so, and the gate never deploys that version again.
"""

import errno
import json

import dagster as dg
import pytest
from azureml_helpers import workspace_client
from deployment_helpers import add_partitions, copy_model, report, report_trained, save_model

from biodiv_core import naming, settings
from biodiv_dagster.deployment import local as local_backend
from biodiv_dagster.deployment.assets import QualityGate, batch_deployment, registered_model
from biodiv_dagster.deployment.azureml import AzureMLDeploymentBackend
from biodiv_dagster.deployment.backend import DEPLOYABLE_TAG, NOT_DEPLOYABLE_REASON_TAG
from biodiv_dagster.deployment.local import LocalDeploymentBackend
from biodiv_dagster.deployment.rollback import retract_and_withdraw
from biodiv_dagster.deployment.sensor import registration_run_requests
from biodiv_dagster.deployment.upstream import STORAGE_ID_TAG
from biodiv_dagster.partitions import site_species_partitions
from biodiv_dagster.retraction import STORAGE_ERROR_KEY

SITE, SPECIES = "everglades", "Haliaeetus leucocephalus"
NAME = naming.model_name(SITE, SPECIES)


class Local:
    """The MLflow registry and the local endpoint record."""

    def __init__(self, tmp_path, monkeypatch):
        self.backend = LocalDeploymentBackend()
        self.endpoint = naming.endpoint_name(SITE, SPECIES)
        self.model = tmp_path / "model"
        save_model(self.model)
        self.count = 0

    def model_uri(self, tmp_path) -> str:
        self.count += 1
        return str(copy_model(self.model, tmp_path / f"model-{self.count}"))

    def fail_next_deploy(self, monkeypatch) -> None:
        """The disk fills as the endpoint record is written (once): the alias is already on the new version."""
        write = local_backend.write_json_atomically

        def full_once(path, payload):
            monkeypatch.setattr(local_backend, "write_json_atomically", write)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(local_backend, "write_json_atomically", full_once)

    def served(self) -> str | None:
        deployed = self.backend.deployed_version(NAME)
        record = settings.endpoints_dir() / f"{self.endpoint}.json"
        on_record = json.loads(record.read_text())["version"] if record.exists() else None
        assert on_record == (deployed.version if deployed else None)  # alias and endpoint record agree
        return on_record

    def tags(self, version: str) -> dict[str, str]:
        from mlflow import MlflowClient

        return MlflowClient(settings.mlflow_tracking_uri()).get_model_version(NAME, version).tags


class AzureML:
    """The AzureML registry and batch endpoint (fake workspace)."""

    def __init__(self, tmp_path, monkeypatch):
        self.client = workspace_client(tmp_path, monkeypatch)
        monkeypatch.setenv("AZUREML_COMPUTE", "cpu-cluster")
        monkeypatch.setenv("BIODIV_DEPLOYMENT_MODE", "azureml")  # what the CLI and the sensor withdraw from
        self.backend = AzureMLDeploymentBackend()
        self.endpoint = self.backend.endpoint_name(SITE, SPECIES)
        self.count = 0

    def model_uri(self, tmp_path) -> str:
        self.count += 1
        uri = f"azureml://datastores/workspaceblobstore/paths/deployable_model/x/y/run{self.count}/lgbm_gbif_model"
        folder = self.client.datastore_path(uri)
        folder.mkdir(parents=True)
        (folder / "MLmodel").write_text("flavors:\n  python_function: {}\n")
        return uri

    def fail_next_deploy(self, monkeypatch) -> None:
        self.client.batch_deployments.provisioning_failures.append("(BadRequest) Deployment provisioning failed")

    def served(self) -> str | None:
        deployed = self.backend.deployed_version(NAME)
        return deployed.version if deployed else None

    def tags(self, version: str) -> dict[str, str]:
        return self.client.models.get(NAME, version).tags


@pytest.fixture(params=[Local, AzureML], ids=["mlflow", "azureml"])
def registry(request, tmp_path, monkeypatch):
    return request.param(tmp_path, monkeypatch)


def _register_and_deploy(instance, partition, registry, tags=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [registered_model, batch_deployment],
        instance=instance,
        partition_key=partition,
        resources={"deployment_backend": registry.backend, "quality_gate": QualityGate(auc_floor=0.5)},
        tags=tags or {},
        raise_on_error=False,
    )


def _metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _first_version(instance, partition, registry, tmp_path) -> str:
    report(instance, "prepared_data", partition, site=SITE, species=SPECIES)
    report_trained(instance, partition, registry.model_uri(tmp_path), roc_auc=0.8, correlation_id="train-1")
    first = _register_and_deploy(instance, partition, registry)
    assert first.success and registry.served() == "1"
    return "1"


def test_a_version_whose_deployment_fails_is_tagged_and_the_endpoint_keeps_the_previous_one(
    registry, tmp_path, monkeypatch
):
    with dg.instance_for_test() as instance:
        (partition,) = add_partitions(instance, [SITE], ["haliaeetus-leucocephalus"])
        _first_version(instance, partition, registry, tmp_path)

        report_trained(instance, partition, registry.model_uri(tmp_path), roc_auc=0.9, correlation_id="train-2")
        registry.fail_next_deploy(monkeypatch)
        failed = _register_and_deploy(instance, partition, registry)
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        line = failure.step_failure_data.user_failure_data.description
        assert "\n" not in line and line.startswith(f"{NAME} version 2 could not be deployed (")
        assert line.endswith(
            f"{NAME} version 2 is marked not deployable; endpoint {registry.endpoint} serves version 1."
        )
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in failed.all_events)
        assert registry.served() == "1"
        tags = registry.tags("2")
        assert tags[DEPLOYABLE_TAG] == "false" and "deployment to" in tags[NOT_DEPLOYABLE_REASON_TAG]
        assert DEPLOYABLE_TAG not in registry.tags("1")

        # The registration of version 2 run again (a retry, a re-run from the UI): the gate refuses it.
        again = _register_and_deploy(instance, partition, registry)
        assert again.success
        decision = _metadata(again, "batch_deployment")
        assert decision["deployed"] is False and decision["deployed_version"] == "1"
        assert decision["reason"].startswith("not deployed: version 2 is not deployable (deployment to")


def test_a_first_version_that_cannot_be_deployed_leaves_no_endpoint_serving_it(registry, tmp_path, monkeypatch):
    with dg.instance_for_test() as instance:
        (partition,) = add_partitions(instance, [SITE], ["haliaeetus-leucocephalus"])
        report(instance, "prepared_data", partition, site=SITE, species=SPECIES)
        report_trained(instance, partition, registry.model_uri(tmp_path), roc_auc=0.8, correlation_id="train-1")
        registry.fail_next_deploy(monkeypatch)
        failed = _register_and_deploy(instance, partition, registry)
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failure.step_failure_data.user_failure_data.description.endswith(
            f"endpoint {registry.endpoint} serves no version now (none deployed before is deployable)."
        )
        assert registry.served() is None and registry.tags("1")[DEPLOYABLE_TAG] == "false"
        if isinstance(registry, AzureML):
            assert registry.client.batch_endpoints.deleted == [registry.endpoint]


def _training_run(instance, partition: str, model_uri: str) -> dg.ExecuteInProcessResult:
    """A training run that materializes scores and deployable_model, then fails on a full disk in a later step."""

    @dg.asset(name="scores", partitions_def=site_species_partitions)
    def scores():
        return dg.MaterializeResult(metadata={"roc_auc": 0.95, "accuracy": 0.9, "correlation_id": "train-2"})

    @dg.asset(name="deployable_model", partitions_def=site_species_partitions, deps=[scores])
    def deployable_model():
        metadata = {"model_uri": model_uri, "model_path": model_uri, "correlation_id": "train-2"}
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(partitions_def=site_species_partitions, deps=[deployable_model])
    def later_step():
        raise dg.Failure(
            description="Step map failed: cannot write /x (No space left on device): free space there",
            metadata={STORAGE_ERROR_KEY: True},
            allow_retries=False,
        )

    return dg.materialize(
        [scores, deployable_model, later_step], instance=instance, partition_key=partition, raise_on_error=False
    )


def test_a_deployed_version_whose_training_run_is_retracted_is_withdrawn_and_the_previous_one_served(
    registry, tmp_path
):
    with dg.instance_for_test() as instance:
        (partition,) = add_partitions(instance, [SITE], ["haliaeetus-leucocephalus"])
        _first_version(instance, partition, registry, tmp_path)
        run = _training_run(instance, partition, registry.model_uri(tmp_path))
        assert not run.success
        [model] = instance.fetch_materializations(dg.AssetKey("deployable_model"), limit=1).records
        # Registered and deployed before the run was retracted (e.g. registered from the UI meanwhile).
        deployed = _register_and_deploy(instance, partition, registry, tags={STORAGE_ID_TAG: str(model.storage_id)})
        assert deployed.success and registry.served() == "2"

        log = _Log()
        lines = retract_and_withdraw(instance, run.run_id, log=log)  # what `biodiv run` and the sensor do
        assert log.lines[-1] == lines[0], log.lines
        assert lines == [
            f"{NAME} version 2 is marked not deployable; endpoint {registry.endpoint} serves version 1. Reason: its "
            f"training run {run.run_id} was retracted (Step map failed: cannot write /x (No space left on device): "
            "free space there)."
        ]
        assert registry.served() == "1"
        assert "was retracted" in registry.tags("2")[NOT_DEPLOYABLE_REASON_TAG]
        events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        assert any(lines[0] == event.message for event in events)  # on the run's page in the UI
        requests = registration_run_requests(instance, None)[0]
        assert not [r for r in requests if r.tags[STORAGE_ID_TAG] == str(model.storage_id)]  # not registered again
        assert retract_and_withdraw(instance, run.run_id, log=_Log()) == []  # once


class _Log:
    def __init__(self):
        self.lines = []

    def warning(self, line: str) -> None:
        self.lines.append(line)
