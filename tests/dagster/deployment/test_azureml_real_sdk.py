"""Our AzureML code against the real azure-ai-ml `MLClient`, whose HTTP goes to a stub of the service.

What azure-ai-ml does itself here (not a fake): URL building, short datastore paths rewritten to the long form,
resource ids, paging through ``nextLink`` (the stub answers one item per page), long-running-operation pollers,
and the mapping of a 404 answer to ``ResourceNotFoundError``. Each request body is checked against the SDK's
generated REST model of its API version (tests/azure_stub_service.check_body).
"""

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import BatchEndpoint
from azure.core.exceptions import ResourceNotFoundError
from azure_stub_service import StubCredential, StubService, check_body

from biodiv_core.errors import NotFoundError
from biodiv_dagster.azure_data import resolve_data_version
from biodiv_dagster.azure_env import environment_version, register_environment
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.deployment.azureml import MODEL_TAG, SOURCE_TAG, AzureMLBackend

SUB, GROUP, WS = "00000000-0000-0000-0000-000000000000", "rg-biodiv", "ws-biodiv"
NAME = "lgbm-yellowstone-cygnus-buccinator"


@pytest.fixture
def service():
    return StubService(SUB, GROUP, WS)


@pytest.fixture
def client(service):
    # The stub answers Retry-After: 0, on which the SDK's pollers wait polling_interval (30 s by default).
    return MLClient(StubCredential(), SUB, GROUP, WS, transport=service, polling_interval=0.01)


@pytest.fixture
def backend(client, monkeypatch):
    for key, value in {
        "AZUREML_SUBSCRIPTION_ID": SUB,
        "AZUREML_RESOURCE_GROUP": GROUP,
        "AZUREML_WORKSPACE": WS,
    }.items():
        monkeypatch.setenv(key, value)
    return AzureMLBackend(AzureMLSettings.from_env(), client)


def test_the_step_environment_is_registered_once(client, service):
    reference, created = register_environment(client, "biodiv-steps")
    assert created and reference == f"azureml:biodiv-steps:{environment_version()}"
    path = f"environments/biodiv-steps/versions/{environment_version()}"
    assert service.paths() == [f"GET {path}", f"PUT {path}"]  # a 404 read as "missing", then the version sent
    sent = service.requests[-1].body["properties"]
    assert sent["condaFile"] and sent["image"].startswith("mcr.microsoft.com/azureml/")
    assert register_environment(client, "biodiv-steps") == (reference, False)
    assert service.paths("PUT") == [f"PUT {path}"]  # found: nothing sent again


def test_a_model_registered_from_a_datastore_folder_is_sent_in_the_long_form_and_found_again(backend, service):
    uri = "azureml://datastores/workspaceblobstore/paths/deployable_model/yellowstone/cygnus-buccinator/r1/lgbm_gbif_model"
    version = backend.register(uri, NAME, {"roc_auc": "0.81"})
    put = next(r for r in service.requests if r.method == "PUT")
    assert put.path == f"models/{NAME}/versions/{version}"
    sent = put.body["properties"]
    # azure-ai-ml rewrote the short datastore path to the workspace-qualified form the service stores.
    assert sent["modelUri"].startswith(f"azureml://subscriptions/{SUB}/resourcegroups/{GROUP}/workspaces/{WS}/")
    assert sent["modelUri"].endswith("/datastores/workspaceblobstore/paths/deployable_model/yellowstone/"
                                     "cygnus-buccinator/r1/lgbm_gbif_model")  # fmt: skip
    assert sent["modelType"] == "mlflow_model" and sent["tags"][SOURCE_TAG] == uri
    assert all(value is not None for value in sent["tags"].values())

    other = uri.replace("/r1/", "/r2/")
    second = backend.register(other, NAME, {})
    assert int(second) == int(version) + 1  # the registry's next version (the container's nextVersion)
    puts = len(service.paths("PUT"))
    # Registering a source again finds its version by tag, through the paged list (one version per page).
    assert backend.register(uri, NAME, {"roc_auc": "0.81"}) == version
    assert len(service.paths("PUT")) == puts
    pages = [r.query.get("$skip") for r in service.requests if r.path == f"models/{NAME}/versions"]
    assert "1" in pages  # the SDK followed nextLink to the second page


def test_data_versions_are_listed_across_pages_and_a_missing_asset_is_a_clear_error(client, service):
    from azure.ai.ml.entities import Data

    for version in ("1", "2", "10"):
        client.data.create_or_update(
            Data(name="yellowstone-training-features", version=version, type="uri_folder",
                 path=f"azureml://datastores/workspaceblobstore/paths/LocalUpload/features/{version}/")
        )  # fmt: skip
    assert resolve_data_version(client, "yellowstone-training-features") == 10  # numeric, not text order
    assert resolve_data_version(client, "yellowstone-training-features", 2) == 2
    with pytest.raises(NotFoundError, match="does not exist in the workspace"):
        resolve_data_version(client, "everglades-training-features")
    with pytest.raises(Exception, match="(?i)version or label"):  # the real SDK refuses a bare name
        client.data.get("yellowstone-training-features")


def test_a_batch_endpoint_is_created_through_the_sdk_poller(backend, client, service):
    assert backend._endpoint("bde-yellowstone-1a2b3c") is None  # 404 mapped to ResourceNotFoundError by the SDK
    poller = client.batch_endpoints.begin_create_or_update(
        BatchEndpoint(name="bde-yellowstone-1a2b3c", description="d", tags={"model": NAME})
    )
    endpoint = poller.result()
    assert poller.done() and endpoint.provisioning_state == "Succeeded"
    assert endpoint.scoring_uri.startswith("https://bde-yellowstone-1a2b3c.")
    assert service.polls == ["InProgress", "Succeeded"]  # the SDK's poller followed Azure-AsyncOperation
    put = next(r for r in service.requests if r.method == "PUT")
    assert put.path == "batchEndpoints/bde-yellowstone-1a2b3c" and put.body["location"] == "westeurope"
    assert put.body["properties"]["authMode"].lower() == "aadtoken"  # the SDK's default (it sends "aadToken")
    assert backend._endpoint("bde-yellowstone-1a2b3c").tags == {"model": NAME}
    with pytest.raises(ResourceNotFoundError):
        client.batch_deployments.get(name="v1", endpoint_name="bde-yellowstone-1a2b3c")


def test_the_body_check_refuses_what_the_rest_model_does_not_know():
    with pytest.raises(AssertionError, match="unknown field properties.bogus"):
        check_body("BatchEndpoint", {"location": "x", "properties": {"authMode": "AADToken", "bogus": 1}})


def test_the_deployed_version_is_read_back_through_lists_gets_and_arm_ids(backend, client, service):
    uri = "azureml://datastores/workspaceblobstore/paths/deployable_model/y/c/r1/lgbm_gbif_model"
    version = backend.register(uri, NAME, {"roc_auc": "0.8123"})
    for index in range(2):  # an unrelated endpoint first: the list is paged, one endpoint per page
        client.batch_endpoints.begin_create_or_update(
            BatchEndpoint(name=f"bde-other-{index}", tags={MODEL_TAG: "another-model"})
        ).result()
    endpoint = "bde-yellowstone-1a2b3c"
    client.batch_endpoints.begin_create_or_update(
        BatchEndpoint(name=endpoint, tags={MODEL_TAG: NAME}, defaults={"deployment_name": f"v{version}"})
    ).result()
    # The deployment as the service keeps it (created by `deploy`, whose code upload goes to Blob storage and stays
    # with the fake workspace): the model as the ARM id of its version.
    body = {
        "location": "westeurope",
        "properties": {
            "model": {"referenceType": "Id", "assetId": f"{service.prefix}/models/{NAME}/versions/{version}"},
            "compute": "cpu-cluster",
            "errorThreshold": 0,
            "miniBatchSize": 1,
            "provisioningState": "Succeeded",
        },
    }
    check_body("BatchDeployment", {**body, "properties": {k: v for k, v in body["properties"].items()
                                                          if k != "provisioningState"}})  # fmt: skip
    service.resources[f"batchendpoints/{endpoint}/deployments/v{version}"] = service._resource(
        f"batchEndpoints/{endpoint}/deployments/v{version}", body, ""
    )
    deployed = backend.deployed_version(NAME)
    assert deployed is not None and deployed.version == version and deployed.roc_auc == 0.8123
    assert any(r.path == "batchEndpoints" and r.query.get("$skip") == "2" for r in service.requests)
    assert f"GET models/{NAME}/versions/{version}" in service.paths("GET")
    assert backend.deployed_version("lgbm-nothing-deployed") is None
