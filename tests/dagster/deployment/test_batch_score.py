"""`biodiv batch-score`: the deployed version's predictions, as the model itself makes them."""

import json

import numpy as np
import pandas as pd
import pytest
from deployment_helpers import FEATURES, copy_model, sample_features, save_model

from biodiv_core import naming
from biodiv_dagster.cli import main
from biodiv_dagster.deployment.local import LocalDeploymentBackend

SITE, SPECIES = "yellowstone", "Cygnus buccinator"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "plain": (root / "plain", save_model(root / "plain", seed=0)),
        "tuned": (root / "tuned", save_model(root / "tuned", seed=3, metadata={"threshold": 0.3})),
    }


def _deploy(model_dir, tags=None):
    backend = LocalDeploymentBackend()
    name = naming.model_name(SITE, SPECIES)
    version = backend.register(str(model_dir), name, tags or {"roc_auc": 0.8})
    backend.deploy(name, version, naming.endpoint_name(SITE, SPECIES), SITE, SPECIES)
    return version


def _input_file(path, frame):
    """Features as a user would hand them over: GBIF capitalisation, an extra column, shuffled columns."""
    shown = frame.rename(columns={"gbifid": "gbifID", "elevation": "Elevation"}).assign(decimallatitude=44.6)
    shown[list(reversed(shown.columns))].to_csv(path, index=False)
    return path


def test_output_matches_the_deployed_models_own_predictions(models, tmp_path, capsys):
    plain_dir, plain = models["plain"]
    tuned_dir, tuned = models["tuned"]
    features = sample_features(n_rows=300, seed=11)
    source = _input_file(tmp_path / "features.csv", features)
    expected = plain.predict(features[FEATURES])

    _deploy(plain_dir.as_uri())  # as the training asset reports it: a file:// model URI
    out = tmp_path / "out" / "predictions.parquet"
    args = ["batch-score", "--site", SITE, "--species", SPECIES, "--input", str(source), "--output", str(out)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    result = pd.read_parquet(out)
    assert list(result.columns) == ["gbifid", "probability", "predicted_class"]
    assert result["gbifid"].tolist() == features["gbifid"].tolist()
    np.testing.assert_allclose(result["probability"], expected, rtol=1e-9)
    assert result["predicted_class"].tolist() == (expected >= 0.5).astype(int).tolist()
    assert 0 < result["predicted_class"].sum() < len(result)  # the comparison sees both classes
    assert summary["rows"] == 300 and summary["version"] == "1" and summary["threshold"] == 0.5

    # A single category present and CSV output: LightGBM maps categories onto the training ones.
    grass = features[features["landcover"] == "grass"].head(20)
    csv_out = tmp_path / "grass.csv"
    _input_file(tmp_path / "grass_in.csv", grass)
    assert main(["batch-score", "--site", SITE, "--species", SPECIES, "--input", str(tmp_path / "grass_in.csv"),
                 "--output", str(csv_out)]) == 0  # fmt: skip
    np.testing.assert_allclose(pd.read_csv(csv_out)["probability"], plain.predict(grass[FEATURES]), rtol=1e-9)
    assert capsys.readouterr().out.startswith("scored 20 rows with lgbm-yellowstone-cygnus-buccinator v1")

    # Redeploying another version switches what batch-score uses; its threshold comes from the model metadata.
    _deploy(copy_model(tuned_dir, tmp_path / "tuned_copy"))
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    result = pd.read_parquet(out)
    tuned_expected = tuned.predict(features[FEATURES])
    np.testing.assert_allclose(result["probability"], tuned_expected, rtol=1e-9)
    assert result["predicted_class"].tolist() == (tuned_expected >= 0.3).astype(int).tolist()
    assert summary["version"] == "2" and summary["threshold"] == 0.3


def test_clear_errors_without_a_deployment_or_with_bad_input(models, tmp_path, capsys):
    plain_dir, _ = models["plain"]
    features = sample_features(n_rows=20)
    source = _input_file(tmp_path / "in.csv", features)
    args = ["batch-score", "--site", SITE, "--species", SPECIES, "--input", str(source)]

    assert main([*args, "--output", str(tmp_path / "p.csv")]) == 2
    assert "No version of model 'lgbm-yellowstone-cygnus-buccinator' is deployed" in capsys.readouterr().err

    _deploy(plain_dir)
    assert main([*args, "--output", str(tmp_path / "p.txt")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err

    features.drop(columns=["precip"]).to_csv(tmp_path / "missing.csv", index=False)
    missing = ["batch-score", "--site", SITE, "--species", SPECIES, "--input", str(tmp_path / "missing.csv")]
    assert main([*missing, "--output", str(tmp_path / "p.csv")]) == 2
    assert "missing column(s) ['precip']" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "p.csv"), "--threshold", "1.5"]) == 2
    assert "threshold=1.5" in capsys.readouterr().err
    assert not list(tmp_path.glob("p.*"))  # failures write nothing
