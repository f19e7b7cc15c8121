"""Spatial cross-validation folds (issue 7): structure, balance, errors and the optimism gap."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from model_quality_data import PARAMS, PREDICTORS, clustered_sdm
from sklearn.metrics import roc_auc_score

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.run_settings import CV_STRATEGIES
from biodiv_core.training.model import lightgbm_fit_predict
from biodiv_core.training.spatial_cv import (
    make_folds,
    out_of_fold_predictions,
    spatial_blocks,
)


@pytest.fixture(scope="module")
def data():
    return clustered_sdm(seed=1)


def _assert_partition(folds, n):
    tests = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tests), np.arange(n)), "test folds must cover every row exactly once"
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0
        assert len(train) + len(test) == n


@pytest.mark.parametrize("strategy", CV_STRATEGIES)
def test_every_strategy_partitions_rows_and_is_seeded(data, strategy):
    frame, y, _ = data
    n_folds = 2 if strategy == "checkerboard" else 5
    folds = make_folds(frame, y, strategy, n_folds=n_folds, block_size_km=50, seed=3)
    assert len(folds) == n_folds
    _assert_partition(folds, len(y))
    again = make_folds(frame, y, strategy, n_folds=n_folds, block_size_km=50, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    for _, test in folds:
        assert 0 < y[test].sum() < len(test)


def fold_ids(folds, n_rows):
    """Test fold number of each row (-1: in no test fold)."""
    ids = np.full(n_rows, -1, dtype=np.int64)
    for k, (_, test_idx) in enumerate(folds):
        ids[test_idx] = k
    return ids


def test_spatial_blocks_keep_each_block_in_one_fold_and_balance_classes(data):
    frame, y, _ = data
    folds = make_folds(frame, y, "spatial_blocks", n_folds=5, block_size_km=50)
    rows, cols = spatial_blocks(frame["decimallatitude"], frame["decimallongitude"], 50)
    ids = fold_ids(folds, len(y))
    per_block = pd.DataFrame({"block": rows * 10_000 + cols, "fold": ids}).groupby("block")["fold"].nunique()
    assert (per_block == 1).all(), "a block was split across folds"
    # Greedy balancing: each fold holds roughly a fifth of the presences and of the absences.
    for _, test in folds:
        assert abs(y[test].sum() / y.sum() - 0.2) < 0.06
        assert abs((1 - y[test]).sum() / (1 - y).sum() - 0.2) < 0.06


def test_checkerboard_never_puts_neighbouring_blocks_in_the_same_fold():
    # A 6 x 6 grid of points, one per 20 km block, near 45N.
    lat = 45.0 + np.repeat(np.arange(6), 6) * (20 / 111.32) + 0.01
    lon = -100.0 + np.tile(np.arange(6), 6) * (20 / (111.32 * np.cos(np.radians(45.3)))) + 0.01
    frame = pd.DataFrame({"decimallatitude": lat, "decimallongitude": lon})
    y = np.tile([0, 1], 18)
    y[::7] = 1 - y[::7]
    folds = make_folds(frame, y, "checkerboard", n_folds=2, block_size_km=20)
    rows, cols = spatial_blocks(lat, lon, 20)
    fold = dict(zip(zip(rows, cols, strict=True), fold_ids(folds, len(y)), strict=True))
    for (r, c), k in fold.items():
        for neighbour in ((r + 1, c), (r, c + 1)):
            if neighbour in fold:
                assert fold[neighbour] != k


def test_blocks_are_about_block_size_km_wide_at_any_latitude():
    # 1 degree of longitude is ~111 km at the equator but ~56 km at 60N.
    rows, cols = spatial_blocks(np.array([0.5, 0.5]), np.array([10.1, 11.1]), 100)
    assert cols[0] != cols[1]
    rows, cols = spatial_blocks(np.array([60.2, 60.2]), np.array([10.05, 10.95]), 100)
    assert rows[0] == rows[1]
    assert abs(int(cols[1]) - int(cols[0])) <= 1
    # ...and 100 km blocks hold points 90 km apart at 60N in at most two neighbouring columns, never three.
    lon = np.linspace(10.0, 10.0 + 4 * 100 / (111.32 * np.cos(np.radians(60.2))), 400)
    _, cols = spatial_blocks(np.full(400, 60.2), lon, 100)
    assert len(np.unique(cols)) in (4, 5)


def test_spatial_strategy_without_coordinates_is_a_data_contract_error(data):
    frame, y, _ = data
    with pytest.raises(DataContractError, match="decimallatitude"):
        make_folds(frame.drop(columns="decimallatitude"), y, "spatial_blocks")
    with pytest.raises(DataContractError, match="cv_strategy='random'"):
        make_folds(frame[["temperature"]], y, "checkerboard")
    # random CV does not need them
    assert len(make_folds(frame[["temperature"]], y, "random", n_folds=3)) == 3


def test_bad_coordinates_and_bad_settings_are_reported(data):
    frame, y, _ = data
    broken = frame.copy()
    broken.loc[3, "decimallongitude"] = np.nan
    with pytest.raises(DataContractError, match="decimallongitude.*1 missing"):
        make_folds(broken, y, "spatial_blocks")
    with pytest.raises(ConfigError, match="cv_strategy='kfold'"):
        make_folds(frame, y, "kfold")
    with pytest.raises(ConfigError, match="block_size_km"):
        make_folds(frame, y, "spatial_blocks", block_size_km=0)
    with pytest.raises(ConfigError, match="n_folds"):
        make_folds(frame, y, "random", n_folds=1)
    # One 5000 km block covers the whole area: fewer blocks than folds.
    with pytest.raises(DataContractError, match="smaller block_size_km"):
        make_folds(frame, y, "spatial_blocks", n_folds=5, block_size_km=5000)


def test_fold_missing_a_class_is_reported():
    # Presences only in the north: a north/south checkerboard cannot give every fold both classes.
    frame = pd.DataFrame({"decimallatitude": [10.0] * 10 + [20.0] * 10, "decimallongitude": [5.0] * 20})
    y = np.array([0] * 10 + [1] * 10)
    with pytest.raises(DataContractError, match="both classes"):
        make_folds(frame, y, "spatial_blocks", n_folds=2, block_size_km=100)


def test_folds_work_in_lightgbm_cv_and_show_the_spatial_optimism_gap(data):
    """Clustered points with an unmodelled per-cluster effect: random CV recognises clusters, blocks do not."""
    frame, y, _ = data
    X = frame[PREDICTORS]
    dataset = lgb.Dataset(X, label=y, free_raw_data=False)
    auc = {}
    for strategy in ("random", "spatial_blocks"):
        folds = make_folds(frame, y, strategy, n_folds=5, block_size_km=50)
        result = lgb.cv({**PARAMS, "metric": "auc"}, dataset, num_boost_round=60, folds=folds)
        auc[strategy] = result["valid auc-mean"][-1]
        oof = out_of_fold_predictions(lightgbm_fit_predict({**PARAMS, "num_boost_round": 60}), X, y, folds)
        assert abs(roc_auc_score(y, oof) - auc[strategy]) < 0.05  # pooled vs mean-of-folds AUC
    assert auc["random"] - auc["spatial_blocks"] > 0.08, auc


def test_no_gap_without_spatial_structure():
    """Without the per-cluster effect the niche alone decides presence: spatial CV is not much worse."""
    frame, y, _ = clustered_sdm(seed=2, residual=0.0, n_clusters=40)
    X = frame[["temperature", "precipitation", "noise", "land_cover"]]
    auc = {}
    for strategy in ("random", "spatial_blocks"):
        folds = make_folds(frame, y, strategy, n_folds=5, block_size_km=50)
        oof = out_of_fold_predictions(
            lightgbm_fit_predict({**PARAMS, "learning_rate": 0.05, "num_boost_round": 60}), X, y, folds
        )
        auc[strategy] = roc_auc_score(y, oof)
    assert auc["random"] - auc["spatial_blocks"] < 0.05, auc


def test_tuning_accepts_spatial_folds(data):
    """tuning.tune(folds=...) scores trials on the given folds: spatial blocks give the honest, lower CV AUC."""
    from biodiv_core import settings
    from biodiv_core.training.tuning import tune

    frame, y, _ = data
    X = frame[PREDICTORS]
    config = settings.config_dir() / "lgbm_params.yml"
    spatial = make_folds(frame, y, "spatial_blocks", n_folds=4, block_size_km=50)
    honest = tune(X, y, config, n_folds=4, max_evals=2, seed=0, folds=spatial)
    optimistic = tune(X, y, config, n_folds=4, max_evals=2, seed=0)
    assert optimistic.best_cv_auc - honest.best_cv_auc > 0.08, (optimistic.best_cv_auc, honest.best_cv_auc)
