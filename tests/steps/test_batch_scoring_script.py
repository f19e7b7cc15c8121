"""The AzureML batch scoring script (`azureml_steps/batch_scoring.py`) run as AzureML's batch driver runs it.

A fresh process (tests/batch_driver.py) imports the script from a code snapshot built with azure-ai-ml's
`.amlignore` handling, with ``AZUREML_MODEL_DIR`` laid out as AzureML mounts a registered MLflow model, calls
``init()`` once and ``run(files)`` per mini-batch, and appends the returned rows to the output file.
"""

import numpy as np
import pandas as pd
import pytest
from azure_fakes import FakeMLClient
from batch_driver import read_predictions, run_driver
from deployment_helpers import FEATURES, TRAIN_PARAMS, sample_features

from biodiv_core.serving import mlflow_model
from biodiv_core.settings import REPO_ROOT
from biodiv_core.training.model import fit_model, predict_proba

THRESHOLD = 0.4


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A code snapshot, a model directory as AzureML mounts it, the booster (for expected values)."""
    root = tmp_path_factory.mktemp("batch")
    features = sample_features(seed=0)
    target = ((features["elevation"] > 1000) | (features["landcover"] == "forest")).astype(int)
    booster = fit_model(features[FEATURES], target, TRAIN_PARAMS, num_threads=1)
    model_dir = root / "azureml-models" / "lgbm-yellowstone-cygnus-buccinator" / "3"
    mlflow_model.save_model(booster, model_dir, sample=features, threshold=THRESHOLD)
    code = FakeMLClient(root / "workspace").snapshot(str(REPO_ROOT))
    return {"code": code, "model_dir": model_dir, "booster": booster}


def expected(booster, raw: pd.DataFrame) -> np.ndarray:
    return predict_proba(booster, raw[FEATURES].astype({"landcover": "category"}))


def test_driver_scores_csv_and_parquet_files_with_ids(deployment, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    first = sample_features(n_rows=30, seed=5).astype({"landcover": str})
    second = sample_features(n_rows=20, seed=6).astype({"landcover": str})
    second["gbifid"] += 5000
    # Raw files as users hand them over: GBIF's id spelling, other case, coordinates and extra columns.
    first.rename(columns={"gbifid": "gbifID", "elevation": "Elevation"}).assign(decimallatitude=44.6).to_csv(
        inputs / "a.csv", index=False
    )
    second.assign(note="roadside").to_parquet(inputs / "b.parquet", index=False)

    code, summary = run_driver(deployment["code"], deployment["model_dir"], inputs, tmp_path / "predictions.csv")
    assert code == 0 and summary["status"] == "Completed" and summary["failed_files"] == 0, summary
    assert summary["biodiv_core"].startswith(str(deployment["code"]))  # the snapshot's copy, not the repo's
    out = read_predictions(tmp_path / "predictions.csv")
    raw = pd.concat([first, second], ignore_index=True)
    assert out["gbifid"].tolist() == raw["gbifid"].tolist()  # every row, file order then row order
    np.testing.assert_allclose(out["probability"], expected(deployment["booster"], raw), rtol=1e-9)
    assert out["presence"].tolist() == (out["probability"] >= THRESHOLD).astype(int).tolist()

    # Ten files, two mini-batches of five: init once, the same rows.
    many = tmp_path / "many"
    many.mkdir()
    for i in range(10):
        sample_features(n_rows=5, seed=10 + i).assign(gbifid=lambda f, i=i: f["gbifid"] + 100 * i).to_csv(
            many / f"part-{i:02d}.csv", index=False
        )
    code, summary = run_driver(
        deployment["code"], deployment["model_dir"], many, tmp_path / "many.csv", mini_batch_size=5
    )
    assert code == 0 and summary["rows"] == 50 and len(read_predictions(tmp_path / "many.csv")) == 50


def test_bad_files_fail_their_mini_batch_and_count_against_the_error_threshold(deployment, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = sample_features(n_rows=25, seed=7)
    good.to_csv(inputs / "a_good.csv", index=False)
    good.drop(columns=["precip"]).to_csv(inputs / "b_missing_column.csv", index=False)
    text = good.astype({"elevation": object})
    text.loc[2, "elevation"] = "high"
    text.to_csv(inputs / "c_text.csv", index=False)
    (inputs / "d_notes.txt").write_text("not a table\n")
    good.drop(columns=["gbifid"]).to_csv(inputs / "e_no_ids.csv", index=False)

    code, summary = run_driver(deployment["code"], deployment["model_dir"], inputs, tmp_path / "strict.csv")
    assert code == 1 and summary["status"] == "Failed" and summary["failed_files"] == 1, summary  # threshold 0
    assert "b_missing_column.csv" in summary["errors"][0] and "['precip']" in summary["errors"][0]

    code, summary = run_driver(
        deployment["code"], deployment["model_dir"], inputs, tmp_path / "lenient.csv", error_threshold=4, max_retries=1
    )
    assert code == 0 and summary["failed_files"] == 4, summary
    errors = " ".join(summary["errors"])
    assert "'elevation' must be numeric" in errors and "'high'" in errors
    assert "d_notes.txt" in errors and "e_no_ids.csv" in errors and "'gbifid'" in errors
    assert read_predictions(tmp_path / "lenient.csv")["gbifid"].tolist() == good["gbifid"].tolist()

    code, summary = run_driver(
        deployment["code"], deployment["model_dir"], inputs, tmp_path / "three.csv", error_threshold=3
    )
    assert code == 1 and summary["failed_files"] == 4  # one more bad file than allowed fails the job
