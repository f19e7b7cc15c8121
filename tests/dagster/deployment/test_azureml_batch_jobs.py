"""Invoked batch jobs report the files they could not score (`biodiv batch-score --on-endpoint`, azureml mode).

The fake workspace runs an invoked batch job as a real job: the deployment's scoring script under the batch
driver (tests/batch_driver.py) with the deployment's error_threshold and retries, errors in logs/user/error.
"""

import json

import pandas as pd
import pytest
from azureml_helpers import workspace_client
from test_azureml_serving import NAME, SITE, SPECIES, _raw, _trained_on_the_workspace

from biodiv_core.serving.batch_scoring import failed_file_line, failed_files_in
from biodiv_core.serving.scoring import OUTPUT_COLUMNS
from biodiv_core.serving.similarity import MESS_COLUMNS
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.cli import main as cli_main
from biodiv_dagster.deployment.azureml import AzureMLBackend


@pytest.fixture
def deployed(tmp_path, monkeypatch, capsys):
    def deploy(error_threshold: int):
        monkeypatch.setenv("AZUREML_BATCH_ERROR_THRESHOLD", str(error_threshold))
        monkeypatch.setenv("AZUREML_POLL_INTERVAL_SECONDS", "0.1")
        monkeypatch.setenv("AZUREML_COMPUTE", "cpu-cluster")
        monkeypatch.setenv("BIODIV_DEPLOYMENT_MODE", "azureml")
        client = workspace_client(tmp_path, monkeypatch)
        model_uri, run_id, _ = _trained_on_the_workspace(client, tmp_path)
        backend = AzureMLBackend(AzureMLSettings.from_env(), client)
        version = backend.register(model_uri, NAME, {"mlflow_run_id": run_id})
        backend.deploy(NAME, version, backend.endpoint_name(SITE, SPECIES), SITE, SPECIES)
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        raw = _raw()
        raw.to_csv(inputs / "a_good.csv", index=False)
        raw.drop(columns=["precip"]).to_csv(inputs / "b_no_precip.csv", index=False)
        capsys.readouterr()  # the fake's own output while registering (MLflow's download progress)
        return client, inputs, raw

    return deploy


def _score(inputs, output, *extra):
    args = ["batch-score", "--site", SITE, "--species", SPECIES, "--input", str(inputs), "--output", str(output)]
    return cli_main([*args, "--on-endpoint", *extra])


def test_a_failed_file_fails_the_job_and_is_named(deployed, tmp_path, capsys):
    client, inputs, _ = deployed(error_threshold=0)
    assert _score(inputs, tmp_path / "out.csv") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    (job,) = client.jobs.created
    assert f"batch job {job} ended Failed with 1 failed mini-batch(es): " in error
    assert "b_no_precip.csv" in error and "a_good.csv" not in error
    assert client.jobs.record(job).status == "Failed"


def test_failures_within_the_threshold_complete_but_are_reported(deployed, tmp_path, capsys):
    client, inputs, raw = deployed(error_threshold=1)
    assert _score(inputs, tmp_path / "out.csv", "--json") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["status"] == "Completed" and summary["failed_mini_batches"] == 1
    assert [f.rsplit("/", 1)[-1] for f in summary["failed_files"]] == ["b_no_precip.csv"]
    assert "warning: batch job" in captured.err and "b_no_precip.csv" in captured.err
    # The batch driver's append_row output has no header: the scoring script's columns, in order.
    columns = [*OUTPUT_COLUMNS, *MESS_COLUMNS]
    predictions = pd.read_csv(tmp_path / "out.csv", header=None, names=columns)
    assert predictions["extrapolated"].dtype == bool
    assert predictions["gbifid"].tolist() == raw["gbifid"].tolist()  # the good file's rows, scored


def test_failed_file_names_survive_any_log_layout(tmp_path):
    odd = 'dir with "quotes" | and: colons/c.csv'
    log = tmp_path / "logs" / "user" / "error" / "10.0.0.5" / "process001.txt"
    log.parent.mkdir(parents=True)
    log.write_text(f"Traceback ...\nDataContractError: 2 of 2 file(s) could not be scored: "
                   f"{failed_file_line('/m/a.csv', 'no gbifid')} | {failed_file_line(odd, 'x')}\n"
                   f"retry: {failed_file_line('/m/a.csv', 'no gbifid')}\n")  # fmt: skip
    assert failed_files_in(tmp_path) == ("/m/a.csv", odd)
