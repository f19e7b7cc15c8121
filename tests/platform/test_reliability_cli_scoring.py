"""`biodiv batch-score` with bad inputs, paths and stores, through the real process: one line, exit 2, no output.

Was, for an output path that is a folder or lies under a file, and for a truncated MLflow database: a raw Python
traceback (IsADirectoryError, FileExistsError, sqlite3.DatabaseError).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_process import assert_clean_user_error, biodiv
from deployment_helpers import sample_features, save_model

from biodiv_core import naming, settings
from biodiv_dagster.deployment.local import LocalDeploymentBackend

SITE, SPECIES = "yellowstone", "Cygnus buccinator"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "lgbm_gbif_model"
    save_model(folder)
    return folder


@pytest.fixture
def deployed(model_dir, tmp_path) -> Path:
    """A deployed model and a valid input file; returns the input."""
    backend = LocalDeploymentBackend()
    name = naming.model_name(SITE, SPECIES)
    version = backend.register(str(model_dir), name, {"roc_auc": 0.8})
    backend.deploy(name, version, naming.endpoint_name(SITE, SPECIES), SITE, SPECIES)
    path = tmp_path / "features.csv"
    sample_features(30).to_csv(path, index=False)
    return path


def _score(features: Path, output: Path):
    return biodiv("batch-score", "--site", SITE, "--species", SPECIES, "--input", features, "--output", output)


def test_an_output_path_that_is_a_folder(deployed, tmp_path):
    folder = tmp_path / "predictions.csv"
    folder.mkdir()
    assert_clean_user_error(_score(deployed, folder), f"Output {folder} is a folder")
    assert list(folder.iterdir()) == [] and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_output_path_under_a_file(deployed, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert_clean_user_error(_score(deployed, blocker / "out.csv"), f"Cannot create the output folder {blocker}")


def test_text_in_a_numeric_column_at_scoring(deployed, tmp_path):
    import pandas as pd

    frame = pd.read_csv(deployed).astype({"elevation": object})
    frame.loc[4, "elevation"] = "high"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    output = tmp_path / "out.csv"
    assert_clean_user_error(_score(bad, output), "'elevation'", "'high'")
    assert not output.exists()


def test_a_missing_feature_column_at_scoring(deployed, tmp_path):
    import pandas as pd

    bad = tmp_path / "bad.csv"
    pd.read_csv(deployed).drop(columns=["precip"]).to_csv(bad, index=False)
    assert_clean_user_error(_score(bad, tmp_path / "out.csv"), "precip")


def test_a_truncated_mlflow_database_at_scoring(deployed, tmp_path):
    db = Path(settings.mlflow_tracking_uri().removeprefix("sqlite:///"))
    backup = tmp_path / "mlflow.bak"
    shutil.copyfile(db, backup)
    with open(db, "r+b") as handle:
        handle.truncate(db.stat().st_size // 3)
    output = tmp_path / "out.csv"
    assert_clean_user_error(_score(deployed, output), "The model registry cannot be read", "malformed")
    assert not output.exists()


def test_nothing_deployed(tmp_path):
    features = tmp_path / "features.csv"
    sample_features(10).to_csv(features, index=False)
    assert_clean_user_error(_score(features, tmp_path / "out.csv"), "is deployed", "biodiv run")
