"""Ask LightGBM itself whether lgbm_params.yml's values are legal, before any data is read or step runs.

`params.parse_params` checks the file's shape (distributions, bounds); only LightGBM knows each parameter's own
range (``num_leaves > 1``, ``0 < feature_fraction <= 1``, ...). Without this a bad bound failed deep inside
tuning, in the train step, after prepared_data was written, with LightGBM's ``Check failed: (num_leaves) > (1)``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from biodiv_core.errors import ConfigError
from biodiv_core.training.params import ROUND_ALIASES, ParamsConfig


def _candidates(config: ParamsConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """The initial guess, then each tuned parameter at each end of its range (each option of a choice)."""
    base = {k: v for k, v in config.initial.items() if k not in ROUND_ALIASES}
    yield "initial", base
    for name, dim in config.search_space.items():
        if dim.distribution == "choice":
            values = list(dim.options)
        else:
            values = [dim.to_value(dim.low), dim.to_value(dim.high)]
        for value in values:
            yield f"search_space.{name} = {value!r}", {**base, name: value}


class _Silent:
    """LightGBM prints "[LightGBM] [Fatal] ..." through its logger before raising: the ConfigError says it once."""

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass


def check_with_lightgbm(config: ParamsConfig) -> None:
    """ConfigError naming the file, the parameter and LightGBM's complaint, for the first value LightGBM rejects."""
    import lightgbm as lgb
    import lightgbm.basic

    previous = lightgbm.basic._LOGGER  # no public getter; restored so training keeps its logging
    lgb.register_logger(_Silent())
    try:
        with _native_stderr_silenced():
            _check(config)
    finally:
        lightgbm.basic._LOGGER = previous


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """LightGBM's C++ Log::Fatal writes to file descriptor 2 itself, past any Python logger."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _check(config: ParamsConfig) -> None:
    import lightgbm as lgb
    import numpy as np

    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]] * 4)
    labels = np.array([0, 1] * 8)
    for where, params in _candidates(config):
        quiet = {**params, "verbose": -1, "num_threads": 1}
        try:
            dataset = lgb.Dataset(features, label=labels, params=config.binning_params() | {"verbose": -1})
            lgb.Booster(quiet, dataset)
        except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
            reason = str(exc).split(" at /")[0].strip()  # drop LightGBM's C++ source location
            raise ConfigError(
                f"{config.source}: {where}: LightGBM rejects this value ({reason}). "
                "Change it to one LightGBM accepts (see its parameter docs)."
            ) from exc
