"""Quadratic logistic baseline (issue 7): fits a GLM niche, copes with categoricals/NaN, gives lift."""

import numpy as np
import pandas as pd
import pytest
from model_quality_data import clustered_sdm, sigmoid
from sklearn.metrics import roc_auc_score

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.evaluation.baseline import (
    baseline_oof,
    baseline_scores,
    fit_baseline,
    lift,
    make_baseline,
    predict_baseline,
)
from biodiv_core.training.model import lightgbm_fit_predict
from biodiv_core.training.spatial_cv import make_folds, out_of_fold_predictions

PREDICTORS = ["temperature", "precipitation", "noise", "land_cover"]


@pytest.fixture(scope="module")
def niche_data():
    frame, y, truth = clustered_sdm(n_clusters=60, per_cluster=30, residual=0.0, seed=5, scattered=400)
    return frame, y, truth


def test_baseline_recovers_a_quadratic_niche(niche_data):
    """The niche is logistic-quadratic, so the baseline should come close to the Bayes AUC."""
    frame, y, truth = niche_data
    train, test = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    X = frame[PREDICTORS]
    scores = baseline_scores(X[train], y[train], X[test], y[test], model_roc_auc=0.9)
    bayes = roc_auc_score(y[test], truth[test])
    assert scores["baseline_roc_auc"] > bayes - 0.04, (scores, bayes)
    assert scores["lift"] == pytest.approx(0.9 - scores["baseline_roc_auc"])


def test_baseline_handles_categoricals_missing_values_and_unseen_levels(niche_data):
    frame, y, _ = niche_data
    X = frame[PREDICTORS].copy()
    X.loc[X.index[:20], "temperature"] = np.nan
    model = fit_baseline(X, y, C=0.5)
    unseen = X.head(5).copy()
    unseen["land_cover"] = pd.Categorical(["tundra"] * 5)
    p = predict_baseline(model, unseen)
    assert p.shape == (5,) and np.all((p > 0) & (p < 1))
    string_cover = X.assign(land_cover=X["land_cover"].astype(str))
    assert predict_baseline(fit_baseline(string_cover, y), string_cover.head(3)).shape == (3,)


def test_baseline_on_pure_noise_is_near_chance():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=1200), "b": rng.normal(size=1200)})
    y = rng.integers(0, 2, 1200)
    folds = make_folds(X, y, "random", n_folds=4)
    assert abs(roc_auc_score(y, baseline_oof(X, y, folds)) - 0.5) < 0.06


def test_lightgbm_lifts_over_the_baseline_on_a_non_quadratic_niche():
    """A step response and an interaction are outside the quadratic family: the boosted model should win."""
    rng = np.random.default_rng(3)
    n = 2500
    X = pd.DataFrame({"a": rng.uniform(-2, 2, n), "b": rng.uniform(-2, 2, n), "c": rng.normal(size=n)})
    logit = 3.0 * np.sign(np.sin(2.5 * X["a"])) + 2.0 * (X["b"] > 0.5) * (X["c"] > 0)
    y = (rng.random(n) < sigmoid(logit.to_numpy() - 0.5)).astype(int)
    folds = make_folds(X, y, "random", n_folds=4)
    fit_predict = lightgbm_fit_predict({"learning_rate": 0.1, "num_boost_round": 80})
    model_auc = roc_auc_score(y, out_of_fold_predictions(fit_predict, X, y, folds))
    base_auc = roc_auc_score(y, baseline_oof(X, y, folds))
    assert lift(model_auc, base_auc) > 0.05, (model_auc, base_auc)


def test_baseline_errors_name_the_problem(niche_data):
    frame, y, _ = niche_data
    with pytest.raises(ConfigError, match="C must be positive"):
        make_baseline(frame[PREDICTORS], C=0)
    with pytest.raises(DataContractError, match="both present and absent"):
        fit_baseline(frame[PREDICTORS], np.zeros(len(y)))
    with pytest.raises(DataContractError, match="at least one feature"):
        make_baseline(frame[[]])
