"""The scoring path's frames: no copies of the cells it does not need, and LightGBM's predictions unchanged."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from biodiv_core.serving import scoring
from biodiv_core.training.model import lgb_matrix, predict_proba

LEVELS = ["forest", "grassland", "water"]


@pytest.fixture(scope="module")
def booster():
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame(
        {
            "elevation": rng.normal(0, 1, n),
            "temperature": rng.normal(0, 1, n),
            "land_cover": pd.Categorical(rng.choice(LEVELS, n), categories=LEVELS),
        }
    )
    eta = X["elevation"] - X["temperature"] ** 2 + (X["land_cover"] == "water") * 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": 0}
    return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=30)


def _cells(n=2000, seed=1):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "elevation": rng.normal(0, 1.5, n).astype(np.float32),
            "temperature": rng.normal(0, 1.5, n).astype(np.float32),
            # Another order of the levels, a missing value and a level training never saw.
            "land_cover": pd.Categorical(rng.choice(["water", "forest", "grassland", "glacier"], n)),
        }
    )
    frame.loc[:9, "elevation"] = np.nan
    frame.loc[10:19, "land_cover"] = np.nan
    return frame


def test_own_matrix_predicts_exactly_what_lightgbms_pandas_path_does(booster):
    cells = _cells()
    for frame in (cells, cells.astype({"elevation": "float64"}), cells.astype({"elevation": "float64"}).iloc[::3]):
        matrix = lgb_matrix(frame, booster)
        assert matrix is not None and matrix.flags["F_CONTIGUOUS"]
        widest = np.float64 if (frame.dtypes == np.float64).any() else np.float32
        assert matrix.dtype == widest  # float32 cells are not widened into a copy
        np.testing.assert_array_equal(predict_proba(booster, frame), booster.predict(frame, num_threads=1))


def test_frames_lightgbm_must_convert_itself_go_to_lightgbm(booster):
    ints = _cells().assign(elevation=lambda f: f["elevation"].fillna(0).round().astype("int64"))
    assert lgb_matrix(ints, booster) is None
    np.testing.assert_array_equal(predict_proba(booster, ints), booster.predict(ints, num_threads=1))
    no_category = _cells().assign(land_cover=1.0)
    assert lgb_matrix(no_category, booster) is None
    with pytest.raises(ValueError, match="categorical_feature do not match"):
        predict_proba(booster, no_category)  # LightGBM's own error, as before


def test_prepared_frame_shares_the_raw_float_columns_and_keeps_their_width(booster):
    inputs = scoring.model_inputs(booster)
    raw = _cells().rename(columns={"elevation": "ELEVATION"}).assign(note="x", temperature=lambda f: f["temperature"])
    raw["temperature"] = raw["temperature"].astype("float64")
    frame, unseen = scoring.prepare(raw, inputs)
    assert list(frame.columns) == inputs.features and frame.index.equals(raw.index)
    assert frame["elevation"].dtype == np.float32 and frame["temperature"].dtype == np.float64
    assert np.shares_memory(frame["elevation"].to_numpy(), raw["ELEVATION"].to_numpy())
    assert np.shares_memory(frame["temperature"].to_numpy(), raw["temperature"].to_numpy())
    assert unseen == {"land_cover": int((raw["land_cover"] == "glacier").sum())}
    # Integers and text numbers are still converted (a copy, float64).
    converted, _ = scoring.prepare(raw.assign(ELEVATION=raw["ELEVATION"].fillna(0).round().astype(int)), inputs)
    assert converted["elevation"].dtype == np.float64


def test_score_result_owns_its_columns(booster):
    inputs = scoring.model_inputs(booster)
    raw = _cells().assign(gbifid=np.arange(2000, dtype=np.int64))
    result = scoring.score(raw, booster, inputs)
    assert list(result.columns) == list(scoring.OUTPUT_COLUMNS)
    assert isinstance(result.index, pd.RangeIndex) and result["presence"].dtype == np.int64
    result.loc[0, "gbifid"] = -1
    assert raw.loc[0, "gbifid"] == 0  # the caller's table is not written through the result
