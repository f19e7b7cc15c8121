"""The job identity: a configured client id reaches the job's environment and the step's credential asks for it.

No Azure: the step's DefaultAzureCredential runs against a local HTTP server standing in for the token endpoint
AzureML compute exposes to jobs (MSI_ENDPOINT + MSI_SECRET), and the test reads the token request it receives.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from azureml_steps import pipes_blob
from biodiv_core.step_args import PrepArgs
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.launcher.azureml import build_command
from biodiv_dagster.launcher.spec import StepSpec

STORAGE_SCOPE = "https://storage.azure.com/.default"
# Variables DefaultAzureCredential reads: none may come from the machine running the tests.
_CREDENTIAL_VARS = [
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "DEFAULT_IDENTITY_CLIENT_ID",
]


def _settings(**overrides) -> AzureMLSettings:
    return AzureMLSettings(
        subscription_id="00000000-0000-0000-0000-000000000000",
        resource_group="rg-biodiv",
        workspace="ws-biodiv",
        pipes_account_url="https://account.blob.core.windows.net",
        **overrides,
    )


def _job_environment(settings: AzureMLSettings) -> dict[str, str]:
    spec = StepSpec(
        PrepArgs(
            site="yellowstone",
            species="Cygnus buccinator",
            features="azureml:yellowstone-training-features:1",
            species_dir="azureml:yellowstone-training-species:1",
            output="azureml://datastores/workspaceblobstore/paths/prepared_data/y/c/run1/",
            correlation_id="cid-identity",
        )
    )
    job = build_command(spec, settings, name="job-1", environment="azureml:biodiv-steps:1", tags={}, display_name="p")
    return dict(job.environment_variables)


@pytest.fixture
def token_endpoint(monkeypatch):
    """A stand-in for AzureML compute's managed identity endpoint; yields the list of requests it answered."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlparse(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            requests.append({"path": url.path, "query": query, "secret": self.headers.get("secret")})
            body = json.dumps(
                {
                    "access_token": "fake-token",
                    "expires_on": int(time.time()) + 3600,
                    "resource": query.get("resource"),
                    "token_type": "Bearer",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in _CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MSI_ENDPOINT", f"http://127.0.0.1:{server.server_port}/msi/token")
    monkeypatch.setenv("MSI_SECRET", "job-secret")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield requests
    server.shutdown()
    server.server_close()


def _token_request(requests: list[dict]) -> dict:
    token = pipes_blob.credential().get_token(STORAGE_SCOPE)
    assert token.token == "fake-token"
    (request,) = requests
    assert request["path"] == "/msi/token" and request["secret"] == "job-secret"
    assert request["query"]["resource"] == "https://storage.azure.com"
    return request["query"]


def test_configured_client_id_reaches_the_job_environment():
    assert _job_environment(_settings(job_identity_client_id="11111111-aaaa"))["AZURE_CLIENT_ID"] == "11111111-aaaa"
    assert "AZURE_CLIENT_ID" not in _job_environment(_settings())  # not configured: the compute decides
    assert AzureMLSettings.from_env(
        subscription_id="s", resource_group="r", workspace="w", job_identity_client_id="c"
    ).job_identity_env() == {"AZURE_CLIENT_ID": "c"}


def test_step_credential_asks_for_the_configured_client_id(token_endpoint, monkeypatch):
    for key, value in _job_environment(_settings(job_identity_client_id="11111111-aaaa")).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DEFAULT_IDENTITY_CLIENT_ID", "22222222-bbbb")  # the configured one wins
    assert _token_request(token_endpoint)["clientid"] == "11111111-aaaa"


def test_step_credential_falls_back_to_the_compute_default_identity(token_endpoint, monkeypatch):
    monkeypatch.setenv("DEFAULT_IDENTITY_CLIENT_ID", "22222222-bbbb")
    assert _token_request(token_endpoint)["clientid"] == "22222222-bbbb"


def test_step_credential_without_client_id_asks_for_the_system_assigned_identity(token_endpoint):
    assert "clientid" not in _token_request(token_endpoint)
