"""Every test gets its own BIODIV_HOME, DAGSTER_HOME and MLflow store: no test shares state."""

import os
import shutil
import subprocess
import sys

import pytest

pytest_plugins = ["conftest_azurite"]  # Azurite fixture for the AzureML backend tests


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory):
    """An empty, fully migrated MLflow SQLite store, made once per session.

    Creating a store runs MLflow's alembic migrations (~4 s here); copying the result per test is instant.
    Built in a subprocess so the test process keeps no MLflow global state from it.
    """
    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).search_experiments()",
            f"sqlite:///{path}",
        ],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(autouse=True)
def isolated_state(tmp_path_factory, monkeypatch, mlflow_template_db):
    # In-process CLI calls set variables for their step subprocesses (os.environ); none may leak into the next test.
    saved_environ = dict(os.environ)
    home = tmp_path_factory.mktemp("biodiv_home")
    monkeypatch.setenv("BIODIV_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    (home / "dagster").mkdir()
    shutil.copyfile(mlflow_template_db, home / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("BIODIV_DATA_ROOT", raising=False)
    monkeypatch.delenv("BIODIV_STORAGE_ROOT", raising=False)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    yield home
    os.environ.clear()
    os.environ.update(saved_environ)
