"""Where local state lives (DESIGN section 8): one folder, BIODIV_HOME, unless overridden.

Read the environment at call time so tests and two checkouts can point elsewhere.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def biodiv_home() -> Path:
    return _env_path("BIODIV_HOME", REPO_ROOT / ".biodiv")


def dagster_home() -> Path:
    return _env_path("DAGSTER_HOME", biodiv_home() / "dagster")


def mlflow_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{biodiv_home() / 'mlflow' / 'mlflow.db'}"


DEFAULT_MLFLOW_UI_PORT = 5000
MLFLOW_UI_URL_ENV = "BIODIV_MLFLOW_UI_URL"


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI that shows the tracking store, for links in Dagster metadata.

    ``BIODIV_MLFLOW_UI_URL`` if set; else the tracking server itself when it is a web server; else the local
    MLflow UI `biodiv ui` starts beside Dagster on the SQLite store (port ``BIODIV_MLFLOW_PORT``, default 5000).
    """
    explicit = os.environ.get(MLFLOW_UI_URL_ENV)
    if explicit:
        return explicit.rstrip("/")
    uri = mlflow_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('BIODIV_MLFLOW_PORT') or DEFAULT_MLFLOW_UI_PORT}"


def mlflow_artifact_root() -> Path:
    return biodiv_home() / "mlflow" / "artifacts"


def storage_root() -> Path:
    return _env_path("BIODIV_STORAGE_ROOT", biodiv_home() / "storage")


def endpoints_dir() -> Path:
    return biodiv_home() / "endpoints"


def data_root() -> Path:
    return _env_path("BIODIV_DATA_ROOT", biodiv_home() / "data")


def config_dir() -> Path:
    return _env_path("BIODIV_CONFIG_DIR", REPO_ROOT / "config")
