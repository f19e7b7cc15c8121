"""AzureML batch endpoints: names unique in the region (the workspace is in the hash), against the fake workspace."""

from azure.ai.ml.entities import BatchEndpoint
from azure_fakes import LOCATION, FakeMLClient

from biodiv_core import naming
from biodiv_dagster import azure_settings
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.deployment.azureml import AzureMLBackend
from biodiv_dagster.deployment.backend import DeploymentBackend

SITE, SPECIES = "Yellowstone", "Cygnus buccinator"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
NAME = naming.model_name(SITE, SPECIES)


def _settings(workspace: str = "ws-dev", **overrides) -> AzureMLSettings:
    return AzureMLSettings(subscription_id=SUBSCRIPTION, resource_group="rg-biodiv", workspace=workspace, **overrides)


def _register(client: FakeMLClient, backend: AzureMLBackend, run_id: str, auc: float) -> str:
    uri = f"azureml://datastores/workspaceblobstore/paths/deployable_model/yellowstone/cygnus-buccinator/{run_id}"
    folder = client.datastore_path(uri) / "lgbm_gbif_model"
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    return backend.register(uri + "/lgbm_gbif_model", NAME, {"roc_auc": str(auc)})


def test_endpoint_names_include_the_workspace_so_two_workspaces_in_a_region_do_not_collide(tmp_path):
    names = {}
    for workspace in ("ws-dev", "ws-prod"):
        client = FakeMLClient(tmp_path / workspace)
        backend = AzureMLBackend(_settings(workspace), client)
        version = _register(client, backend, "run1", 0.8)
        info = backend.deploy(NAME, version, backend.endpoint_name(SITE, SPECIES), SITE, SPECIES)
        names[workspace] = info.endpoint_name
        assert client.batch_endpoints.get(info.endpoint_name).tags["site"] == SITE
        assert backend.deployed_version(NAME).version == version
    assert names["ws-dev"] != names["ws-prod"]
    assert names["ws-dev"] == naming.endpoint_name(SITE, SPECIES, f"{SUBSCRIPTION}/rg-biodiv/ws-dev")
    assert naming.endpoint_name(SITE, SPECIES) not in names.values()  # the local (namespace-free) name
    for name in names.values():
        BatchEndpoint(name=name, tags={"site": SITE})._to_rest_batch_endpoint(location=LOCATION)


def test_a_configured_namespace_replaces_the_workspace(monkeypatch):
    a = AzureMLBackend(_settings("ws-a", endpoint_namespace="biodiv-prod"))
    b = AzureMLBackend(_settings("ws-b", endpoint_namespace="biodiv-prod"))
    assert a.endpoint_name(SITE, SPECIES) == b.endpoint_name(SITE, SPECIES)
    assert a.endpoint_name(SITE, SPECIES) == naming.endpoint_name(SITE, SPECIES, "biodiv-prod")
    for key, value in {
        "AZUREML_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZUREML_RESOURCE_GROUP": "rg-biodiv",
        "AZUREML_WORKSPACE": "ws-a",
        "BIODIV_ENDPOINT_NAMESPACE": "team-x",
    }.items():
        monkeypatch.setenv(key, value)
    assert AzureMLSettings.from_env().endpoint_namespace_key() == "team-x"


def test_each_deployment_mode_names_endpoints_its_way(tmp_path, monkeypatch):
    """What the batch_deployment asset asks for: azureml mode adds the workspace, local mode keeps today's names."""
    for key, value in {
        "AZUREML_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZUREML_RESOURCE_GROUP": "rg-biodiv",
        "AZUREML_WORKSPACE": "ws-dev",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(azure_settings, "make_ml_client", lambda settings: FakeMLClient(tmp_path / "ws"))
    azureml = DeploymentBackend(mode="azureml").backend()
    assert azureml.endpoint_name(SITE, SPECIES) == naming.endpoint_name(
        SITE, SPECIES, f"{SUBSCRIPTION}/rg-biodiv/ws-dev"
    )
    local = DeploymentBackend(mode="local").backend()
    assert not hasattr(local, "endpoint_name")  # the asset falls back to naming.endpoint_name(site, species)


def test_old_named_endpoint_counts_until_the_new_name_serves_a_version(tmp_path):
    """Migration: an endpoint created before the namespace went into the names still gates the first deployment."""
    client = FakeMLClient(tmp_path / "ws")
    backend = AzureMLBackend(_settings(), client)
    old_name, new_name = naming.endpoint_name(SITE, SPECIES), backend.endpoint_name(SITE, SPECIES)
    v1 = _register(client, backend, "run1", 0.8)
    backend.deploy(NAME, v1, old_name, SITE, SPECIES)  # as the previous release named it
    assert backend.deployed_version(NAME).version == v1  # still the deployed version for the quality gate

    v2 = _register(client, backend, "run2", 0.9)
    backend.deploy(NAME, v2, new_name, SITE, SPECIES)
    assert [e.name for e in client.batch_endpoints.list()] == [old_name, new_name]  # listed old one first
    assert backend.deployed_version(NAME).version == v2  # the endpoint named as today wins
    assert client.batch_endpoints.get(old_name).defaults.deployment_name == f"v{v1}"  # old one untouched
