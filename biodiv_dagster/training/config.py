"""Run config of the training assets: the launchpad form of `biodiv_core.run_settings.RunSettings`.

`TrainingConfig` is generated from the RunSettings fields (same names, help texts as descriptions, and as
defaults what config/run.yml and BIODIV_<KEY> say when the definitions load), so the launchpad, the CLI
flags and the steps cannot drift apart. Every asset of a run gets the same values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import dagster as dg
from pydantic import Field, create_model

from biodiv_core.run_settings import RunSettings, load_run_settings, setting_fields, setting_types


class _TrainingConfigBase(dg.Config):
    def settings(self) -> RunSettings:
        """The validated settings of this run (ConfigError names the bad one)."""
        return RunSettings(**self.model_dump())


def _training_config(defaults: RunSettings) -> type[_TrainingConfigBase]:
    types = setting_types()
    fields: dict[str, Any] = {
        f.name: (types[f.name], Field(default=getattr(defaults, f.name), description=f.metadata["help"]))
        for f in setting_fields()
    }
    return create_model("TrainingConfig", __base__=_TrainingConfigBase, __doc__=RunSettings.__doc__, **fields)


TrainingConfig = _training_config(load_run_settings())

# Op names of the training assets: run config is given per op (see `training_run_config`).
TRAINING_OPS = ("prepared_data", "best_parameters_and_split", "scores", "deployable_model")


def op_for_asset(asset: str) -> str:
    return "best_parameters_and_split" if asset in ("best_parameters", "train_test_split") else asset


def training_run_config(assets: Iterable[str] | None = None, **overrides: Any) -> dg.RunConfig:
    """Run config giving the training assets (all, or those of ``assets``) the same settings.

    ``overrides`` are RunSettings fields; None keeps config/run.yml < BIODIV_<KEY>, read now. A run config
    may only name ops the run executes, hence ``assets`` for partial selections.
    """
    settings = load_run_settings(overrides)
    config = TrainingConfig(**dataclasses.asdict(settings))
    ops = (
        TRAINING_OPS
        if assets is None
        else dict.fromkeys(op_for_asset(a) for a in assets if op_for_asset(a) in TRAINING_OPS)
    )
    return dg.RunConfig(ops={op: config for op in ops})
