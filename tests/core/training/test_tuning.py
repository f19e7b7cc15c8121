import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from biodiv_core.errors import DataContractError
from biodiv_core.training.cross_validation import FoldData, Readings, cross_validate, stratified_folds
from biodiv_core.training.model import fit_model, predict_proba
from biodiv_core.training.params import parse_params
from biodiv_core.training.tuning import tune

SPACE = {
    "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.3},
    "num_leaves": {"distribution": "quniform", "low": 4, "high": 31, "q": 1},
    "min_child_samples": {"distribution": "quniform", "low": 5, "high": 40, "q": 1},
    "feature_fraction": {"distribution": "uniform", "low": 0.6, "high": 1.0},
}


@pytest.fixture(scope="module")
def config():
    initial = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_child_samples": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "max_bin": 63,
        "num_boost_round": 80,
    }
    return parse_params({"initial": initial, "search_space": SPACE}, source="test")


@pytest.fixture(scope="module")
def data():
    x, y = make_classification(n_samples=1500, n_features=8, n_informative=4, flip_y=0.05, random_state=1)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame["cover"] = np.where(x[:, 0] > 0.3, "forest", np.where(x[:, 0] < -0.5, "water", "grass"))
    return frame, y


def test_same_seed_same_best_parameters_and_threads_do_not_change_results(config, data):
    x, y = data
    first = tune(x, y, config, n_folds=3, max_evals=4, seed=3, num_threads=1)
    again = tune(x, y, config, n_folds=3, max_evals=4, seed=3, num_threads=2)
    assert first.best_params == again.best_params
    assert [t["auc"] for t in first.trials] == [t["auc"] for t in again.trials]
    other = tune(x, y, config, n_folds=3, max_evals=4, seed=4, num_threads=1)
    assert [t["params"] for t in other.trials[1:]] != [t["params"] for t in first.trials[1:]]


def test_tuning_finds_a_decent_model_and_its_rounds_reproduce(config, data):
    x, y = data
    train, test = np.arange(len(y)) < 1100, np.arange(len(y)) >= 1100
    result = tune(x[train], y[train], config, n_folds=3, max_evals=4, seed=0, num_threads=1)
    assert len(result.trials) == 4
    assert result.trials[0]["params"] == {k: config.initial[k] for k in SPACE}  # first trial: the initial guess
    assert result.best_cv_auc == max(t["auc"] for t in result.trials)
    assert 1 <= result.best_params["num_boost_round"] <= config.num_boost_round
    assert result.best_cv_auc > 0.85
    booster = fit_model(x[train], y[train], result.best_params, num_threads=1)
    assert booster.current_iteration() == result.best_params["num_boost_round"]
    holdout = roc_auc_score(y[test], predict_proba(booster, x[test]))
    assert holdout > result.best_cv_auc - 0.05
    assert booster.pandas_categorical  # the string column went in as a categorical feature


def test_cv_matches_lightgbm_cv_on_the_same_folds(config, data):
    x, y = data
    folds = stratified_folds(y, 3, seed=0)
    fold_data = FoldData(x, y, folds, config.binning_params())
    params = {**config.params_from_sample({k: config.initial[k] for k in SPACE}), "seed": 0, "deterministic": True}
    reference = lgb.cv(
        {**params, "metric": "auc", "num_threads": 1, "verbosity": -1, "feature_pre_filter": False},
        lgb.Dataset(x.assign(cover=x["cover"].astype("category")), y, params={"max_bin": 63}),
        num_boost_round=42,
        folds=folds,
    )["valid auc-mean"]
    every_round = cross_validate(params, fold_data, 42, patience=42, prune=False, every=1)
    assert every_round.auc == pytest.approx(max(reference), abs=1e-9)
    assert every_round.best_rounds == int(np.argmax(reference)) + 1

    # By default the AUC is read every patience // 10 rounds (here 4) and after the last round: the best of those.
    ours = cross_validate(params, fold_data, 42, patience=42, prune=False)
    read = [*range(4, 42, 4), 42]
    assert int(np.argmax(reference)) + 1 not in read  # else the two would not differ
    assert ours.auc == pytest.approx(max(reference[r - 1] for r in read), abs=1e-9)
    assert ours.auc < every_round.auc
    assert ours.best_rounds == max(read, key=lambda r: reference[r - 1])
    assert ours.rounds_trained == 42


def test_early_stopping_and_pruning_train_fewer_rounds(config, data):
    x, y = data
    fold_data = FoldData(x, y, stratified_folds(y, 3, seed=0), config.binning_params())
    params = {"objective": "binary", "learning_rate": 0.5, "num_leaves": 31, "seed": 0, "deterministic": True}
    stopped = cross_validate(params, fold_data, 300, patience=10, prune=False)
    assert stopped.rounds_trained == stopped.best_rounds + 10 < 300
    pruned = cross_validate(params, fold_data, 300, patience=10, incumbent=0.9999, prune=True)
    assert pruned.pruned and pruned.rounds_trained <= stopped.rounds_trained

    # Patience 30: the AUC is read every 3 rounds; the stop comes 30 rounds after the best reading, the same with
    # the folds in parallel threads (trained in chunks of readings).
    strided = cross_validate(params, fold_data, 300, patience=30, prune=False)
    assert strided.best_rounds % 3 == 0 and strided.rounds_trained == strided.best_rounds + 30 < 300
    threaded = cross_validate(params, fold_data, 300, patience=30, prune=False, num_threads=2)
    assert (threaded.auc, threaded.best_rounds, threaded.fold_aucs) == (
        strided.auc,
        strided.best_rounds,
        strided.fold_aucs,
    )
    assert threaded.rounds_trained >= strided.rounds_trained  # a chunk may train past the stop: counted
    pruned = cross_validate(params, fold_data, 300, patience=30, incumbent=0.9999, prune=True)
    assert pruned.pruned and pruned.rounds_trained % 3 == 0 and pruned.rounds_trained <= strided.rounds_trained


@pytest.mark.parametrize(("learning_rate", "num_leaves", "patience"), [(0.2, 4, 10), (0.5, 31, 10), (0.5, 4, 30)])
def test_threads_give_the_same_outcome_when_the_first_folds_are_promoted(
    config, data, learning_rate, num_leaves, patience
):
    """The first rung's folds stop inside a thread chunk, then the others catch up: every later reading must
    still be the AUC of all folds at one round (these three mixed rounds once, and 2 threads changed them)."""
    x, y = data
    fold_data = FoldData(x.drop(columns="cover"), y, stratified_folds(y, 4, seed=0), config.binning_params())
    params = {"objective": "binary", "learning_rate": learning_rate, "num_leaves": num_leaves}
    params |= {"seed": 0, "deterministic": True}
    promoted = {"incumbent": 0.5, "incumbent_folds": (0.5,) * 4, "patience": patience, "oof_if_leading": True}
    serial = cross_validate(params, fold_data, 300, **promoted)
    threaded = cross_validate(params, fold_data, 300, num_threads=2, **promoted)
    assert serial.folds_trained == 4 and not serial.pruned
    outcome = ("auc", "auc_std", "best_rounds", "fold_aucs", "folds_trained", "pruned")
    assert [getattr(threaded, k) for k in outcome] == [getattr(serial, k) for k in outcome]
    assert threaded.rounds_trained >= serial.rounds_trained  # a chunk may train past the stop: counted
    np.testing.assert_allclose(threaded.oof(), serial.oof())  # both predict at the best reading


def test_readings_fall_on_a_grid_of_every_rounds_and_on_the_last_round(config, data):
    readings = Readings(every=4, max_rounds=10)
    assert len(readings) == 3 and [readings.rounds(i) for i in range(3)] == [4, 8, 10]
    assert readings.steps(0, 3) == [4, 4, 2] and readings.steps(1, 2) == [4, 2]
    assert len(Readings(every=5, max_rounds=3)) == 1 and Readings(every=5, max_rounds=3).steps(0, 1) == [3]
    x, y = data
    fold_data = FoldData(x, y, stratified_folds(y, 3, seed=0), config.binning_params())
    with pytest.raises(ValueError, match="every=0"):
        cross_validate({"objective": "binary"}, fold_data, 10, patience=10, every=0)


def test_too_few_rows_of_a_class_for_the_folds(config, data):
    x, y = data
    y = np.zeros(len(y), dtype=int)
    y[:2] = 1
    with pytest.raises(DataContractError, match="n_folds=3 needs at least 3 of each class"):
        tune(x, y, config, n_folds=3, max_evals=2)
    with pytest.raises(DataContractError, match="0 \\(ABSENT\\) or 1 \\(PRESENT\\)"):
        tune(x, np.full(len(y), 2), config, n_folds=3, max_evals=2)


def test_a_trial_behind_on_the_first_folds_stops_there_and_a_leader_trains_them_all(config, data):
    x, y = data
    fold_data = FoldData(x, y, stratified_folds(y, 4, seed=0), config.binning_params())
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 7, "seed": 0, "deterministic": True}
    full = cross_validate(params, fold_data, 60, patience=10, prune=False)
    assert full.folds_trained == 4 and len(full.fold_aucs) == 4

    behind = cross_validate(params, fold_data, 60, patience=10, incumbent=0.999, incumbent_folds=(0.999,) * 4)
    assert behind.pruned and behind.folds_trained == 2  # successive halving: half the folds, then stop
    rung_mean = float(np.mean(behind.fold_aucs))
    assert behind.auc == pytest.approx(0.999 + rung_mean - 0.999) and behind.auc < 0.999

    # Ahead on the first folds: the others catch up and the result is the one of training all folds together.
    ahead = cross_validate(params, fold_data, 60, patience=10, incumbent=0.5, incumbent_folds=(0.5,) * 4)
    assert not ahead.pruned and ahead.folds_trained == 4
    assert (ahead.auc, ahead.best_rounds, ahead.fold_aucs) == (full.auc, full.best_rounds, full.fold_aucs)
    threaded = cross_validate(
        params, fold_data, 60, num_threads=2, patience=10, incumbent=0.5, incumbent_folds=(0.5,) * 4
    )  # folds in parallel threads, trained in chunks of rounds: the same curves
    assert (threaded.auc, threaded.best_rounds, threaded.folds_trained) == (full.auc, full.best_rounds, 4)


def test_tuning_returns_the_out_of_fold_predictions_of_its_best_trial(config, data):
    x, y = data
    result = tune(x, y, config, n_folds=4, max_evals=6, seed=1, num_threads=1)
    assert all(t["folds_trained"] in (2, 4) for t in result.trials)
    best = max(result.trials, key=lambda t: t["auc"])
    assert best["folds_trained"] == 4  # the best trial always trained every fold
    assert result.oof is not None and np.isfinite(result.oof).all() and len(result.oof) == len(y)
    # The same folds refitted with the best parameters (binned per fold: nearly, not exactly, the same).
    refit = np.empty(len(y))
    for train, test in stratified_folds(y, 4, seed=1):
        refit[test] = predict_proba(fit_model(x.iloc[train], y[train], result.best_params, 1), x.iloc[test])
    assert roc_auc_score(y, result.oof) == pytest.approx(roc_auc_score(y, refit), abs=0.01)
