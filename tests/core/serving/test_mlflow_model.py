import json
import os

import mlflow
import mlflow.lightgbm
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model
from sklearn.datasets import make_classification

from biodiv_core import tracking
from biodiv_core.serving import mlflow_model
from biodiv_core.settings import biodiv_home, mlflow_artifact_root
from biodiv_core.training.model import fit_model, predict_proba

PARAMS = {"objective": "binary", "learning_rate": 0.2, "num_leaves": 7, "num_boost_round": 20, "seed": 0}


def frame(categorical: bool):
    x, y = make_classification(n_samples=400, n_features=5, random_state=0)
    features = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    if categorical:
        features["cover"] = pd.Categorical(np.where(x[:, 0] > 0, "forest", "grass"))
    return features, y


@pytest.mark.parametrize("categorical", [False, True])
def test_saved_model_loads_with_pyfunc_and_predicts_probabilities(tmp_path, categorical):
    features, y = frame(categorical)
    booster = fit_model(features, y, PARAMS, num_threads=1)
    path = mlflow_model.save_model(booster, tmp_path, sample=features, threshold=0.4)
    assert path.name == "lgbm_gbif_model"
    names = set(os.listdir(path))
    assert {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt"} <= names
    assert any(n.startswith("model") for n in names - {"MLmodel"})
    assert "lightgbm==" in (path / "requirements.txt").read_text()

    loaded = mlflow.pyfunc.load_model(str(path))
    # As a CSV reads: text, not pandas categories (MLflow's enforcement of a string column rejects those).
    predicted = loaded.predict(features.head(50).astype({"cover": str} if categorical else {}))
    # No gbifid in the input: none out. Saved with the training frame: extrapolation flags.
    assert list(predicted.columns) == ["probability", "presence", "mess", "extrapolated"]
    assert not predicted["extrapolated"].any()  # training rows are never outside the training ranges
    expected = predict_proba(booster, features.head(50))
    np.testing.assert_allclose(predicted["probability"], expected)
    assert predicted["presence"].tolist() == (expected >= 0.4).astype(int).tolist()
    np.testing.assert_allclose(mlflow.lightgbm.load_model(str(path)).predict(features.head(50)), expected)
    meta = Model.load(str(path)).metadata
    assert meta["threshold"] == 0.4 and meta["features"] == list(features.columns)
    assert meta["categories"] == ({"cover": ["forest", "grass"]} if categorical else {})


def test_metadata_file(tmp_path):
    data = mlflow_model.write_metadata(tmp_path, "abc123", registry_name="lgbm-s-sp")
    assert json.loads((tmp_path / "model_metadata.json").read_text()) == data
    assert data["run_uri"] == "runs:/abc123/lgbm_gbif_model"
    assert data["model_name"] == "lgbm_gbif_model"


def test_run_is_tagged_and_marked_failed_on_exception(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the default: SQLite under BIODIV_HOME
    tags = {"correlation_id": "corr-1", "site": "site-a", "species": "Cygnus buccinator"}
    with pytest.raises(RuntimeError, match="boom"), tracking.tracked_run("train", **tags) as run:
        tracking.log_trial({"trial": 0, "auc": 0.7, "auc_std": 0.01, "num_boost_round": 5})
        tracking.log_trial({"trial": 1, "auc": 0.8, "auc_std": 0.01, "num_boost_round": 7})
        raise RuntimeError("boom")
    assert (biodiv_home() / "mlflow" / "mlflow.db").is_file()
    client = mlflow.MlflowClient()
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags["correlation_id"] == "corr-1"
    assert finished.data.tags["species"] == "Cygnus buccinator"
    assert finished.data.tags["step"] == "train"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "cv_auc")] == [(0, 0.7), (1, 0.8)]
    experiment = client.get_experiment(finished.info.experiment_id)
    assert experiment.artifact_location.startswith(mlflow_artifact_root().as_uri())
    assert not (tmp_path / "mlruns").exists()


def test_successful_run_finishes_and_none_tags_are_dropped():
    with tracking.tracked_run("score", correlation_id=None, site=None) as run:
        tracking.log_metrics({"roc_auc": 0.9})
    finished = mlflow.MlflowClient().get_run(run.info.run_id)
    assert finished.info.status == "FINISHED"
    assert "correlation_id" not in finished.data.tags and "site" not in finished.data.tags
