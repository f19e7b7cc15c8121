"""Before the first step: the config is legal and every store can be reached and written.

Found in a step, these cost a prepared_data folder, three retries and a traceback each: LightGBM's range checks
(`Check failed: (num_leaves) > (1)`), an MLflow URI with a scheme MLflow has no store for, a truncated MLflow
database, a read-only or full BIODIV_HOME. Each is one ConfigError here, naming the file or folder.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

from biodiv_core import settings
from biodiv_core.errors import ConfigError


def check_params_config() -> None:
    """lgbm_params.yml through LightGBM; remembered per file content and LightGBM version under BIODIV_HOME, since
    importing LightGBM costs the CLI a second or more (several on a loaded machine) that only a changed file needs."""
    import hashlib
    from importlib.metadata import version

    from biodiv_core.training.params import load_params
    from biodiv_dagster.training.assets import PARAMS_CONFIG_FILE

    path = settings.config_dir() / PARAMS_CONFIG_FILE
    config = load_params(path)  # the file's own checks: cheap, every time
    digest = hashlib.sha256(path.read_bytes() + version("lightgbm").encode()).hexdigest()[:16]
    passed = settings.biodiv_home() / "preflight" / f"lgbm-params-{digest}.ok"
    if passed.exists():
        return
    from biodiv_core.training.lightgbm_check import check_with_lightgbm

    check_with_lightgbm(config)
    passed.parent.mkdir(parents=True, exist_ok=True)
    passed.write_text(str(path) + "\n")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


SQLITE_PREFIX = "sqlite:///"


def _check_sqlite_store(path: Path) -> None:
    """A SQLite store read with the standard library: importing MLflow costs `biodiv run` 2-3 s before its first
    step, and the runs import it in the background anyway. A missing file is created ahead of the steps (its
    folder must be writable); an existing one must be a whole database (`quick_check` reads every page)."""
    import sqlite3

    if not path.exists():
        check_writable(path.parent)
        _create_store_ahead()
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            (result,) = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:
        result = _first_line(exc)
    if result != "ok":
        raise sqlite3.DatabaseError(result)


_creating: list[subprocess.Popen] = []  # the side process creating a new store (held: no zombie warning)


def _create_store_ahead() -> None:
    """Create a new SQLite store in a side process while the prep step works: its ~50 MLflow migrations cost
    ~3 s of CPU, which the first tracked step (train) would otherwise pay on the run's critical path. Not in a
    thread: alembic keeps its migration context in module globals, and Dagster stamps a run's event log with
    alembic in this process meanwhile. The side process holds the store's lock while it creates the tables
    (`tracking.ensure_experiment`), so a step that starts meanwhile waits for them; a failure is that step's
    to report."""
    from biodiv_dagster.launcher import warm

    command = warm.command("biodiv_core.tracking", [])
    devnull = subprocess.DEVNULL
    _creating.append(subprocess.Popen(command, stdin=devnull, stdout=devnull, stderr=devnull, start_new_session=True))


def check_mlflow_store() -> None:
    """The tracking store and the model registry answer (and a SQLite store is a readable database)."""
    uri = settings.mlflow_tracking_uri()
    try:
        if uri.startswith(SQLITE_PREFIX) and len(uri) > len(SQLITE_PREFIX):
            _check_sqlite_store(Path(uri.removeprefix(SQLITE_PREFIX)))
            return
        from mlflow import MlflowClient

        from biodiv_core.tracking import ensure_experiment

        ensure_experiment()
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models(max_results=1)
    except ConfigError:
        raise
    except Exception as exc:  # any store failure: unsupported scheme, corrupt file, server down
        raise ConfigError(
            f"The MLflow store {uri} cannot be used ({_first_line(exc)}): set MLFLOW_TRACKING_URI to a reachable "
            "store (sqlite:///path/mlflow.db, http://host:port), or unset it to use BIODIV_HOME/mlflow."
        ) from exc


def writable_folders() -> list[Path]:
    return [
        settings.dagster_home(),
        settings.storage_root(),
        settings.endpoints_dir(),
        settings.biodiv_home() / "locks",
    ]


def check_writable(folder: Path) -> None:
    """Create the folder and a probe file in it; the cause (read-only, no space left) is the message."""
    probe = folder / f".write-probe-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)  # a full disk fails on data, not on an empty file
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise ConfigError(
            f"Cannot write to {folder} ({exc.strerror or _first_line(exc)}): free space there or point BIODIV_HOME "
            "(or BIODIV_STORAGE_ROOT / DAGSTER_HOME) at a writable folder."
        ) from exc
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def preflight(check_config: bool = True) -> None:
    """Every check, cheapest first: local folders, the run's config, the MLflow store."""
    for folder in writable_folders():
        check_writable(folder)
    if check_config:
        check_params_config()
    check_mlflow_store()
