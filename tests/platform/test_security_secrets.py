"""Secrets planted in the environment never show up in anything the platform writes; local services stay local.

One partition is trained, registered and deployed through `biodiv run` with fake storage keys, SAS tokens,
connection strings and client secrets in the environment (which every step inherits); then every byte under
BIODIV_HOME (Dagster's SQLite event log with all metadata, run tags and captured logs; the MLflow SQLite store
with params, tags and metrics; MLflow artifacts; step outputs; endpoint records) and everything printed is
searched for each secret. The AzureML job spec built for a step is checked the same way.
"""

import base64
import json
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest
from reliability_helpers import files_under

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore


def _fake_secrets() -> dict[str, str]:
    key = base64.b64encode(secrets.token_bytes(48)).decode()  # looks like a storage account key
    sig = secrets.token_urlsafe(32)
    return {
        "key": key,
        "sig": sig,
        "client_secret": "cs~" + secrets.token_urlsafe(24),
        "ikey": str(uuid.uuid4()),
        "token": "ghp_" + secrets.token_hex(18),
    }


def _plant(monkeypatch, values: dict[str, str]) -> None:
    env = {
        "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=fakeacct;"
        f"AccountKey={values['key']};EndpointSuffix=core.windows.net",
        "AZURE_STORAGE_KEY": values["key"],
        "AZURE_STORAGE_SAS_TOKEN": f"sv=2022-11-02&ss=b&srt=co&sp=rl&se=2099-01-01T00:00:00Z&sig={values['sig']}",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-0000000000c1",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000000d1",
        "AZURE_CLIENT_SECRET": values["client_secret"],
        "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={values['ikey']};"
        "IngestionEndpoint=https://127.0.0.1:9/",
        "MLFLOW_TRACKING_TOKEN": values["token"],
        "GITHUB_TOKEN": values["token"],
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _leaks(values: dict[str, str], text_by_source: dict[str, bytes]) -> list[str]:
    found = []
    for source, blob in text_by_source.items():
        for label, secret in values.items():
            if secret.encode() in blob:
                found.append(f"{label} in {source}")
    return found


def test_planted_secrets_appear_nowhere_after_a_full_run(tmp_path, capfd, monkeypatch):
    from biodiv_dagster.cli import main

    values = _fake_secrets()
    _plant(monkeypatch, values)
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=300, seed=5)
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    monkeypatch.setenv("BIODIV_STEP_LOG_LEVEL", "INFO")  # the most verbose step logs
    code = main(
        ["run", "--site", "everglades", "--species", "Cygnus buccinator", "--data-root", str(root), "--json"]
        + ["--max-evals", "2", "--folds", "3", "--num-threads", "1"]
    )
    captured = capfd.readouterr()
    assert code == 0, captured.err[-3000:]
    assert json.loads(captured.out)["deployed"] is True

    written = {str(path): path.read_bytes() for path in files_under(settings.biodiv_home())}
    kinds = {Path(p).suffix for p in written}
    assert {".db", ".json", ".parquet"} <= kinds  # the stores, records and outputs were all scanned
    sources = {**written, "stdout": captured.out.encode(), "stderr": captured.err.encode()}
    assert _leaks(values, sources) == []


def test_an_azureml_job_spec_carries_no_secret_from_the_environment(monkeypatch):
    from biodiv_core.step_args import PrepArgs
    from biodiv_dagster.azure_settings import AzureMLSettings
    from biodiv_dagster.launcher.azureml import build_command
    from biodiv_dagster.launcher.spec import StepSpec

    values = _fake_secrets()
    _plant(monkeypatch, values)
    spec = StepSpec(
        PrepArgs(
            site="everglades",
            species="Cygnus buccinator",
            features="azureml://datastores/d/paths/f/",
            species_dir="azureml://datastores/d/paths/s/",
            output="azureml://datastores/d/paths/prepared_data/e/c/run1",
            correlation_id="cid-1",
        )
    )
    azure = AzureMLSettings(
        subscription_id="sub", resource_group="rg", workspace="ws", compute="cpu",
        pipes_account_url="https://fakeacct.blob.core.windows.net",
    )  # fmt: skip
    job = build_command(spec, azure, name="job-1", environment="biodiv-env:1", tags={"step": "prep"}, display_name="x")
    rendered = json.dumps(job._to_dict(), default=str).encode()
    assert _leaks(values, {"job spec": rendered}) == []


def test_the_ui_binds_to_localhost_by_default():
    from biodiv_dagster.cli.ui import ui_commands

    commands = ui_commands(3000, 5000)
    assert set(commands) == {"dagster-webserver", "dagster-daemon", "mlflow"}  # local SQLite store: MLflow UI too
    webserver, mlflow = commands["dagster-webserver"], commands["mlflow"]
    assert webserver[webserver.index("-h") + 1] == "127.0.0.1"
    assert mlflow[mlflow.index("--host") + 1] == "127.0.0.1"
    repo = settings.REPO_ROOT
    for path in [repo / "Makefile", repo / "workspace.yaml", *(repo / "config").glob("*.yaml"), *repo.glob("*.md")]:
        assert "0.0.0.0" not in path.read_text(), path


@pytest.mark.parametrize(
    "path",
    [".env", ".env.local", "config/.env", ".biodiv/dagster/runs.db", ".biodiv/mlflow/mlflow.db", "mlruns/0/meta.yaml"]
    + ["some/dir/state.db", ".venv/bin/python"],
)
@pytest.mark.parametrize("ignore_file", [".gitignore", ".amlignore"])
def test_local_state_and_env_files_are_git_and_upload_ignored(path, ignore_file, tmp_path):
    """Each ignore file on its own (AzureML reads .amlignore instead of .gitignore when it exists)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitignore").write_text((settings.REPO_ROOT / ignore_file).read_text())
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    checked = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo)
    assert checked.returncode == 0, f"{path} is not ignored by {ignore_file}"
