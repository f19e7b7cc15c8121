"""Bad config, stores and paths through the real `biodiv` process: one line, exit 2, before any step or run.

Each of these used to be found late (in the train step, after prepared_data was written, retried three times with
a traceback each) or to end in a raw Python traceback. Now each is a `ConfigError`/`NotFoundError` raised before
the first Dagster run, so nothing is written: no run, no step output, no MLflow run, no endpoint.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from cli_process import assert_clean_user_error, assert_nothing_left, biodiv, run_args

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=120, seed=2)
    return root


def _no_dagster_run() -> None:
    runs_db = settings.dagster_home() / "history" / "runs.db"
    if runs_db.exists():
        import sqlite3

        with sqlite3.connect(runs_db) as db:
            assert db.execute("select count(*) from runs").fetchone()[0] == 0


def _params_config(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(settings.REPO_ROOT / "config", folder)
    params = folder / "lgbm_params.yml"
    text = params.read_text()
    assert old in text
    params.write_text(text.replace(old, new, 1))
    return folder


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        # was: `Check failed: (num_leaves) > (1)` in the train step, after prepared_data, three tracebacks
        (
            "  num_leaves: 31",
            "  num_leaves: 1",
            "initial: LightGBM rejects this value (Check failed: (num_leaves) > (1))",
        ),
        (
            "feature_fraction: {distribution: uniform, low: 0.5, high: 1.0}",
            "feature_fraction: {distribution: uniform, low: 0.5, high: 1.5}",
            "search_space.feature_fraction = 1.5: LightGBM rejects this value",
        ),
        ("  lambda_l1: 0.0", "  lambda_l1: -1.0", "initial: LightGBM rejects this value"),
    ],
    ids=["initial_out_of_range", "search_bound_out_of_range", "negative_regularization"],
)
def test_lgbm_params_lightgbm_rejects_fail_before_any_run(store, tmp_path, old, new, fragment):
    config = _params_config(tmp_path, old, new)
    completed = biodiv(*run_args(store), env={"BIODIV_CONFIG_DIR": str(config)})
    line = assert_clean_user_error(completed, fragment, "lgbm_params.yml")
    assert "[LightGBM]" not in completed.stderr, line  # LightGBM's own C++ line is not printed as well
    _no_dagster_run()
    assert_nothing_left()


@pytest.mark.parametrize(
    ("make_uri", "fragment"),
    [
        (lambda tmp: "foo://nowhere", "unsupported URI 'foo://nowhere'"),
        (lambda tmp: _truncated_mlflow_db(tmp), "database disk image is malformed"),
    ],
    ids=["unknown_scheme", "truncated_sqlite_store"],
)
def test_an_unusable_mlflow_store_fails_before_any_run(store, tmp_path, make_uri, fragment):
    uri = make_uri(tmp_path)
    completed = biodiv(*run_args(store), env={"MLFLOW_TRACKING_URI": uri})
    assert_clean_user_error(completed, "The MLflow store", fragment, "MLFLOW_TRACKING_URI")
    _no_dagster_run()
    assert settings.storage_root().exists() is False or not any(settings.storage_root().rglob("*.parquet"))


def _truncated_mlflow_db(tmp: Path) -> str:
    db = tmp / "truncated.db"
    shutil.copyfile(settings.mlflow_tracking_uri().removeprefix("sqlite:///"), db)
    with open(db, "r+b") as handle:
        handle.truncate(db.stat().st_size // 3)
    return f"sqlite:///{db}"


def test_a_corrupt_dagster_yaml_is_one_line(store):
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("run_queue: [: not yaml\n")
    completed = biodiv(*run_args(store))
    assert_clean_user_error(completed, "dagster.yaml is not a valid Dagster instance config", "delete it")
    assert_nothing_left()


def test_a_dagster_yaml_with_an_unknown_key_is_one_line(store):
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("run_queue:\n  max_concurrent_runz: 2\n")
    completed = biodiv(*run_args(store))
    assert_clean_user_error(completed, "dagster.yaml is not a valid Dagster instance config")


FULL_DISK = textwrap.dedent(
    """
    import builtins, errno, os
    _open = builtins.open
    def _open_failing(file, *args, **kwargs):
        if ".write-probe-" in str(file):
            code = getattr(errno, os.environ["BIODIV_TEST_ERRNO"])
            raise OSError(code, os.strerror(code), str(file))
        return _open(file, *args, **kwargs)
    builtins.open = _open_failing
    """
)


@pytest.mark.parametrize(
    ("errno_name", "fragment"), [("ENOSPC", "No space left on device"), ("EROFS", "Read-only file system")]
)
def test_a_full_or_read_only_biodiv_home_names_the_cause_and_the_folder(store, tmp_path, errno_name, fragment):
    """Was: `Exceeded max_retries of 2` after three step attempts; the cause and the folder are the message now."""
    import os

    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FULL_DISK)
    env = {"PYTHONPATH": f"{faults}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "BIODIV_TEST_ERRNO": errno_name}
    completed = biodiv(*run_args(store), env=env)
    assert_clean_user_error(completed, f"Cannot write to {settings.dagster_home()} ({fragment})", "BIODIV_HOME")
    assert_nothing_left()


def test_a_storage_root_under_a_file_names_it(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    completed = biodiv(*run_args(store), env={"BIODIV_STORAGE_ROOT": str(blocker / "storage")})
    assert_clean_user_error(completed, f"Cannot write to {blocker / 'storage'}")


@pytest.mark.parametrize(
    ("layout", "found"),
    [({"latest": True}, "'latest/'"), ({"01": True}, "'01/'"), ({"v1": True, "notes.txt": False}, "'notes.txt'")],
    ids=["latest", "leading_zero", "named_and_a_file"],
)
def test_version_folders_that_are_not_positive_integers_say_what_the_layout_wants(store, tmp_path, layout, found):
    root = tmp_path / "data"
    shutil.copytree(store, root)
    features = root / "everglades-training-features"
    shutil.rmtree(features)
    features.mkdir()
    source = store / "everglades-training-features" / "1"
    for name, is_dir in layout.items():
        if is_dir:
            shutil.copytree(source, features / name)
        else:
            (features / name).write_text("x")
    completed = biodiv(*run_args(root))
    assert_clean_user_error(completed, "has no version folders", found, "positive whole number without leading zeros")
    _no_dagster_run()


def test_generate_data_with_a_root_that_is_a_file(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    completed = biodiv("generate-data", "--root", target, "--rows", "50")
    assert_clean_user_error(completed, f"Data store root {target} is a file, not a folder")
    assert target.read_text() == "x"
