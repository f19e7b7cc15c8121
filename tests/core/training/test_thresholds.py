"""Thresholds and SDM metrics (issue 7): hand-made cases, sklearn agreement, Boyce behaviour."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, cohen_kappa_score, confusion_matrix

from biodiv_core.errors import DataContractError
from biodiv_core.training.thresholds import (
    best_tss_threshold,
    boyce_index,
    brier_score,
    calibration_table,
    cohen_kappa,
    threshold_metrics,
    tss,
)


def test_tss_threshold_on_a_hand_made_example():
    # Absent scores .05 .1 .2 .75; present .3 .7 .8 .9. Cutting at >=.3 catches every presence and
    # one absence: TSS = 1 + 3/4 - 1 = 0.75, the unique best. The threshold sits between .2 and .3.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.05, 0.1, 0.2, 0.75, 0.3, 0.7, 0.8, 0.9])
    threshold, best = best_tss_threshold(y, p)
    assert threshold == pytest.approx(0.25)
    assert best == pytest.approx(0.75)
    assert tss(y, (p >= threshold).astype(int)) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(5))
def test_tss_threshold_is_the_best_of_all_cutoffs(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 300), 0, 1)
    threshold, best = best_tss_threshold(y, p)
    brute = max(tss(y, (p >= c).astype(int)) for c in np.unique(p))
    assert best == pytest.approx(brute)
    assert tss(y, (p >= threshold).astype(int)) == pytest.approx(best)
    assert p.min() < threshold <= p.max()


def test_tss_of_perfect_and_inverted_predictions():
    y = np.array([0, 1, 0, 1, 1])
    assert tss(y, y) == 1.0
    assert tss(y, 1 - y) == -1.0
    with pytest.raises(DataContractError, match="both present and absent"):
        best_tss_threshold(np.ones(4), np.linspace(0, 1, 4))


@pytest.mark.parametrize("seed", range(3))
def test_kappa_and_brier_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.4 * y + rng.uniform(0, 0.6, 200), 0, 1)
    predicted = (p >= 0.5).astype(int)
    assert cohen_kappa(y, predicted) == pytest.approx(cohen_kappa_score(y, predicted))
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    tn, fp, fn, tp = confusion_matrix(y, predicted).ravel()
    assert tss(y, predicted) == pytest.approx(tp / (tp + fn) - fp / (fp + tn))


def test_boyce_is_high_for_a_good_model_and_near_zero_for_random_scores():
    rng = np.random.default_rng(0)
    truth = rng.beta(1.5, 3.0, 5000)
    y = rng.random(5000) < truth
    assert boyce_index(truth[y], truth) > 0.8
    assert boyce_index(1 - truth[y], 1 - truth) < -0.5  # an inverted model
    # Scores unrelated to presence: Boyce fluctuates around 0 (moving windows are autocorrelated, so average).
    random_boyce = []
    for seed in range(20):
        scores = np.random.default_rng(seed + 1).random(5000)
        random_boyce.append(boyce_index(scores[y], scores))
    assert abs(np.mean(random_boyce)) < 0.3
    assert np.mean(random_boyce) < boyce_index(truth[y], truth) - 0.5


def test_boyce_edge_cases():
    assert np.isnan(boyce_index([0.5, 0.5], [0.5, 0.5, 0.5]))  # no spread: undefined
    with pytest.raises(DataContractError, match="presence"):
        boyce_index([], [0.1, 0.2])


def test_calibration_table_of_calibrated_probabilities():
    rng = np.random.default_rng(1)
    p = rng.random(20_000)
    y = (rng.random(20_000) < p).astype(int)
    table = calibration_table(y, p, n_bins=10)
    assert table["count"].sum() == 20_000
    assert len(table) == 10
    assert np.allclose(table["observed"], table["mean_predicted"], atol=0.04)
    assert (table["bin_low"] <= table["mean_predicted"]).all() and (table["mean_predicted"] <= table["bin_high"]).all()
    # An overconfident model (squashed towards 0/1) is off the diagonal.
    overconfident = calibration_table(y, np.clip((p - 0.5) * 3 + 0.5, 0, 1))
    low_bin = overconfident.iloc[1]
    assert low_bin["observed"] > low_bin["mean_predicted"] + 0.05


def test_threshold_metrics_bundle():
    rng = np.random.default_rng(2)
    truth = rng.random(1000)
    y = (rng.random(1000) < truth).astype(int)
    metrics = threshold_metrics(y, truth, 0.5)
    assert set(metrics) == {"threshold", "tss", "kappa", "sensitivity", "specificity", "brier", "boyce", "roc_auc"}
    assert metrics["tss"] == pytest.approx(metrics["sensitivity"] + metrics["specificity"] - 1)
    assert 0.7 < metrics["roc_auc"] < 0.9
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, truth))
    with pytest.raises(DataContractError, match="y_true has 3 values"):
        threshold_metrics([0, 1, 1], [0.2, 0.4], 0.5)
    with pytest.raises(DataContractError, match="NaN"):
        threshold_metrics([0, 1], [0.2, np.nan], 0.5)
