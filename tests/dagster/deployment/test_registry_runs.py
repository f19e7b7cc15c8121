"""Registry versions linked to their train-to-deploy runs: run_id set, source ``runs:/<id>/lgbm_gbif_model``,
and every version still loads (pyfunc, `mlflow models predict`, batch scoring) after the storage folder is gone."""

import shutil

import mlflow
import numpy as np
import pandas as pd
from deployment_helpers import FEATURES, mlflow_models_predict, sample_features, save_model, trained_in_a_run
from mlflow import MlflowClient

from biodiv_core import naming, settings
from biodiv_core.serving.batch_scoring import score_file
from biodiv_core.training.model import predict_proba
from biodiv_dagster.deployment.local import LocalDeploymentBackend

SITE, SPECIES = "yellowstone", "Cygnus buccinator"


def _client():
    uri = settings.mlflow_tracking_uri()  # explicit: an earlier test may have left MLflow's global URI elsewhere
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_version_names_its_run_and_survives_a_cleaned_storage_folder(tmp_path):
    storage = tmp_path / "storage" / "deployable_model"
    folder, run_id, booster = trained_in_a_run(storage, SITE, SPECIES)
    backend = LocalDeploymentBackend()
    name = naming.model_name(SITE, SPECIES)
    version = backend.register(str(folder), name, {"roc_auc": 0.8, "mlflow_run_id": run_id})
    assert backend.register(str(folder), name, {"roc_auc": 0.8, "mlflow_run_id": run_id}) == version  # idempotent
    registered = _client().get_model_version(name, version)
    assert registered.run_id == run_id
    assert registered.source == f"runs:/{run_id}/lgbm_gbif_model"
    backend.deploy(name, version, naming.endpoint_name(SITE, SPECIES), SITE, SPECIES)

    shutil.rmtree(tmp_path / "storage")
    raw = sample_features(n_rows=60, seed=4).astype({"landcover": str})
    source = tmp_path / "raw.csv"
    raw.to_csv(source, index=False)
    expected = predict_proba(booster, raw[FEATURES])

    location = backend.model_location(name, version)  # what biodiv batch-score and the habitat map load
    assert str(tmp_path / "storage") not in location
    assert score_file(location, source, tmp_path / "out.csv")["rows"] == 60
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["probability"], expected, rtol=1e-9)

    for uri in (f"models:/{name}/{version}", f"models:/{name}@deployed"):
        predicted = mlflow.pyfunc.load_model(uri).predict(pd.read_csv(source))
        assert predicted["gbifid"].tolist() == raw["gbifid"].tolist()
        np.testing.assert_allclose(predicted["probability"], expected, rtol=1e-9)

    result = mlflow_models_predict(f"models:/{name}@deployed", source, tmp_path)
    assert result["gbifid"].tolist() == raw["gbifid"].tolist()
    np.testing.assert_allclose(result["probability"], expected, rtol=1e-6)


def test_a_model_without_a_logged_copy_is_registered_from_its_folder(tmp_path):
    folder = tmp_path / "lgbm_gbif_model"
    save_model(folder)
    backend = LocalDeploymentBackend()
    name = naming.model_name(SITE, "Lynx canadensis")
    version = backend.register(str(folder), name, {"roc_auc": 0.8, "mlflow_run_id": "not-a-run"})
    registered = _client().get_model_version(name, version)
    assert registered.source == str(folder) and not registered.run_id
    assert backend.model_location(name, version) == str(folder)
