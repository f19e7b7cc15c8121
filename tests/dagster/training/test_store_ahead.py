"""A new local MLflow store is created by a side process at preflight, off the run's critical path."""

import sqlite3

from biodiv_core import tracking
from biodiv_dagster.training import preflight


def test_a_new_sqlite_store_is_created_beside_the_run_and_a_step_meanwhile_finds_it(tmp_path, monkeypatch):
    db = tmp_path / "fresh" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("BIODIV_WARM_STEPS", "0")  # the plain `python -m biodiv_core.tracking`
    started = len(preflight._creating)
    preflight.check_mlflow_store()
    assert len(preflight._creating) == started + 1
    side = preflight._creating[-1]
    # A step starting meanwhile (here: this process) waits on the store's lock or finds the tables made.
    experiment = tracking.ensure_experiment()
    assert side.wait(timeout=300) == 0
    assert tracking.ensure_experiment() == experiment
    with sqlite3.connect(db) as connection:
        names = [row[0] for row in connection.execute("select name from experiments where name = 'biodiv'")]
    assert names == ["biodiv"]
    # An existing store is only checked, never created again.
    preflight.check_mlflow_store()
    assert len(preflight._creating) == started + 1


def test_an_existing_store_starts_no_side_process(monkeypatch):
    started = len(preflight._creating)
    preflight.check_mlflow_store()  # the test's own store exists (conftest)
    assert len(preflight._creating) == started
