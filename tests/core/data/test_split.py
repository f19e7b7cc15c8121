"""Stratified, seeded train/test(/validation) split."""

import numpy as np
import pandas as pd
import pytest

from biodiv_core.data.split import split_train_test
from biodiv_core.errors import ConfigError, DataContractError


def _data(n=1000, present=0.3, seed=0):
    rng = np.random.default_rng(seed)
    index = pd.Index(rng.choice(10**10, size=n, replace=False) + 3 * 10**9, name="gbifid")
    x = pd.DataFrame({"a": rng.normal(size=n).astype(np.float32), "b": rng.normal(size=n)}, index=index)
    y = pd.Series((np.arange(n) < int(n * present)).astype(np.int8), index=index, name="target")
    return x, y


def test_split_is_stratified_disjoint_and_keeps_ids():
    x, y = _data()
    s = split_train_test(x, y, test_size=0.25, seed=1)
    assert s.x_validation is None and s.y_validation is None
    assert (len(s.x_train), len(s.x_test)) == (750, 250)
    assert s.x_train.index.equals(s.y_train.index) and s.x_test.index.equals(s.y_test.index)
    assert not set(s.x_train.index) & set(s.x_test.index)
    assert set(s.x_train.index) | set(s.x_test.index) == set(x.index)
    assert s.y_test.mean() == pytest.approx(0.3, abs=0.005) and s.y_train.mean() == pytest.approx(0.3, abs=0.005)
    # Rows travel with their ids.
    pd.testing.assert_frame_equal(s.x_test, x.loc[s.x_test.index])
    pd.testing.assert_series_equal(s.y_test, y.loc[s.x_test.index])


def test_same_seed_same_split_other_seed_other_split():
    x, y = _data()
    a, b, c = (split_train_test(x, y, seed=s) for s in (7, 7, 8))
    assert a.x_test.index.equals(b.x_test.index) and a.x_train.index.equals(b.x_train.index)
    assert not a.x_test.index.sort_values().equals(c.x_test.index.sort_values())


def test_optional_validation_set_is_a_fraction_of_all_rows():
    x, y = _data(2000, present=0.2)
    s = split_train_test(x, y, test_size=0.2, validation_size=0.1, seed=3)
    assert (len(s.x_train), len(s.x_validation), len(s.x_test)) == (1400, 200, 400)
    parts = [set(s.x_train.index), set(s.x_validation.index), set(s.x_test.index)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 2000
    assert s.y_validation.mean() == pytest.approx(0.2, abs=0.01)
    assert s.x_validation.index.equals(s.y_validation.index)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"test_size": 0.0}, "test_size=0.0"),
        ({"test_size": 1.0}, "test_size=1.0"),
        ({"test_size": -0.1}, "test_size"),
        ({"validation_size": -0.1}, "validation_size"),
        ({"test_size": 0.5, "validation_size": 0.5}, "leaves no training rows"),
    ],
)
def test_bad_sizes(kwargs, fragment):
    x, y = _data(100)
    with pytest.raises(ConfigError, match=fragment):
        split_train_test(x, y, **kwargs)


def test_too_few_rows_of_a_class_and_misaligned_inputs():
    x, y = _data(100, present=0.01)  # one PRESENT row cannot be on both sides
    with pytest.raises(DataContractError, match=r"class counts .*each class needs at least 2 rows"):
        split_train_test(x, y)
    x, y = _data(100)
    with pytest.raises(DataContractError, match="not aligned"):
        split_train_test(x, y.iloc[::-1])
    with pytest.raises(DataContractError, match="not aligned"):
        split_train_test(x.iloc[:50], y)
