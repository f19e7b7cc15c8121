"""Property tests: what prep accepts, LightGBM takes as it is; what LightGBM would change, prep rejects by name.

Feature names: any text hypothesis draws (unicode, spaces, JSON characters, empty). Prep either rejects the
column with a DataContractError naming it, or every prepared name comes back unchanged from a LightGBM booster
trained on the prepared table (was: spaces became '_' inside LightGBM and training then asked the table for a
column it did not have; JSON characters failed training three times over). Values: any float, infinities and
values past float32 included: rejected naming the column, or prepared finite.
"""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biodiv_core.data.contract import prepare_dataset
from biodiv_core.errors import DataContractError

N = 24


def _tables(name: str, values: list[float]):
    features = pd.DataFrame({"gbifid": np.arange(N), "ndvi": np.linspace(0, 1, N)})
    features[name] = values
    gold = pd.DataFrame({"gbifid": np.arange(N), "occurrencestatus": ["PRESENT", "ABSENT"] * (N // 2)})
    return features, gold


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=12))
def test_feature_names_reach_lightgbm_unchanged_or_are_rejected_by_name(name):
    if name.strip().lower() in ("gbifid", "ndvi", "decimallatitude", "decimallongitude", "occurrencestatus"):
        return  # the contract's own columns: not a feature name
    features, gold = _tables(name, list(np.linspace(5, 9, N)))
    try:
        prepared = prepare_dataset(features, gold)
    except DataContractError as exc:
        assert repr(name.strip().lower()) in str(exc) or "has no name" in str(exc) or "ignoring case" in str(exc)
        return
    x = prepared.features
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 2},
        lgb.Dataset(x, prepared.targets),
        num_boost_round=1,
    )
    assert booster.feature_name() == list(x.columns)


@settings(max_examples=150, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True), row=st.integers(0, N - 1))
def test_any_float_is_prepared_finite_or_rejected_naming_the_column(value, row):
    values = list(np.linspace(5, 9, N))
    values[row] = value
    features, gold = _tables("elevation", values)
    try:
        prepared = prepare_dataset(features, gold)
    except DataContractError as exc:
        assert "'elevation'" in str(exc) and "infinite" in str(exc)
        assert np.isinf(np.float32(value)) if not np.isnan(value) else False
        return
    column = prepared.features["elevation"].to_numpy(dtype=np.float64)
    assert not np.isinf(column).any()


@pytest.mark.parametrize("name", ["elev ation", 'a"b', "a:b", "[x]", "{y}", "a,b", "tab\there", " "])
def test_names_lightgbm_would_change_are_rejected(name):
    with pytest.raises(DataContractError, match="LightGBM cannot keep|has no name"):
        prepare_dataset(*_tables(name, list(np.linspace(5, 9, N))))
