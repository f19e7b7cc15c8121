"""Run configuration of the training assets and where its defaults come from.

Precedence: the run's config (launchpad, `biodiv run --max-evals`) > environment variables
(``BIODIV_MAX_EVALS``, ``BIODIV_N_FOLDS``, ``BIODIV_SEED``, ``BIODIV_NUM_THREADS``, ``BIODIV_AUC_FLOOR``,
``BIODIV_CV_STRATEGY``, ``BIODIV_BLOCK_SIZE_KM``)
> ``config/run.yml``. Defaults are read when the definitions load, so the launchpad shows them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from biodiv_core import settings
from biodiv_core.errors import ConfigError

RUN_CONFIG_FILE = "run.yml"
_ENV = {
    "max_evals": "BIODIV_MAX_EVALS",
    "n_folds": "BIODIV_N_FOLDS",
    "seed": "BIODIV_SEED",
    "num_threads": "BIODIV_NUM_THREADS",
    "auc_floor": "BIODIV_AUC_FLOOR",
    "cv_strategy": "BIODIV_CV_STRATEGY",
    "block_size_km": "BIODIV_BLOCK_SIZE_KM",
}
_BUILTIN = {
    "max_evals": 20,
    "n_folds": 5,
    "seed": 42,
    "num_threads": 0,
    "auc_floor": 0.6,
    "cv_strategy": "random",  # issue 7: random | spatial_blocks | checkerboard
    "block_size_km": 20.0,
}
MAX_CONCURRENT_RUNS = 2  # keep in step with run_queue.max_concurrent_runs in config/dagster.yaml


@dataclass(frozen=True)
class RunDefaults:
    max_evals: int
    n_folds: int
    seed: int
    num_threads: int
    auc_floor: float
    cv_strategy: str = "random"
    block_size_km: float = 20.0


def cpu_budget_threads(concurrent_runs: int = MAX_CONCURRENT_RUNS) -> int:
    """LightGBM threads per step: the cores this process may use split between concurrent runs (>= 1)."""
    from biodiv_core.threads import cpu_budget

    return cpu_budget(concurrent_runs)


def load_run_defaults(check_cv: bool = True) -> RunDefaults:
    """Defaults from config/run.yml and the environment, validated (ConfigError names the setting).

    ``check_cv=False`` skips the CV-strategy check, which imports numpy/pandas (biodiv_core.spatial_cv):
    the definitions load it at import time and must stay light; `TrainingConfig.checked()` runs it per run.
    """
    values: dict[str, object] = dict(_BUILTIN)
    path = settings.config_dir() / RUN_CONFIG_FILE
    if path.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML ({exc}): fix the file.") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must be a mapping of setting: value, e.g. 'max_evals: 20'.")
        unknown = sorted(set(loaded) - set(_BUILTIN))
        if unknown:
            raise ConfigError(f"{path} has unknown settings {unknown}; known: {sorted(_BUILTIN)}.")
        values.update(loaded)
    for key, env in _ENV.items():
        if os.environ.get(env):
            values[key] = os.environ[env]
    try:
        defaults = RunDefaults(
            max_evals=int(values["max_evals"]),
            n_folds=int(values["n_folds"]),
            seed=int(values["seed"]),
            num_threads=int(values["num_threads"]),
            auc_floor=float(values["auc_floor"]),
            cv_strategy=str(values["cv_strategy"]),
            block_size_km=float(values["block_size_km"]),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Run defaults in {path} or {sorted(_ENV.values())} are not numbers: {exc}.") from exc
    validate(defaults.max_evals, defaults.n_folds, defaults.num_threads, defaults.auc_floor)
    if check_cv:
        validate_cv(defaults.cv_strategy, defaults.block_size_km)
    return defaults


def validate_cv(cv_strategy: str, block_size_km: float) -> None:
    from biodiv_core.spatial_cv import validate_strategy

    validate_strategy(cv_strategy)
    if not block_size_km > 0:
        raise ConfigError(f"block_size_km={block_size_km}: spatial blocks need a positive size in km; use e.g. 20.")


def validate(max_evals: int, n_folds: int, num_threads: int, auc_floor: float) -> None:
    if max_evals < 1:
        raise ConfigError(f"max_evals={max_evals}: hyperopt needs at least 1 evaluation; use e.g. 20.")
    if n_folds < 2:
        raise ConfigError(f"n_folds={n_folds}: k-fold cross-validation needs at least 2 folds; use e.g. 5.")
    if num_threads < 0:
        raise ConfigError(f"num_threads={num_threads}: use a positive count, or 0 for the CPU budget.")
    if not 0.0 <= auc_floor <= 1.0:
        raise ConfigError(f"auc_floor={auc_floor}: a ROC-AUC floor lies between 0 and 1; use e.g. 0.6.")


_DEFAULTS = load_run_defaults(check_cv=False)


class TrainingConfig(dg.Config):
    """Per-run settings of the training assets (every asset of a run gets the same values)."""

    max_evals: int = Field(default=_DEFAULTS.max_evals, description="hyperopt TPE evaluations")
    n_folds: int = Field(default=_DEFAULTS.n_folds, description="k of the k-fold cross-validation (>= 2)")
    seed: int = Field(default=_DEFAULTS.seed, description="random seed for split and tuning")
    num_threads: int = Field(
        default=_DEFAULTS.num_threads,
        description="LightGBM threads per step; 0 = CPU cores / concurrent runs (never LightGBM's default)",
    )
    auc_floor: float = Field(default=_DEFAULTS.auc_floor, description="ROC-AUC floor of the scores check")
    cv_strategy: str = Field(
        default=_DEFAULTS.cv_strategy,
        description="tuning folds: random (as the seed), spatial_blocks or checkerboard (need coordinates)",
    )
    block_size_km: float = Field(default=_DEFAULTS.block_size_km, description="block size of the spatial folds")

    def threads(self) -> int:
        return self.num_threads or cpu_budget_threads()

    def checked(self) -> TrainingConfig:
        validate(self.max_evals, self.n_folds, self.num_threads, self.auc_floor)
        validate_cv(self.cv_strategy, self.block_size_km)
        return self


# Op names of the training assets: run config is given per op (see `training_run_config`).
TRAINING_OPS = ("prepared_data", "best_parameters_and_split", "scores", "deployable_model")


def op_for_asset(asset: str) -> str:
    return "best_parameters_and_split" if asset in ("best_parameters", "train_test_split") else asset


def training_run_config(assets: Iterable[str] | None = None, **overrides: int | float | None) -> dg.RunConfig:
    """Run config giving the training assets (all, or those of ``assets``) the same settings.

    A run config may only name ops the run executes, hence ``assets`` for partial selections.
    None values keep the defaults.
    """
    values = {key: value for key, value in overrides.items() if value is not None}
    config = TrainingConfig(**values).checked()
    ops = (
        TRAINING_OPS
        if assets is None
        else dict.fromkeys(op_for_asset(a) for a in assets if op_for_asset(a) in TRAINING_OPS)
    )
    return dg.RunConfig(ops={op: config for op in ops})
