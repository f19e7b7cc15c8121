"""AzureML deployment backend, data assets and environment against the fake workspace (no network)."""

import re
from pathlib import Path

import pytest
from azure.ai.ml.entities import BatchEndpoint
from azure_fakes import FakeMLClient
from azureml_helpers import workspace_client

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore
from biodiv_core.errors import ConfigError, NotFoundError
from biodiv_core.naming import endpoint_name, model_name
from biodiv_dagster.azure_data import resolve_data_version, upload_data
from biodiv_dagster.azure_env import CONDA_FILE, environment_version, register_environment
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.cli import main as cli_main
from biodiv_dagster.deployment.azureml import AzureMLDeploymentBackend

SITE, SPECIES = "Yellowstone", "Cygnus buccinator"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    return workspace_client(tmp_path, monkeypatch)


def _model_folder(client: FakeMLClient, run_id: str) -> str:
    uri = f"azureml://datastores/workspaceblobstore/paths/deployable_model/yellowstone/cygnus-buccinator/{run_id}"
    folder = client.datastore_path(uri) / "lgbm_gbif_model"
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    return uri + "/lgbm_gbif_model"


def test_register_and_deploy_are_idempotent_and_switch_the_default(workspace):
    backend = AzureMLDeploymentBackend()
    name, endpoint = model_name(SITE, SPECIES), endpoint_name(SITE, SPECIES)
    first_uri = _model_folder(workspace, "run1")
    assert backend.deployed_version(name) is None

    version = backend.register(first_uri, name, {"roc_auc": 0.81, "correlation_id": "c1", "note": None})
    assert version == "1"
    assert backend.register(first_uri, name, {"roc_auc": 0.81}) == "1"  # a retried run adds nothing
    model = workspace.models.get(name, "1")
    assert model.type == "mlflow_model" and model.path == workspace.long_uri(first_uri)  # as the SDK sends it
    assert "note" not in model.tags and model.tags["roc_auc"] == "0.81"

    info = backend.deploy(name, version, endpoint, SITE, SPECIES)
    assert (info.endpoint_name, info.model_name, info.version) == (endpoint, name, "1")
    assert info.location.startswith(f"https://{endpoint}.")
    deployed = workspace.batch_endpoints.get(endpoint)
    assert deployed.defaults.deployment_name == "v1"
    deployment = workspace.batch_deployments.get("v1", endpoint)
    assert deployment.compute == "cpu-cluster"
    assert deployment.mini_batch_size == 1 and deployment.output_file_name == "predictions.csv"
    assert deployment.output_action == "append_row" and deployment.retry_settings.max_retries == 3
    assert backend.deployed_version(name).version == "1"
    assert backend.deployed_version(name).roc_auc == pytest.approx(0.81)

    writes = (workspace.batch_endpoints.writes, workspace.batch_deployments.writes)
    backend.deploy(name, version, endpoint, SITE, SPECIES)
    assert (workspace.batch_endpoints.writes, workspace.batch_deployments.writes) == writes

    second = backend.register(_model_folder(workspace, "run2"), name, {"roc_auc": 0.86})
    assert second == "2"
    backend.deploy(name, second, endpoint, SITE, SPECIES)
    assert workspace.batch_endpoints.get(endpoint).defaults.deployment_name == "v2"
    assert {d.name for d in workspace.batch_deployments.list(endpoint)} == {"v1", "v2"}  # v1 kept for rollback
    assert backend.deployed_version(name).version == "2"
    location = Path(backend.model_location(name, "2"))  # a local copy: MLflow cannot open azureml:// URIs
    assert (location / "MLmodel").is_file() and location.name == "lgbm_gbif_model"
    assert location.is_relative_to(settings.biodiv_home())
    with pytest.raises(NotFoundError, match="version 9 is not registered"):
        backend.model_location(name, "9")


def test_endpoint_names_of_500_pairs_are_valid_unique_and_accepted_by_azure_ai_ml():
    genera = ["Cygnus", "Anas", "Aythya", "Bucephala", "Mergus", "Gavia", "Podiceps", "Ardea", "Egretta", "Grus"]
    epithets = [
        "buccinator",
        "columbianus",
        "platyrhynchos",
        "americana",
        "valisineria",
        "clangula",
        "merganser",
        "immer",
        "nigricollis",
        "herodias",
        "thula",
        "canadensis",
        "occidentalis",
        "acuta",
        "strepera",
        "discors",
        "cyanoptera",
        "clypeata",
        "penelope",
        "crecca",
        "affinis",
        "marila",
        "collaris",
        "albeola",
        "islandica",
    ]
    sites = [
        "Yellowstone",
        "Grand Teton National Park",
        "Okefenokee Swamp",
        "Everglades",
        "Lac Saint-Pierre",
        "Île d'Orléans",
        "Parque Nacional Doñana",
        "Bosque del Apache",
    ]
    pairs = [(s, f"{g} {e}") for s in sites for g in genera for e in epithets][:500]
    assert len(pairs) == 500
    names = [endpoint_name(site, species) for site, species in pairs]
    assert len(set(names)) == 500
    pattern = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
    for name in names:
        assert 3 <= len(name) <= 32 and pattern.match(name), name
        BatchEndpoint(name=name, tags={"site": "x"})._to_rest_batch_endpoint(location="westeurope")
    assert names == [endpoint_name(site, species) for site, species in pairs]  # stable


def test_data_assets_upload_and_resolve_to_explicit_versions(workspace, tmp_path, capsys):
    root = tmp_path / "store"
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=200, seed=3)
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=200, seed=4, version=2)
    assert cli_main(["azureml", "upload-data", "--root", str(root)]) == 0
    # features, species and covariate rasters, two versions each
    assert "6 data asset version(s) registered" in capsys.readouterr().out
    assert cli_main(["azureml", "upload-data", "--root", str(root)]) == 0
    assert "0 data asset version(s) registered, 6 already there" in capsys.readouterr().out
    assert workspace.data.get("yellowstone-covariates", "2").type == "uri_folder"
    asset = "yellowstone-training-features"
    assert resolve_data_version(workspace, asset) == 2
    assert resolve_data_version(workspace, asset, 1) == 1
    assert workspace.data.get(asset, "1").type == "uri_folder"
    with pytest.raises(NotFoundError, match=r"has no version 7; available versions: 1, 2"):
        resolve_data_version(workspace, asset, 7)
    with pytest.raises(NotFoundError, match="does not exist in the workspace.*upload-data"):
        resolve_data_version(workspace, "everglades-training-features")
    with pytest.raises(NotFoundError, match="No <site>-training-features"):
        upload_data(workspace, tmp_path / "workspace", log=lambda line: None)


def test_environment_version_is_a_content_hash_and_registration_is_skipped_when_unchanged(workspace, tmp_path, capsys):
    assert cli_main(["azureml", "register-env"]) == 0
    version = environment_version()
    assert f"azureml:biodiv-steps:{version} registered" in capsys.readouterr().out
    assert cli_main(["azureml", "register-env"]) == 0
    assert "already registered" in capsys.readouterr().out
    assert workspace.environments.created == 1
    env = workspace.environments.get("biodiv-steps", version)
    assert env.image.startswith("mcr.microsoft.com/azureml/")
    conda = env.conda_file
    deps = str(conda)
    assert "dagster-pipes" in deps and "lightgbm" in deps
    assert "dagster==" not in deps and "azure-ai-ml" not in deps and "azure-mgmt" not in deps

    changed = tmp_path / "environment.yml"
    changed.write_text(CONDA_FILE.read_text() + "      - tqdm==4.67.1\n")
    assert environment_version(changed) != version
    assert environment_version(CONDA_FILE, image="mcr.microsoft.com/azureml/other:1") != version
    reference, created = register_environment(workspace, "biodiv-steps", conda_file=changed)
    assert created and reference.endswith(environment_version(changed))


def test_missing_workspace_settings_name_the_variables(monkeypatch):
    monkeypatch.delenv("AZUREML_SUBSCRIPTION_ID", raising=False)
    monkeypatch.delenv("AZUREML_WORKSPACE", raising=False)
    monkeypatch.setenv("AZUREML_RESOURCE_GROUP", "rg")
    with pytest.raises(ConfigError, match="AZUREML_SUBSCRIPTION_ID, AZUREML_WORKSPACE"):
        AzureMLSettings.from_env()
    assert cli_main(["azureml", "register-env"]) == 2


def test_app_insights_is_a_no_op_without_connection_string_and_carries_the_correlation_id_with_it(monkeypatch):
    import logging

    import azure.monitor.opentelemetry as monitor

    from biodiv_dagster.launcher import azureml_insights

    calls = []
    monkeypatch.setattr(monitor, "configure_azure_monitor", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(azureml_insights, "_configured", set())
    assert azureml_insights.track("step prep starting", "cid-1", job_name="j") is False
    assert calls == []

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    azureml_insights.logger.addHandler(handler)
    try:
        monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=00000000-0000-0000-0000-0")
        assert azureml_insights.track("step prep starting", "cid-1", job_name="j", partition=None)
        assert azureml_insights.track("step prep completed", "cid-1", job_name="j")
    finally:
        azureml_insights.logger.removeHandler(handler)
    assert len(calls) == 1 and calls[0]["logger_name"] == "biodiv.azureml"  # configured once
    assert [r.correlation_id for r in records] == ["cid-1", "cid-1"]
    assert records[0].job_name == "j" and not hasattr(records[0], "partition")
