"""AzureML batch endpoints: region-unique names, and batch deployments whose failed files fail the job.

Against the fake workspace (no network); deployments go through azure-ai-ml's own `_validate` and REST
serialization, as the service would receive them.
"""

import pytest
from azure.ai.ml.entities import BatchEndpoint
from azure_fakes import LOCATION, FakeMLClient

from biodiv_core import naming
from biodiv_dagster import azure_settings
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.deployment.azureml import AzureMLBackend, AzureMLDeploymentBackend
from biodiv_dagster.deployment.local import LocalDeploymentBackend

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


@pytest.fixture
def recorded(monkeypatch):
    """Batch deployments as built by the backend (entities before the fake serializes them)."""
    built = []
    original = FakeMLClient.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        create = self.batch_deployments.begin_create_or_update

        def record(deployment, **kw):
            built.append(deployment)
            return create(deployment, **kw)

        self.batch_deployments.begin_create_or_update = record

    monkeypatch.setattr(FakeMLClient, "__init__", init)
    return built


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
    azureml = AzureMLDeploymentBackend()
    assert azureml.endpoint_name(SITE, SPECIES) == naming.endpoint_name(
        SITE, SPECIES, f"{SUBSCRIPTION}/rg-biodiv/ws-dev"
    )
    assert LocalDeploymentBackend().endpoint_name(SITE, SPECIES) == naming.endpoint_name(SITE, SPECIES)


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


@pytest.mark.parametrize("configured, expected", [(None, 0), (3, 3), (-1, -1)])
def test_batch_deployment_carries_the_error_threshold(tmp_path, recorded, configured, expected):
    client = FakeMLClient(tmp_path / "ws")
    overrides = {} if configured is None else {"batch_error_threshold": configured}
    backend = AzureMLBackend(_settings(**overrides), client)
    version = _register(client, backend, "run1", 0.8)
    endpoint = backend.endpoint_name(SITE, SPECIES)
    backend.deploy(NAME, version, endpoint, SITE, SPECIES)

    (built,) = recorded
    built._validate()  # azure-ai-ml's own checks of the entity
    rest = built._to_rest_object(location=LOCATION)
    assert rest.properties.error_threshold == expected
    assert client.batch_deployments.get(f"v{version}", endpoint).error_threshold == expected
    assert rest.properties.retry_settings.max_retries == 3 and rest.properties.mini_batch_size == 1


def test_error_threshold_setting_comes_from_the_environment_and_is_bounded(monkeypatch):
    for key, value in {
        "AZUREML_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZUREML_RESOURCE_GROUP": "rg-biodiv",
        "AZUREML_WORKSPACE": "ws-dev",
    }.items():
        monkeypatch.setenv(key, value)
    assert AzureMLSettings.from_env().batch_error_threshold == 0
    monkeypatch.setenv("AZUREML_BATCH_ERROR_THRESHOLD", "4")
    assert AzureMLSettings.from_env().batch_error_threshold == 4
    monkeypatch.setenv("AZUREML_BATCH_ERROR_THRESHOLD", "-2")
    with pytest.raises(ValueError, match="greater than or equal to -1"):
        AzureMLSettings.from_env()


def test_a_deployment_that_ignored_failures_is_updated_once(tmp_path, recorded):
    """A deployment made with error_threshold=-1 (earlier releases) gets the setting on the next deploy."""
    client = FakeMLClient(tmp_path / "ws")
    old = AzureMLBackend(_settings(batch_error_threshold=-1), client)
    version = _register(client, old, "run1", 0.8)
    endpoint = old.endpoint_name(SITE, SPECIES)
    old.deploy(NAME, version, endpoint, SITE, SPECIES)
    assert client.batch_deployments.get(f"v{version}", endpoint).error_threshold == -1

    backend = AzureMLBackend(_settings(), client)
    backend.deploy(NAME, version, endpoint, SITE, SPECIES)
    assert client.batch_deployments.get(f"v{version}", endpoint).error_threshold == 0
    writes = client.batch_deployments.writes
    backend.deploy(NAME, version, endpoint, SITE, SPECIES)
    assert client.batch_deployments.writes == writes == 2 and len(recorded) == 2  # then a no-op
