"""Run settings are defined once (biodiv_core.run_settings): precedence, checks, and everything derived from them."""

import dataclasses

import pytest

from biodiv_core.errors import ConfigError
from biodiv_core.run_settings import DEFAULTS, RunSettings, load_run_settings, setting_fields
from biodiv_core.step_args import TrainArgs
from biodiv_dagster.cli import build_parser
from biodiv_dagster.cli.platform import _settings
from biodiv_dagster.training.config import TrainingConfig, training_run_config


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("BIODIV_CONFIG_DIR", str(folder))
    return folder


def test_precedence_defaults_then_file_then_environment_then_the_run(config_dir, monkeypatch):
    assert load_run_settings() == DEFAULTS
    (config_dir / "run.yml").write_text("max_evals: 7\nseed: 3\n")
    assert (load_run_settings().max_evals, load_run_settings().seed, load_run_settings().n_folds) == (7, 3, 5)
    monkeypatch.setenv("BIODIV_MAX_EVALS", "9")
    assert (load_run_settings().max_evals, load_run_settings().seed) == (9, 3)
    assert load_run_settings({"max_evals": 2, "seed": None}).max_evals == 2  # None keeps the lower source
    run = training_run_config(max_evals=4).ops["best_parameters_and_split"]
    assert (run.max_evals, run.seed) == (4, 3)


def test_a_bad_value_names_its_source_and_the_fix(config_dir, monkeypatch):
    (config_dir / "run.yml").write_text("n_folds: 1\n")
    with pytest.raises(ConfigError, match=r"n_folds=1: k of the k-fold cross-validation must be >= 2; use e.g. 5"):
        load_run_settings()
    (config_dir / "run.yml").write_text("max_evlas: 3\n")
    with pytest.raises(ConfigError, match=r"run.yml has unknown settings \['max_evlas'\]"):
        load_run_settings()
    (config_dir / "run.yml").write_text("")
    monkeypatch.setenv("BIODIV_AUC_FLOOR", "high")
    with pytest.raises(ConfigError, match="auc_floor='high' in .*BIODIV_AUC_FLOOR is not a valid float"):
        load_run_settings()
    assert load_run_settings({"auc_floor": 0.7}).auc_floor == 0.7  # the run's own value replaces the bad one
    with pytest.raises(ConfigError, match="cv_strategy='kfold' is not supported"):
        RunSettings(cv_strategy="kfold")


def test_launchpad_flags_and_steps_derive_from_the_settings():
    names = [f.name for f in setting_fields()]
    assert list(TrainingConfig.model_fields) == names
    assert all(TrainingConfig.model_fields[f.name].description == f.metadata["help"] for f in setting_fields())
    args = build_parser().parse_args(
        ["run", "--site", "s", "--species", "x", "--folds", "3", "--cv-strategy", "checkerboard"]
    )
    assert _settings(args) == {**dict.fromkeys(names), "n_folds": 3, "cv_strategy": "checkerboard"}
    # A step argument with a setting's name takes its help and check from the setting.
    help_text = TrainArgs.parser().format_help()
    assert "hyperopt TPE evaluations per partition" in help_text
    train_settings = {f.name for f in dataclasses.fields(TrainArgs)} & set(names)
    assert train_settings == {"n_folds", "max_evals", "seed", "num_threads", "cv_strategy", "block_size_km"}


def test_biodiv_main_uses_run_yml_unless_a_flag_says_otherwise(config_dir):
    (config_dir / "run.yml").write_text("max_evals: 6\n")
    plain = _settings(build_parser().parse_args(["main"]))
    assert training_run_config(**plain).ops["prepared_data"].max_evals == 6
    flagged = _settings(build_parser().parse_args(["main", "--max-evals", "2"]))
    assert training_run_config(**flagged).ops["prepared_data"].max_evals == 2
