"""`biodiv run`: one partition through Dagster, registration and deployment, one JSON object on stdout."""

import json
import subprocess
import sys

import pytest

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore

CLI = [sys.executable, "-c", "import sys; from biodiv_dagster.cli import main; sys.exit(main())"]


def biodiv(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=settings.REPO_ROOT, timeout=600)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=500, seed=4)
    return root


def test_run_json_trains_registers_and_deploys(data):
    completed = biodiv(
        "run", "--site", "everglades", "--species", "Cygnus buccinator", "--data-root", str(data),
        "--max-evals", "2", "--folds", "3", "--num-threads", "1", "--json",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout  # exactly one JSON object, nothing else on stdout
    result = json.loads(lines[0])
    assert result["site"] == "everglades" and result["species"] == "Cygnus buccinator"
    assert result["rows"] == 400
    assert 0.5 < result["roc_auc"] <= 1 and 0 < result["accuracy"] <= 1
    assert isinstance(result["best_parameters"], dict) and result["best_parameters"]
    assert result["model_uri"].startswith("file://")
    assert result["registered_version"] == "1" and result["deployed"] is True
    assert result["endpoint"].startswith("b-")
    assert result["correlation_id"]

    # Everything happened in the project's Dagster instance, tagged with that correlation id.
    import dagster as dg

    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    # The deployed model's habitat map followed the deployment.
    assert sorted(run.job_name for run in runs) == ["habitat_job", "register_and_deploy_job", "train_models"]
    assert all(run.tags.get("correlation_id") == result["correlation_id"] for run in runs)
    assert all(run.is_success for run in runs)
    [habitat] = instance.fetch_materializations(dg.AssetKey("habitat_suitability"), limit=1).records
    habitat_meta = habitat.asset_materialization.metadata
    assert habitat.partition_key == "everglades|cygnus-buccinator"
    assert habitat_meta["model_version"].value == result["registered_version"]
    # The registered and deployed model link their version in the MLflow UI.
    [deployment] = instance.fetch_materializations(dg.AssetKey("batch_deployment"), limit=1).records
    version_url = f"{settings.mlflow_ui_url()}/#/models/{result['model_name']}/versions/1?workflowType=machine_learning"
    assert deployment.asset_materialization.metadata["mlflow_model_version"].value == version_url

    # The registered version names its train-to-deploy run and is sourced from it: cleaning the storage folder
    # leaves it loadable (biodiv batch-score reads it from the run's artifacts).
    import shutil

    import mlflow

    name = result["model_name"]
    uri = settings.mlflow_tracking_uri()  # explicit: an earlier test may have left MLflow's global URI elsewhere
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version(name, result["registered_version"])
    deploy_run = client.get_run(version.run_id)
    assert deploy_run.data.tags["step"] == "train_to_deploy"
    assert deploy_run.data.tags["correlation_id"] == result["correlation_id"]
    assert version.source == f"runs:/{version.run_id}/lgbm_gbif_model"
    shutil.rmtree(settings.storage_root())
    features = next((data / "everglades-training-features" / "1").iterdir())
    out = settings.biodiv_home() / "scored.csv"
    scored = biodiv(
        "batch-score", "--site", "everglades", "--species", "Cygnus buccinator", "--input", str(features),
        "--output", str(out), "--json",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert json.loads(scored.stdout.strip().splitlines()[-1])["rows"] == 500


@pytest.mark.parametrize(
    ("species", "message"),
    [
        ("Lynx canadensis", "No gold data for species 'Lynx canadensis'"),
        ("../etc", "contains a path separator or '..'"),
    ],
)
def test_bad_input_exits_non_zero_with_the_message(data, species, message):
    completed = biodiv("run", "--site", "everglades", "--species", species, "--data-root", str(data), "--json")
    assert completed.returncode == 2
    assert completed.stdout == ""  # no JSON result
    assert message in completed.stderr and completed.stderr.startswith("error: ")
    assert "Traceback" not in completed.stderr


def test_unknown_site_lists_what_exists(data):
    completed = biodiv("run", "--site", "atlantis", "--species", "Cygnus buccinator", "--data-root", str(data))
    assert completed.returncode == 2
    assert "atlantis-training-features" in completed.stderr and "everglades-training-features" in completed.stderr
