import math

import numpy as np
import pytest
import yaml
from hyperopt.pyll.stochastic import sample

from biodiv_core.errors import ConfigError
from biodiv_core.settings import config_dir
from biodiv_core.training.params import load_params, parse_params


def write(tmp_path, data) -> str:
    path = tmp_path / "lgbm_params.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def base(**space):
    return {
        "initial": {"objective": "binary", "learning_rate": 0.1, "num_leaves": 31, "num_boost_round": 50},
        "search_space": space or {"learning_rate": {"distribution": "loguniform", "low": 0.01, "high": 0.3}},
    }


def test_repo_config_parses_and_samples_within_bounds():
    config = load_params(config_dir() / "lgbm_params.yml")
    assert config.num_boost_round >= 1
    space = config.hyperopt_space()
    rng = np.random.default_rng(0)
    for _ in range(20):
        params = config.params_from_sample(sample(space, rng=rng))
        for name, dim in config.search_space.items():
            assert dim.low <= params[name] <= dim.high, name
        assert isinstance(params["num_leaves"], int)
        assert "num_boost_round" not in params


def test_loguniform_bounds_are_in_parameter_units(tmp_path):
    config = load_params(write(tmp_path, base()))
    draws = [
        config.params_from_sample(sample(config.hyperopt_space(), rng=np.random.default_rng(i))) for i in range(50)
    ]
    values = [d["learning_rate"] for d in draws]
    assert min(values) >= 0.01 and max(values) <= 0.3
    # log-uniform: the geometric midpoint splits the draws roughly in half, not the arithmetic one
    assert 10 < sum(v < math.sqrt(0.01 * 0.3) for v in values) < 40


def test_initial_point_is_clipped_into_bounds(tmp_path):
    data = base(lambda_l1={"distribution": "loguniform", "low": 1e-4, "high": 10.0})
    data["initial"]["lambda_l1"] = 0.0
    point = load_params(write(tmp_path, data)).initial_point()
    assert point == {"lambda_l1": 1e-4}


def test_choice_initial_point_is_the_option_index(tmp_path):
    data = base(boosting_type={"distribution": "choice", "options": ["gbdt", "goss"]})
    data["initial"]["boosting_type"] = "goss"
    assert load_params(write(tmp_path, data)).initial_point() == {"boosting_type": 1}


@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ({"learning_rate": {"distribution": "normal", "low": 0.1, "high": 0.2}}, "unknown distribution 'normal'"),
        ({"learning_rate": {"distribution": "uniform", "low": 0.3, "high": 0.1}}, "must be below high"),
        ({"learning_rate": {"distribution": "uniform", "low": 0.3, "high": 0.3}}, "must be below high"),
        ({"lambda_l1": {"distribution": "loguniform", "low": 0.0, "high": 1.0}}, "loguniform needs low > 0"),
        ({"learning_rate": {"distribution": "uniform", "low": 0.1}}, "missing high"),
        ({"num_leaves": {"distribution": "quniform", "low": 8, "high": 64}}, "missing q"),
        ({"num_leaves": {"distribution": "quniform", "low": 8, "high": 64, "q": 0}}, "q must be > 0"),
        ({"boosting_type": {"distribution": "choice", "options": []}}, "non-empty list"),
        ({"max_bin": {"distribution": "quniform", "low": 63, "high": 255, "q": 1}}, "binning"),
        ({"num_boost_round": {"distribution": "quniform", "low": 50, "high": 500, "q": 1}}, "early stopping"),
        ({"learning_rate": {"low": 0.1, "high": 0.2}}, "missing key 'distribution'"),
        ({"learning_rate": {"distribution": "uniform", "low": 0.1, "hgih": 0.2}}, "missing high"),
        ({"learning_rate": {"distribution": "uniform", "low": "a", "high": 0.2}}, "not a finite number"),
    ],
)
def test_bad_search_space_names_file_parameter_and_fix(tmp_path, space, needle):
    path = write(tmp_path, base(**space))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    message = str(info.value)
    assert needle in message
    assert path in message
    assert f"search_space.{next(iter(space))}" in message


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("initial"), "missing top-level key(s) initial"),
        (lambda d: d.pop("search_space"), "missing top-level key(s) search_space"),
        (lambda d: d["initial"].pop("num_boost_round"), "num_boost_round is missing"),
        (lambda d: d["initial"].update(num_boost_round=0), "positive integer"),
        (lambda d: d["initial"].update(objective="regression"), "objective: binary"),
        (lambda d: d.update(extra=1), "unexpected top-level key"),
    ],
)
def test_bad_file_structure(tmp_path, mutate, needle):
    data = base()
    mutate(data)
    with pytest.raises(ConfigError, match="lgbm_params.yml") as info:
        load_params(write(tmp_path, data))
    assert needle in str(info.value)


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("initial: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_parse_params_from_dict_reports_source():
    with pytest.raises(ConfigError, match="run config"):
        parse_params({"initial": {}}, source="run config")
