"""One typed contract per step: the arguments of prep, train, score and train_to_deploy.

Both sides import it (it needs neither dagster nor azure, so it works inside an AzureML job): an asset
builds the dataclass from the partition, the upstream locations and the run settings; the launcher turns
it into ``--option value`` pairs (`to_argv`); the step parses them back (`from_argv`, argparse built from
the fields) and hands the object to its stage. Help texts, defaults and checks live on the fields; a
field that is a run setting (`setting_arg`) takes help and checks from `RunSettings` and is filled from
the run's settings by `from_settings`.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, TypeVar

from biodiv_core.naming import slugify, validate_name
from biodiv_core.run_settings import RunSettings, check_value, setting_fields, value_type

INPUT, OUTPUT, PARAM, SETTING = "input", "output", "param", "setting"
CORRELATION_ENV = "BIODIV_CORRELATION_ID"

T = TypeVar("T", bound="StepArgs")


def input_path(help: str, asset: str | None = None, default: Any = MISSING) -> Any:
    """A location the step reads (file or folder; a datastore URI in AzureML); ``asset``: the upstream asset.

    ``default=None`` makes it optional: a None location is no input at all (`StepArgs.inputs` leaves it out).
    """
    return field(default=default, metadata={"role": INPUT, "help": help, "asset": asset})


def output_path(asset: str, help: str) -> Any:
    """A folder the step writes, materializing ``asset``."""
    return field(metadata={"role": OUTPUT, "asset": asset, "help": help})


def param(default: Any = MISSING, help: str = "", **checks: Any) -> Any:
    """A plain parameter; ``checks`` as in `run_settings.setting` (minimum, maximum, above, choices, fix)."""
    return field(default=default, metadata={"role": PARAM, "help": help, **checks})


def setting_arg() -> Any:
    """A parameter that is the run setting of the same name: help, check and default from `RunSettings`.

    The default is filled in when the class is made (`StepArgs.__init_subclass__`): the field does not know
    its name before that.
    """
    return field(metadata={"role": SETTING})


def _rules(f: dataclasses.Field) -> Mapping[str, Any]:
    """Help and checks of a field: its own, or for a `setting_arg` those of the run setting of its name."""
    if f.metadata.get("role") != SETTING:
        return f.metadata
    return next(setting.metadata for setting in setting_fields() if setting.name == f.name)


@dataclass(frozen=True, kw_only=True)
class StepArgs:
    """What every step gets: the partition it works on and the run's correlation id."""

    step: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        defaults = {f.name: f.default for f in setting_fields()}
        for name, value in vars(cls).items():
            if isinstance(value, dataclasses.Field) and value.metadata.get("role") == SETTING:
                value.default = defaults[name]

    site: str = param(help="site name, e.g. yellowstone")
    species: str = param(help="species name as in candidate_species.csv, e.g. 'Cygnus buccinator'")
    partition: str | None = param(None, help="Dagster partition key <site-slug>|<species-slug> (default: from names)")
    correlation_id: str | None = param(None, help=f"id shared by every step of a run (default: ${CORRELATION_ENV})")
    dagster_run_id: str | None = param(None, help="id of the Dagster run that launched the step (an MLflow run tag)")

    def __post_init__(self) -> None:
        validate_name(self.site, "site")
        validate_name(self.species, "species")
        if self.partition is None:
            object.__setattr__(self, "partition", f"{slugify(self.site, 'site')}|{slugify(self.species)}")
        for f in dataclasses.fields(self):
            check_value(f.name, getattr(self, f.name), _rules(f))

    # --- what the launcher needs ------------------------------------------------------------------

    @classmethod
    def fields_with(cls, role: str) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.metadata.get("role") == role]

    def inputs(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in self.fields_with(INPUT) if getattr(self, f.name) is not None}

    def outputs(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in self.fields_with(OUTPUT)}

    @classmethod
    def asset_keys(cls) -> dict[str, str]:
        """Output field -> asset key it materializes."""
        return {f.name: f.metadata["asset"] for f in cls.fields_with(OUTPUT)}

    @classmethod
    def upstream_assets(cls) -> dict[str, str]:
        """Input field -> the upstream asset whose output folder it reads."""
        return {f.name: f.metadata["asset"] for f in cls.fields_with(INPUT) if f.metadata.get("asset")}

    def params(self) -> dict[str, Any]:
        """Every value that is not a location (partition, names, settings)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("role") in (PARAM, SETTING)
        }

    def context(self) -> dict[str, str]:
        """site, species and partition: the tags of the step's MLflow runs."""
        return {"site": self.site, "species": self.species, "partition": str(self.partition)}

    # --- argv both ways ---------------------------------------------------------------------------

    def to_argv(self, locations: Mapping[str, str] | None = None) -> list[str]:
        """``--option value`` per field (None left out); ``locations`` replaces input/output values by name."""
        args: list[str] = []
        for f in dataclasses.fields(self):
            value = (locations or {}).get(f.name, getattr(self, f.name))
            if value is not None:
                args += [option(f.name), str(value)]
        return args

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        doc = (cls.__doc__ or "").strip().splitlines()
        parser = argparse.ArgumentParser(prog=f"python -m azureml_steps.{cls.step}", description=doc[0] if doc else "")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            metadata = _rules(f)
            kind = value_type(hints[f.name])
            help_text = metadata.get("help", "")
            if f.metadata.get("role") == SETTING:
                help_text += " (a run setting: the launcher passes config/run.yml's value or the run's own)"
            parser.add_argument(
                option(f.name),
                dest=f.name,
                type=kind if kind is not str else None,
                required=f.default is MISSING,
                default=None if f.default is MISSING else f.default,
                choices=metadata.get("choices"),
                help=help_text,
            )
        return parser

    @classmethod
    def from_argv(cls: type[T], argv: Sequence[str]) -> T:
        return cls(**vars(cls.parser().parse_args(list(argv))))

    @classmethod
    def from_settings(cls: type[T], settings: RunSettings, **values: Any) -> T:
        """The arguments with every `setting_arg` field taken from ``settings`` (threads resolved)."""
        resolved = {**settings.as_dict(), "num_threads": settings.threads()}
        filled = {f.name: resolved[f.name] for f in cls.fields_with(SETTING) if f.name not in values}
        return cls(**filled, **values)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True, kw_only=True)
class ThreadedStepArgs(StepArgs):
    num_threads: int = param(1, "LightGBM threads (never left to LightGBM's default)", minimum=1, fix="use e.g. 1")


@dataclass(frozen=True, kw_only=True)
class PrepArgs(StepArgs):
    """Step `prep`: gold data + features -> prepared features and targets (asset `prepared_data`)."""

    step: ClassVar[str] = "prep"

    features: str = input_path("feature table: file or folder (one data-asset version)")
    species_dir: str = input_path("folder holding <species>_golddata.csv")
    output: str = output_path("prepared_data", "output folder (must not exist or be empty)")
    min_rows_per_class: int | None = param(
        None, "fail (writing nothing) if a class has fewer rows, e.g. the CV folds", minimum=1
    )
    covariates: str | None = input_path(
        "folder of the site's covariate rasters (one data-asset version): background cells of a presence-only species",
        default=None,
    )
    background_points: int = setting_arg()
    background_from: str = setting_arg()
    presence_thinning: str = setting_arg()
    seed: int = setting_arg()


@dataclass(frozen=True, kw_only=True)
class TrainArgs(ThreadedStepArgs):
    """Step `train`: prepared data -> best LightGBM parameters (hyperopt TPE, k-fold CV) and the train/test split."""

    step: ClassVar[str] = "train"

    prepared: str = input_path("prepared_data folder (features.parquet, targets.parquet)", "prepared_data")
    params_config: str = input_path("lgbm_params.yml: initial guess and search space")
    best_parameters: str = output_path("best_parameters", "output folder for best_parameters.json, trials.json")
    split: str = output_path("train_test_split", "output folder for x/y train/test parquet files")
    n_folds: int = setting_arg()
    max_evals: int = setting_arg()
    seed: int = setting_arg()
    cv_strategy: str = setting_arg()
    block_size_km: float = setting_arg()


@dataclass(frozen=True, kw_only=True)
class ScoreArgs(ThreadedStepArgs):
    """Step `score`: best parameters + train/test split -> held-out metrics and plots (asset `scores`)."""

    step: ClassVar[str] = "score"

    best_parameters: str = input_path(
        "best_parameters folder (best_parameters.json, cv_quality.json)", "best_parameters"
    )
    split: str = input_path("train_test_split folder (x/y train/test parquet)", "train_test_split")
    output: str = output_path("scores", "output folder for metrics.json and the plots")


@dataclass(frozen=True, kw_only=True)
class DeployArgs(ThreadedStepArgs):
    """Step `train_to_deploy`: fit on all prepared data, save MLflow model `lgbm_gbif_model` (`deployable_model`)."""

    step: ClassVar[str] = "train_to_deploy"

    prepared: str = input_path("prepared_data folder (features.parquet, targets.parquet)", "prepared_data")
    best_parameters: str = input_path(
        "best_parameters folder (best_parameters.json, cv_quality.json)", "best_parameters"
    )
    output: str = output_path("deployable_model", "output folder for lgbm_gbif_model/ and model_metadata.json")


STEP_ARGS: dict[str, type[StepArgs]] = {cls.step: cls for cls in (PrepArgs, TrainArgs, ScoreArgs, DeployArgs)}
