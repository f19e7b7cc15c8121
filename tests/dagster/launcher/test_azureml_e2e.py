"""One partition end to end on the azureml backends (fake workspace running real jobs, Pipes over Azurite).

The azureml run must materialize every training asset with the metadata keys of docs/contracts.md, paths
on the datastore, and for `prepared_data` the same numbers as the local launcher on the same data (the
local run of the other steps is covered by test_assets.py and kept out of here for time); then the model
is registered and deployed to a batch endpoint through the same quality gate.
"""

import dagster as dg
import pytest
from azureml_helpers import fake_workspace  # noqa: F401 - fixture

from biodiv_core import naming
from biodiv_core.data.generate import generate_datastore
from biodiv_dagster.azure_data import upload_data
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.backends import STEP_LAUNCHERS
from biodiv_dagster.deployment.assets import QualityGate, batch_deployment, registered_model
from biodiv_dagster.deployment.azureml import AzureMLDeploymentBackend
from biodiv_dagster.instance import get_instance
from biodiv_dagster.training.assets import TRAINING_ASSET_KEYS, training_assets
from biodiv_dagster.training.config import training_run_config
from biodiv_dagster.training.sync import add_partition

pytestmark = pytest.mark.azurite

SITE, SPECIES = "everglades", "Cygnus buccinator"
PARTITION = "everglades|cygnus-buccinator"
TINY = dict(max_evals=2, n_folds=3, seed=11, num_threads=1)
# Metadata keys promised by docs/contracts.md ("Metadata keys reported by steps").
CONTRACT_KEYS = {
    "prepared_data": {"path", "correlation_id", "rows", "n_present", "n_absent", "n_features", "features", "species"},
    "best_parameters": {"path", "correlation_id", "best_parameters", "best_cv_auc", "report", "mlflow_run_id"},
    "train_test_split": {"path", "correlation_id", "train_rows", "test_rows"},
    "scores": {"path", "correlation_id", "roc_auc", "accuracy", "threshold", "report", "mlflow_run_id"},
    "deployable_model": {"path", "correlation_id", "model_uri", "model_path", "mlflow_run_id", "mlflow_run_uri"},
}


def _train(instance, mode: str, selection=TRAINING_ASSET_KEYS):
    result = dg.materialize(
        training_assets,
        selection=list(selection),
        instance=instance,
        partition_key=PARTITION,
        resources={"step_launcher": STEP_LAUNCHERS[mode]()},
        run_config=training_run_config(list(selection), **TINY),
        tags={"correlation_id": f"corr-{mode}"},
    )
    assert result.success
    return result, {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def test_one_partition_trains_registers_and_deploys_on_azureml(fake_workspace, tmp_path, monkeypatch):  # noqa: F811
    root = tmp_path / "data"
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=500, seed=2)
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    upload_data(fake_workspace, root, log=lambda line: None)
    instance = get_instance()
    add_partition(instance, SITE, SPECIES)

    _, local = _train(instance, "local", selection=["prepared_data"])
    run, cloud = _train(instance, "azureml")

    assert set(cloud) == set(CONTRACT_KEYS)
    for asset, metadata in cloud.items():
        assert CONTRACT_KEYS[asset] <= set(metadata), asset
        assert metadata["path"] == (
            f"azureml://datastores/workspaceblobstore/paths/{asset}/everglades/cygnus-buccinator/{run.run_id}/"
        )
        assert metadata["correlation_id"] == "corr-azureml"
        assert metadata["azureml_job"] in fake_workspace.jobs.created
    local_prepared = local["prepared_data"]
    assert set(local_prepared) <= set(cloud["prepared_data"])
    for key in ["rows", "n_present", "n_absent", "n_features", "features", "species", "site"]:
        assert cloud["prepared_data"][key] == local_prepared[key], key
    assert cloud["train_test_split"]["train_rows"] + cloud["train_test_split"]["test_rows"] == local_prepared["rows"]
    assert 0.5 < cloud["scores"]["roc_auc"] <= 1
    model = cloud["deployable_model"]
    assert model["model_uri"] == model["model_path"] == model["path"].rstrip("/") + "/lgbm_gbif_model"
    assert (fake_workspace.datastore_path(model["model_uri"]) / "MLmodel").is_file()
    assert "data:image/png;base64," in cloud["scores"]["report"]  # the plots travel inlined, not as job paths
    assert "mlflow_run" not in cloud["scores"]  # the run lives in the workspace: the studio link is the way there
    assert len(fake_workspace.jobs.created) == 4
    steps = {fake_workspace.jobs.get(name).tags["step"] for name in fake_workspace.jobs.created}
    assert steps == {"prep", "train", "score", "train_to_deploy"}
    # Downstream jobs read their inputs from the upstream metadata: datastore URIs.
    train_job = fake_workspace.jobs.get(fake_workspace.jobs.created[1])
    assert train_job.inputs["prepared"].path == cloud["prepared_data"]["path"]

    deployed = dg.materialize(
        [registered_model, batch_deployment],
        instance=instance,
        partition_key=PARTITION,
        resources={
            "deployment_backend": AzureMLDeploymentBackend(),
            "quality_gate": QualityGate(auc_floor=0.5),
        },
        tags={"correlation_id": "corr-azureml"},
    )
    assert deployed.success
    meta = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in deployed.get_asset_materialization_events()
    }
    name = naming.model_name(SITE, SPECIES)
    endpoint = naming.endpoint_name(SITE, SPECIES, AzureMLSettings.from_env().endpoint_namespace_key())
    version = meta["registered_model"]["registered_version"]
    registered = fake_workspace.models.get(name, version)
    # Registered from the job's run (its logged copy of the folder), so the version names the run.
    assert registered.type == "mlflow_model" and registered.job_name == model["mlflow_run_id"]
    assert registered.path.endswith(f"ExperimentRun/dcid.{model['mlflow_run_id']}/lgbm_gbif_model")
    assert registered.tags["source_uri"] == model["model_uri"]
    assert meta["batch_deployment"]["deployed"] is True
    assert meta["batch_deployment"]["endpoint_name"] == endpoint
    assert fake_workspace.batch_endpoints.get(endpoint).defaults.deployment_name == f"v{version}"
    assert fake_workspace.batch_deployments.get(f"v{version}", endpoint).model.endswith(f"{name}:{version}")
