"""Every test gets its own BIODIV_HOME, DAGSTER_HOME and MLflow store: no test shares state."""

import pytest

pytest_plugins = ["conftest_azurite"]  # Azurite fixture for the AzureML backend tests


@pytest.fixture(autouse=True)
def isolated_state(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("biodiv_home")
    monkeypatch.setenv("BIODIV_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    (home / "dagster").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("BIODIV_DATA_ROOT", raising=False)
    monkeypatch.delenv("BIODIV_STORAGE_ROOT", raising=False)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    return home
