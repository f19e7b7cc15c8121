"""The issue-7 quality bundle used by the train and score stages (biodiv_core/model_quality.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from model_quality_data import PREDICTORS, clustered_sdm

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.evaluation.quality import (
    cv_quality,
    held_out_quality,
    read_cv_quality,
    read_threshold,
    training_folds,
    write_cv_quality,
)
from biodiv_core.training.thresholds import best_tss_threshold

PARAMS = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "num_boost_round": 60, "seed": 0}


@pytest.fixture(scope="module")
def prepared():
    """Prep-shaped data: features indexed by gbifid, coordinates in their own frame (as coords.parquet)."""
    frame, y, _ = clustered_sdm(seed=1)
    indexed = frame.set_index("gbifid")
    return indexed[PREDICTORS], y, indexed[["decimallatitude", "decimallongitude"]]


def test_cv_quality_reports_random_and_spatial_auc_and_a_training_threshold(prepared, tmp_path):
    X, y, coords = prepared
    quality = cv_quality(X, y, coords, PARAMS, cv_strategy="spatial_blocks", n_folds=4, block_size_km=50)
    assert quality["spatial_strategy"] == "spatial_blocks"
    assert quality["optimism_gap"] == pytest.approx(quality["roc_auc_random_cv"] - quality["roc_auc_spatial_cv"])
    assert quality["optimism_gap"] > 0.08  # clustered data with an unmodelled cluster effect
    assert quality["roc_auc_cv"] == quality["roc_auc_spatial_cv"]
    assert 0.0 < quality["threshold"] < 1.0 and 0.0 < quality["tss_cv"] <= 1.0
    assert quality["lift_cv"] == pytest.approx(quality["roc_auc_cv"] - quality["baseline_roc_auc_cv"])
    write_cv_quality(tmp_path, quality)
    assert read_cv_quality(tmp_path) == json.loads(json.dumps(quality))
    assert read_threshold(tmp_path) == quality["threshold"]
    assert read_threshold(tmp_path / "nowhere") == 0.5


def test_two_threads_fit_the_baseline_beside_lightgbm_with_the_same_numbers(prepared, monkeypatch):
    X, y, coords = prepared
    settings = dict(cv_strategy="spatial_blocks", n_folds=4, block_size_km=50)
    assert cv_quality(X, y, coords, PARAMS, num_threads=2, **settings) == cv_quality(
        X, y, coords, PARAMS, num_threads=1, **settings
    )
    # A failure in the baseline's thread is the call's failure, not a lost number.
    threads = []

    def failing_baseline(*args):
        import threading

        threads.append(threading.current_thread().name)
        raise DataContractError("baseline failed")

    monkeypatch.setattr("biodiv_core.evaluation.quality.baseline_oof", failing_baseline)
    with pytest.raises(DataContractError, match="baseline failed"):
        cv_quality(X, y, coords, PARAMS, num_threads=2, **settings)
    assert threads and threads[0].startswith("biodiv-beside")


def test_threshold_is_chosen_on_the_requested_folds(prepared):
    X, y, coords = prepared
    quality = cv_quality(X, y, coords, PARAMS, cv_strategy="random", n_folds=3, baseline=False)
    assert "baseline_roc_auc_cv" not in quality
    assert quality["roc_auc_cv"] == quality["roc_auc_random_cv"]
    # Recompute the random OOF predictions independently: same folds, same threshold.
    from biodiv_core.training.model import fit_model, predict_proba

    oof = np.empty(len(y))
    for train, test in training_folds(X, y, coords, "random", n_folds=3):
        oof[test] = predict_proba(fit_model(X.iloc[train], y[train], PARAMS, 1), X.iloc[test])
    assert quality["threshold"] == pytest.approx(best_tss_threshold(y, oof)[0])


def test_without_coordinates_spatial_auc_is_none_or_an_error(prepared):
    X, y, coords = prepared
    quality = cv_quality(X, y, None, PARAMS, cv_strategy="random", n_folds=3, baseline=False)
    assert quality["roc_auc_spatial_cv"] is None and quality["optimism_gap"] is None
    with pytest.raises(DataContractError, match="decimallatitude"):
        cv_quality(X, y, None, PARAMS, cv_strategy="checkerboard", n_folds=2)
    with pytest.raises(DataContractError, match="no coordinates"):
        training_folds(X, y, coords.iloc[10:], "spatial_blocks")
    with pytest.raises(ConfigError, match="cv_strategy"):
        training_folds(X, y, coords, "blocks")
    # Blocks too large for the folds: the random score stands, the reason is kept.
    too_big = cv_quality(X, y, coords, PARAMS, cv_strategy="random", n_folds=3, block_size_km=5000, baseline=False)
    assert too_big["roc_auc_spatial_cv"] is None and "smaller block_size_km" in too_big["spatial_cv_error"]


def test_held_out_quality_scores_the_test_rows_and_writes_images(prepared, tmp_path):
    from biodiv_core.training.model import fit_model

    X, y, coords = prepared
    train, test = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    booster = fit_model(X[train], y[train], PARAMS, 1)
    cv = {"roc_auc_random_cv": 0.9, "roc_auc_spatial_cv": 0.7, "optimism_gap": 0.2, "cv_strategy": "random"}
    out = held_out_quality(booster, X[train], y[train], X[test], y[test], tmp_path, threshold=0.4, cv=cv, n_top=3)
    for key in ("tss", "kappa", "brier", "boyce", "baseline_roc_auc", "lift", "sensitivity", "specificity"):
        assert isinstance(out[key], float), key
    assert out["threshold"] == 0.4 and out["roc_auc_spatial_cv"] == 0.7
    assert len(out["top_features"]) == 3 and set(out["top_features"]) <= set(PREDICTORS)
    assert sum(row["count"] for row in out["calibration"]) == test.sum()
    for path in out["images"].values():
        assert (tmp_path / path).read_bytes()[:4] == b"\x89PNG"
    json.dumps(out)  # JSON-able as is
    # With two threads the baseline fits beside the explanations: the same numbers.
    two = held_out_quality(
        booster, X[train], y[train], X[test], y[test], tmp_path / "two", threshold=0.4, cv=cv, n_top=3, num_threads=2
    )
    assert two == out


def test_stages_use_spatial_cv_and_carry_the_threshold_to_the_deployed_model(tmp_path):
    """run_train -> run_score -> run_train_to_deploy on generated data with cv_strategy=spatial_blocks."""
    import yaml
    from stage_helpers import run_prep, run_score, run_train, run_train_to_deploy

    from biodiv_core.data.datastore import features_dir, species_dir
    from biodiv_core.data.generate import generate_datastore
    from biodiv_core.serving.batch_scoring import model_threshold

    species = "Cygnus buccinator"
    generate_datastore(tmp_path / "data", sites=["yellowstone"], species=[species], rows=1200, seed=0)
    prepared = tmp_path / "prepared"
    run_prep(
        features_dir(tmp_path / "data", "yellowstone"), species_dir(tmp_path / "data", "yellowstone"), species, prepared
    )
    params = tmp_path / "lgbm_params.yml"
    params.write_text(
        yaml.safe_dump(
            {
                "initial": {"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "num_boost_round": 60},
                "search_space": {"num_leaves": {"distribution": "quniform", "low": 4, "high": 31, "q": 1}},
            }
        )
    )
    best, split, scores, deploy = (tmp_path / n for n in ("best", "split", "scores", "deploy"))
    train = run_train(
        prepared, params, best, split, n_folds=3, max_evals=2, correlation_id="c7", cv_strategy="spatial_blocks",
        block_size_km=10,
    )  # fmt: skip
    quality = read_cv_quality(best)
    assert train["cv_strategy"] == quality["cv_strategy"] == "spatial_blocks"
    assert train["threshold"] == quality["threshold"] and 0 < quality["threshold"] < 1
    assert 0.6 < train["roc_auc_spatial_cv"] < 1 and 0.6 < train["roc_auc_random_cv"] < 1

    score = run_score(best, split, scores, correlation_id="c7")
    for key in (
        "tss",
        "kappa",
        "brier",
        "boyce",
        "baseline_roc_auc",
        "lift",
        "roc_auc_random_cv",
        "roc_auc_spatial_cv",
    ):
        assert isinstance(score[key], float), key
    assert score["threshold"] == quality["threshold"]
    assert score["lift"] == pytest.approx(score["roc_auc"] - score["baseline_roc_auc"])
    assert len(score["top_features"]) == 5
    assert all(Path(p).is_file() and str(scores) in p for p in score["images"].values())

    deployed = run_train_to_deploy(prepared, best, deploy, correlation_id="c7")
    assert json.loads((deploy / "model_metadata.json").read_text())["threshold"] == quality["threshold"]
    assert model_threshold(deployed["model_uri"]) == pytest.approx(quality["threshold"])
    with pytest.raises(ConfigError, match="cv_strategy"):
        run_train(prepared, params, tmp_path / "b2", tmp_path / "s2", n_folds=3, max_evals=2, cv_strategy="blocks")


def test_steps_take_the_cv_strategy_and_report_the_quality_metadata(tmp_path, capsys):
    """azureml_steps.train/score in-process: --cv-strategy/--block-size-km reach the stage; metadata has the numbers."""
    from stage_helpers import run_prep

    from azureml_steps import score as score_step
    from azureml_steps import train as train_step
    from biodiv_core.data.datastore import features_dir, species_dir
    from biodiv_core.data.generate import generate_datastore
    from biodiv_core.step_args import ScoreArgs, TrainArgs

    names = ["--site", "everglades", "--species", "Lynx canadensis"]
    args = TrainArgs.from_argv(
        [*names, "--prepared", "p", "--params-config", "c", "--best-parameters", "b", "--split", "s"]
        + ["--n-folds", "3", "--max-evals", "1", "--seed", "0", "--num-threads", "1"]
    )
    assert (args.cv_strategy, args.block_size_km) == ("random", 20.0)
    with pytest.raises(SystemExit):
        TrainArgs.parser().parse_args(["--cv-strategy", "blocks"])

    species = "Lynx canadensis"
    generate_datastore(tmp_path / "data", sites=["everglades"], species=[species], rows=800, seed=2)
    prepared = tmp_path / "prepared"
    run_prep(
        features_dir(tmp_path / "data", "everglades"), species_dir(tmp_path / "data", "everglades"), species, prepared
    )
    from biodiv_core import settings

    config = settings.config_dir() / "lgbm_params.yml"
    best, split = tmp_path / "best", tmp_path / "split"
    train_step.main(
        args.replace(
            prepared=str(prepared), params_config=str(config), best_parameters=str(best), split=str(split),
            max_evals=1, correlation_id="c", cv_strategy="checkerboard", block_size_km=10.0,
        )
    )  # fmt: skip
    score_step.main(
        ScoreArgs(
            site="everglades", species="Lynx canadensis", best_parameters=str(best), split=str(split),
            output=str(tmp_path / "scores"), correlation_id="c",
        )
    )  # fmt: skip
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("biodiv-report ")]
    reported = {r["asset_key"]: r["metadata"] for r in (json.loads(line.split(" ", 1)[1]) for line in lines)}
    best_meta, scores_meta = reported["best_parameters"], reported["scores"]
    assert best_meta["cv_strategy"] == "checkerboard" and best_meta["block_size_km"] == 10.0
    assert 0 < best_meta["threshold"] < 1 and best_meta["threshold"] == scores_meta["threshold"]
    for key in (
        "tss",
        "kappa",
        "brier",
        "boyce",
        "baseline_roc_auc",
        "lift",
        "roc_auc_random_cv",
        "roc_auc_spatial_cv",
    ):
        assert isinstance(scores_meta[key], float), key
    assert len(scores_meta["top_features"]) == 5
    assert "![Calibration](data:image/png;base64," in scores_meta["report"]
    assert "![Response curves](data:image/png;base64," in scores_meta["report"]


def test_cv_quality_uses_the_tuners_out_of_fold_predictions_for_the_tuning_folds(prepared):
    X, y, coords = prepared
    tuned = np.linspace(0.01, 0.99, len(y))  # stands in for TuningResult.oof: whatever it holds is used
    quality = cv_quality(X, y, coords, PARAMS, cv_strategy="random", n_folds=3, baseline=False, tuned_oof=tuned)
    from sklearn.metrics import roc_auc_score

    assert quality["roc_auc_random_cv"] == pytest.approx(roc_auc_score(y, tuned))
    assert quality["threshold"] == pytest.approx(best_tss_threshold(y, tuned)[0])
    assert quality["roc_auc_spatial_cv"] != quality["roc_auc_random_cv"]  # the spatial folds are still refitted
    with pytest.raises(ValueError, match="tuned_oof has 3 rows"):
        cv_quality(X, y, coords, PARAMS, cv_strategy="random", n_folds=3, baseline=False, tuned_oof=tuned[:3])
