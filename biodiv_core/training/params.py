"""``config/lgbm_params.yml``: LightGBM initial guess + hyperopt search space, parsed and validated once.

The file has two keys (DESIGN section 6)::

    initial:        # a full LightGBM parameter dict, incl. num_boost_round (the cap for early stopping)
      objective: binary
      learning_rate: 0.05
      num_boost_round: 500
    search_space:   # per tuned parameter: a distribution and its bounds
      learning_rate: {distribution: loguniform, low: 0.01, high: 0.3}
      num_leaves: {distribution: quniform, low: 8, high: 128, q: 1}
      boosting_type: {distribution: choice, options: [gbdt, goss]}

Bounds are in the parameter's own units (loguniform included: ``low: 0.01`` means 0.01, not e^0.01).
"""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from biodiv_core.errors import ConfigError

DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "choice")
_REQUIRED = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "choice": ("options",),
}

# Names LightGBM uses for the number of boosting rounds; early stopping picks it, initial holds the cap.
ROUND_ALIASES = (
    "num_boost_round",
    "num_iterations",
    "num_iteration",
    "n_iter",
    "num_tree",
    "num_trees",
    "num_round",
    "num_rounds",
    "nrounds",
    "n_estimators",
    "max_iter",
)

# Dataset (binning) parameters: fixed when the Dataset is constructed, so they cannot vary between trials
# that share one prebuilt Dataset (DESIGN section 9). Aliases included (lightgbm's own list, basic.py).
BINNING_PARAMS = frozenset(
    {
        "bin_construct_sample_cnt",
        "subsample_for_bin",
        "categorical_feature",
        "cat_feature",
        "categorical_column",
        "cat_column",
        "categorical_features",
        "data_random_seed",
        "data_seed",
        "enable_bundle",
        "is_enable_bundle",
        "bundle",
        "feature_pre_filter",
        "forcedbins_filename",
        "is_enable_sparse",
        "is_sparse",
        "enable_sparse",
        "sparse",
        "linear_tree",
        "linear_trees",
        "max_bin",
        "max_bins",
        "max_bin_by_feature",
        "min_data_in_bin",
        "pre_partition",
        "is_pre_partition",
        "precise_float_parser",
        "two_round",
        "two_round_loading",
        "use_two_round_loading",
        "use_missing",
        "zero_as_missing",
    }
)


@dataclass(frozen=True)
class Dimension:
    """One tuned parameter."""

    name: str
    distribution: str
    low: float | None = None
    high: float | None = None
    q: float | None = None
    options: tuple = ()

    @property
    def is_integer(self) -> bool:
        """quniform with integral step and bounds yields ints (num_leaves must be an int for LightGBM)."""
        return self.distribution == "quniform" and all(float(v).is_integer() for v in (self.low, self.high, self.q))

    def hyperopt(self):
        from hyperopt import hp

        if self.distribution == "uniform":
            return hp.uniform(self.name, self.low, self.high)
        if self.distribution == "loguniform":
            return hp.loguniform(self.name, math.log(self.low), math.log(self.high))
        if self.distribution == "quniform":
            return hp.quniform(self.name, self.low, self.high, self.q)
        return hp.choice(self.name, list(self.options))

    def to_value(self, raw: Any) -> Any:
        """A value drawn by hyperopt -> the LightGBM parameter value."""
        if self.distribution == "choice":
            return raw
        value = float(raw)
        if self.distribution == "quniform":
            value = min(max(value, self.low), self.high)  # round(x/q)*q can step just outside the bounds
            return int(round(value)) if self.is_integer else value
        return value

    def to_point(self, value: Any) -> Any:
        """A LightGBM value (the initial guess) -> hyperopt's representation, clipped into the bounds.

        Returns None when the value cannot be expressed (a choice the options do not contain).
        """
        if self.distribution == "choice":
            return self.options.index(value) if value in self.options else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(min(max(float(value), self.low), self.high))


@dataclass(frozen=True)
class ParamsConfig:
    """Validated contents of lgbm_params.yml."""

    initial: dict
    search_space: dict[str, Dimension]
    source: str = "<dict>"
    num_boost_round: int = field(default=0)

    def hyperopt_space(self) -> dict:
        return {name: dim.hyperopt() for name, dim in self.search_space.items()}

    def params_from_sample(self, sample: Mapping[str, Any]) -> dict:
        """Full LightGBM params for one trial: the initial guess overridden by the sampled values.

        ``sample`` is what hyperopt passes to the objective (choices already resolved to option values).
        """
        params = {k: v for k, v in self.initial.items() if k not in ROUND_ALIASES}
        for name, dim in self.search_space.items():
            params[name] = dim.to_value(sample[name])
        return params

    def initial_point(self) -> dict | None:
        """The initial guess as a hyperopt point (first trial), or None if a tuned value is missing/unusable."""
        point = {}
        for name, dim in self.search_space.items():
            if name not in self.initial:
                return None
            value = dim.to_point(self.initial[name])
            if value is None:
                return None
            point[name] = value
        return point

    def binning_params(self) -> dict:
        """Dataset-level parameters of the initial guess (fixed for all trials)."""
        return {k: v for k, v in self.initial.items() if k in BINNING_PARAMS}


def _err(source: str, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem}. {fix}")


def _number(source: str, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _err(source, f"search_space.{name}.{key}", f"{value!r} is not a finite number", f"Set {key} to a number.")
    return float(value)


def _parse_dimension(source: str, name: str, spec: Any) -> Dimension:
    where = f"search_space.{name}"
    if not isinstance(spec, Mapping):
        raise _err(
            source,
            where,
            f"expected a mapping, got {spec!r}",
            "Write e.g. {distribution: uniform, low: 0.5, high: 1.0}.",
        )
    if name in BINNING_PARAMS:
        raise _err(
            source,
            where,
            f"{name} is a binning (Dataset) parameter and cannot vary between trials that share one prebuilt Dataset",
            f"Remove {name} from search_space and set it once under initial.",
        )
    if name in ROUND_ALIASES:
        raise _err(
            source,
            where,
            "the number of boosting rounds is chosen by early stopping",
            f"Remove {name} from search_space; initial.num_boost_round is the cap.",
        )
    distribution = spec.get("distribution")
    if distribution is None:
        raise _err(source, where, "missing key 'distribution'", f"Add distribution: one of {', '.join(DISTRIBUTIONS)}.")
    if distribution not in DISTRIBUTIONS:
        raise _err(source, where, f"unknown distribution {distribution!r}", f"Use one of {', '.join(DISTRIBUTIONS)}.")
    required = _REQUIRED[distribution]
    missing = [k for k in required if k not in spec]
    if missing:
        raise _err(
            source, where, f"{distribution} needs {', '.join(required)}; missing {', '.join(missing)}", "Add them."
        )
    unknown = sorted(set(spec) - {"distribution", *required})
    if unknown:
        raise _err(
            source,
            where,
            f"unexpected key(s) {', '.join(map(str, unknown))} for distribution {distribution}",
            f"Allowed keys: distribution, {', '.join(required)}.",
        )
    if distribution == "choice":
        options = spec["options"]
        if not isinstance(options, list | tuple) or not options:
            raise _err(source, where, f"options must be a non-empty list, got {options!r}", "List the values to try.")
        return Dimension(name, distribution, options=tuple(options))
    low, high = (_number(source, name, k, spec[k]) for k in ("low", "high"))
    if low >= high:
        raise _err(
            source, where, f"low ({low:g}) must be below high ({high:g})", "Swap or widen the bounds (low < high)."
        )
    if distribution == "loguniform" and low <= 0:
        raise _err(
            source,
            where,
            f"loguniform needs low > 0, got {low:g}",
            "Bounds are in the parameter's own units: use a small positive low such as 1e-4.",
        )
    q = None
    if distribution == "quniform":
        q = _number(source, name, "q", spec["q"])
        if q <= 0:
            raise _err(source, where, f"q must be > 0, got {q:g}", "Use the step between values, e.g. q: 1.")
    return Dimension(name, distribution, low=low, high=high, q=q)


def parse_params(data: Any, source: str = "<dict>") -> ParamsConfig:
    """Validate an already-loaded lgbm_params mapping. ``source`` names the file in error messages."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with keys 'initial' and 'search_space', got {data!r}.")
    missing = [k for k in ("initial", "search_space") if k not in data]
    if missing:
        raise ConfigError(
            f"{source}: missing top-level key(s) {', '.join(missing)}. The file needs 'initial' (LightGBM "
            "parameters incl. num_boost_round) and 'search_space' (distributions of the tuned parameters)."
        )
    unknown = sorted(set(data) - {"initial", "search_space"})
    if unknown:
        raise ConfigError(
            f"{source}: unexpected top-level key(s) {', '.join(map(str, unknown))}; only 'initial' and "
            "'search_space' are read. Remove or move them."
        )
    initial, space = data["initial"], data["search_space"]
    if not isinstance(initial, Mapping) or not initial:
        raise ConfigError(f"{source}: initial must be a non-empty mapping of LightGBM parameters, got {initial!r}.")
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            f"{source}: search_space must be a non-empty mapping of parameter -> distribution, got {space!r}."
        )
    rounds_keys = [k for k in ROUND_ALIASES if k in initial]
    if not rounds_keys:
        raise ConfigError(
            f"{source}: initial.num_boost_round is missing. Set it to the maximum number of boosting rounds "
            "(early stopping picks the best number below it), e.g. num_boost_round: 500."
        )
    if len(rounds_keys) > 1:
        raise ConfigError(f"{source}: initial sets the number of rounds twice ({', '.join(rounds_keys)}); keep one.")
    rounds = initial[rounds_keys[0]]
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"{source}: initial.{rounds_keys[0]} must be a positive integer, got {rounds!r}.")
    objective = initial.get("objective", "binary")
    if objective not in ("binary", "cross_entropy", "xentropy"):
        raise ConfigError(
            f"{source}: initial.objective is {objective!r}; presence/absence models need objective: binary."
        )
    dims = {str(name): _parse_dimension(source, str(name), spec) for name, spec in space.items()}
    return ParamsConfig(initial=dict(initial), search_space=dims, source=source, num_boost_round=int(rounds))


def load_params(path: str | os.PathLike) -> ParamsConfig:
    """Read and validate lgbm_params.yml (ConfigError naming the file and parameter on any problem)."""
    path = Path(path)
    if path.is_dir():
        path = path / "lgbm_params.yml"
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found. Pass the path of lgbm_params.yml (see config/).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix the syntax.") from exc
    return parse_params(data, source=str(path))
