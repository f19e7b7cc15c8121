"""AzureML serving against the fake workspace: versions registered from their job's run, the batch deployment that
runs our scoring script (checked with azure-ai-ml's own validation, REST and YAML forms, then run as the batch driver
runs it), and `biodiv batch-score` in azureml deployment mode."""

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from azure.ai.ml.entities import ModelBatchDeployment
from azure_fakes import LOCATION, FakeMLClient
from azureml_helpers import workspace_client
from batch_driver import read_predictions, run_driver
from deployment_helpers import FEATURES, sample_features, trained_in_a_run

from biodiv_core import naming, settings, tracking
from biodiv_core.training.model import predict_proba
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.cli import main as cli_main
from biodiv_dagster.deployment.azureml import SCORING_SCRIPT, SOURCE_TAG, AzureMLBackend, build_deployment

SITE, SPECIES = "Yellowstone", "Cygnus buccinator"
NAME = naming.model_name(SITE, SPECIES)
THRESHOLD = 0.4


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    return workspace_client(tmp_path, monkeypatch)


def _trained_on_the_workspace(client: FakeMLClient, tmp_path):
    """What a train_to_deploy job leaves: the folder on its datastore output, a copy in its MLflow run."""
    folder, run_id, booster = trained_in_a_run(tmp_path / "job-output", SITE, SPECIES, threshold=THRESHOLD)
    uri = f"azureml://datastores/workspaceblobstore/paths/deployable_model/yellowstone/cygnus-buccinator/{run_id}"
    shutil.copytree(folder, client.datastore_path(uri) / folder.name)
    return f"{uri}/{folder.name}", run_id, booster


def _raw(rows: int = 40, seed: int = 5) -> pd.DataFrame:
    return sample_features(n_rows=rows, seed=seed).astype({"landcover": str}).assign(decimallatitude=44.6)


def _expected(booster, raw: pd.DataFrame) -> np.ndarray:
    return predict_proba(booster, raw[FEATURES].astype({"landcover": "category"}))


def test_version_is_registered_from_its_run_and_outlives_the_step_output(workspace, tmp_path):
    model_uri, run_id, booster = _trained_on_the_workspace(workspace, tmp_path)
    backend = AzureMLBackend(AzureMLSettings.from_env(), workspace)
    tags = {"roc_auc": "0.8", "mlflow_run_id": run_id}
    version = backend.register(model_uri, NAME, tags)
    assert backend.register(model_uri, NAME, tags) == version  # a retried registration adds nothing

    registered = workspace.models.get(NAME, version)
    assert registered.type == "mlflow_model" and registered.job_name == run_id  # the version names its run
    assert registered.path.startswith("azureml://subscriptions/")  # the long form the service stores
    assert f"ExperimentRun/dcid.{run_id}/lgbm_gbif_model" in registered.path  # the run's copy, not the output
    assert registered.tags[SOURCE_TAG] == model_uri and registered.tags["mlflow_run_id"] == run_id

    shutil.rmtree(workspace.datastore_path(model_uri).parent)  # the step's output folder is cleaned away
    location = backend.model_location(NAME, version)
    raw = _raw()
    predicted = mlflow.pyfunc.load_model(location).predict(raw)
    assert predicted["gbifid"].tolist() == raw["gbifid"].tolist()
    np.testing.assert_allclose(predicted["probability"], _expected(booster, raw), rtol=1e-9)


def test_a_run_without_the_logged_folder_registers_the_output_folder(workspace, tmp_path):
    model_uri, _, _ = _trained_on_the_workspace(workspace, tmp_path)
    with tracking.tracked_run("train_to_deploy", site=SITE, species=SPECIES) as empty_run:
        pass  # an older step: the run holds no copy of the model
    backend = AzureMLBackend(AzureMLSettings.from_env(), workspace)
    version = backend.register(model_uri, NAME, {"mlflow_run_id": empty_run.info.run_id})
    registered = workspace.models.get(NAME, version)
    assert registered.path == workspace.long_uri(model_uri) and registered.job_name is None


def test_batch_deployment_runs_the_scoring_script_on_the_registered_model(workspace, tmp_path):
    model_uri, run_id, booster = _trained_on_the_workspace(workspace, tmp_path)
    backend = AzureMLBackend(AzureMLSettings.from_env(), workspace)
    version = backend.register(model_uri, NAME, {"mlflow_run_id": run_id})
    endpoint = backend.endpoint_name(SITE, SPECIES)
    backend.deploy(NAME, version, endpoint, SITE, SPECIES)
    stored = workspace.batch_deployments.get(f"v{version}", endpoint)
    assert stored.code_configuration.scoring_script == SCORING_SCRIPT
    assert stored.environment.startswith("azureml:biodiv-steps:")  # the step environment, registered
    assert stored.output_action == "append_row" and stored.error_threshold == 0 and stored.mini_batch_size == 1

    # The entity as azure-ai-ml checks and sends it, and as a YAML file `az ml batch-deployment create -f` reads.
    built = build_deployment(backend.settings, NAME, version, endpoint, stored.environment, {"site": SITE})
    built._validate()
    rest = built._to_rest_object(location=LOCATION)
    assert rest.properties.code_configuration.scoring_script == SCORING_SCRIPT
    assert rest.properties.model.asset_id == f"azureml:{NAME}:{version}" and rest.properties.error_threshold == 0
    built.dump(tmp_path / "deployment.yml")
    loaded = ModelBatchDeployment._load(
        data=yaml.safe_load((tmp_path / "deployment.yml").read_text()), yaml_path=tmp_path / "deployment.yml"
    )
    again = loaded._to_rest_object(location=LOCATION).as_dict()
    sent = rest.as_dict()
    for body in (again, sent):  # the loader keeps references without their "azureml:" prefix
        properties = body["properties"]
        properties["environmentId"] = properties["environmentId"].removeprefix("azureml:")
        properties["model"]["assetId"] = properties["model"]["assetId"].removeprefix("azureml:")
    assert again == sent

    # What the service does with it: the model mounted at AZUREML_MODEL_DIR, the code snapshot, the driver.
    model_dir = tmp_path / "azureml-models"
    workspace.models.download(NAME, version, download_path=model_dir)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    raw = _raw()
    raw.head(25).to_csv(inputs / "part-1.csv", index=False)
    raw.tail(15).to_parquet(inputs / "part-2.parquet", index=False)
    code, summary = run_driver(
        workspace.code_snapshot(stored.code_configuration.code),
        model_dir,
        inputs,
        tmp_path / "predictions.csv",
        scoring_script=stored.code_configuration.scoring_script,
        mini_batch_size=stored.mini_batch_size,
        error_threshold=stored.error_threshold,
        max_retries=stored.retry_settings.max_retries,
    )
    assert code == 0 and summary["failed_files"] == 0, summary
    out = read_predictions(tmp_path / "predictions.csv")
    assert out["gbifid"].tolist() == raw["gbifid"].tolist()
    np.testing.assert_allclose(out["probability"], _expected(booster, raw), rtol=1e-9)
    assert out["presence"].tolist() == (out["probability"] >= THRESHOLD).astype(int).tolist()


def test_batch_score_in_azureml_mode_downloads_the_deployed_version_once(workspace, tmp_path, monkeypatch, capsys):
    import json

    model_uri, run_id, booster = _trained_on_the_workspace(workspace, tmp_path)
    backend = AzureMLBackend(AzureMLSettings.from_env(), workspace)
    version = backend.register(model_uri, NAME, {"mlflow_run_id": run_id})
    backend.deploy(NAME, version, backend.endpoint_name(SITE, SPECIES), SITE, SPECIES)
    downloads = []
    download = workspace.models.download
    monkeypatch.setattr(workspace.models, "download", lambda *a, **k: downloads.append(a or k) or download(*a, **k))
    monkeypatch.setenv("BIODIV_DEPLOYMENT_MODE", "azureml")

    raw = _raw()
    raw.to_csv(tmp_path / "features.csv", index=False)
    args = ["batch-score", "--site", SITE, "--species", SPECIES, "--input", str(tmp_path / "features.csv")]
    for output in ("first.csv", "second.csv"):
        assert cli_main([*args, "--output", str(tmp_path / output), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["version"] == version and summary["rows"] == len(raw)
        assert summary["model_uri"].startswith(str(settings.biodiv_home() / "models"))  # local, not azureml://
        out = pd.read_csv(tmp_path / output)
        assert out["gbifid"].tolist() == raw["gbifid"].tolist()
        np.testing.assert_allclose(out["probability"], _expected(booster, raw), rtol=1e-9)
    assert len(downloads) == 1  # registered versions never change: the copy is reused

    raw.drop(columns=["precip"]).to_csv(tmp_path / "bad.csv", index=False)
    bad = ["batch-score", "--site", SITE, "--species", SPECIES, "--input", str(tmp_path / "bad.csv")]
    assert cli_main([*bad, "--output", str(tmp_path / "bad-out.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert "missing column(s) ['precip']" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "bad-out.csv").exists()


def test_a_no_code_deployment_of_an_earlier_release_is_replaced_once(workspace, tmp_path):
    """Earlier releases deployed the MLflow model without a scoring script (predictions without gbifid)."""
    from azure.ai.ml.entities import ModelBatchDeploymentSettings

    model_uri, run_id, _ = _trained_on_the_workspace(workspace, tmp_path)
    backend = AzureMLBackend(AzureMLSettings.from_env(), workspace)
    version = backend.register(model_uri, NAME, {"mlflow_run_id": run_id})
    endpoint = backend.endpoint_name(SITE, SPECIES)
    backend.deploy(NAME, version, endpoint, SITE, SPECIES)
    no_code = ModelBatchDeployment(
        name=f"v{version}",
        endpoint_name=endpoint,
        model=f"azureml:{NAME}:{version}",
        compute="cpu-cluster",
        settings=ModelBatchDeploymentSettings(mini_batch_size=10, error_threshold=0, output_action="append_row"),
    )
    workspace.batch_deployments.begin_create_or_update(no_code).result()
    assert workspace.batch_deployments.get(f"v{version}", endpoint).code_configuration is None

    backend.deploy(NAME, version, endpoint, SITE, SPECIES)
    updated = workspace.batch_deployments.get(f"v{version}", endpoint)
    assert updated.code_configuration.scoring_script == SCORING_SCRIPT and updated.mini_batch_size == 1
    writes = workspace.batch_deployments.writes
    backend.deploy(NAME, version, endpoint, SITE, SPECIES)
    assert workspace.batch_deployments.writes == writes  # then a no-op
