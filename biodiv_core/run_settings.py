"""The run settings of training, defined once: each field carries its default, help text and check.

Sources, later wins: the defaults here < ``config/run.yml`` (same keys) < ``BIODIV_<KEY>`` environment
variables < the run's own config (launchpad, ``biodiv run`` flags). biodiv_dagster derives the launchpad
config, the CLI flags and the step arguments from these fields (a step argument with the same name is
filled from the setting), so a new setting is one field here and the code that uses it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biodiv_core import settings
from biodiv_core.errors import ConfigError

RUN_SETTINGS_FILE = "run.yml"
ENV_PREFIX = "BIODIV_"
CV_STRATEGIES = ("random", "spatial_blocks", "checkerboard")
PRESENCE_THINNING = ("none", "cell")
BACKGROUND_FROM = ("auto", "raster_cells", "feature_rows")
SPATIAL_STRATEGIES = CV_STRATEGIES[1:]
# Runs the daemon starts at once; keep in step with run_queue.max_concurrent_runs in config/dagster.yaml.
MAX_CONCURRENT_RUNS = 2


def setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    fix: str | None = None,
    flag: str | None = None,
) -> Any:
    """A settings field: ``minimum``/``maximum`` inclusive, ``above`` exclusive; ``fix`` ends the error message."""
    return field(
        default=default,
        metadata={
            "help": help,
            "minimum": minimum,
            "maximum": maximum,
            "above": above,
            "choices": choices,
            "fix": fix or f"use e.g. {default}",
            "flag": flag,
        },
    )


def check_value(name: str, value: Any, metadata: typing.Mapping[str, Any]) -> None:
    """ConfigError naming the setting, the value and the fix when ``value`` breaks the field's rules."""
    fix = metadata.get("fix") or "see config/run.yml"
    if value is None:
        return
    choices = metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; use one of {', '.join(choices)}.")
    minimum, maximum, above = metadata.get("minimum"), metadata.get("maximum"), metadata.get("above")
    if (
        (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (above is not None and not value > above)
    ):
        raise ConfigError(f"{name}={value}: {metadata['help']} must be {_bounds(minimum, maximum, above)}; {fix}.")


def _bounds(minimum, maximum, above) -> str:
    parts = [f">= {minimum}" if minimum is not None else "", f"> {above}" if above is not None else ""]
    parts.append(f"<= {maximum}" if maximum is not None else "")
    return " and ".join(p for p in parts if p)


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """What a training run may change (every asset of a run gets the same values)."""

    max_evals: int = setting(20, "hyperopt TPE evaluations per partition", minimum=1)
    n_folds: int = setting(5, "k of the k-fold cross-validation", minimum=2, flag="--folds")
    seed: int = setting(42, "random seed of split and tuning (same inputs + seed -> same best parameters)")
    num_threads: int = setting(
        0, "LightGBM threads per step; 0 = CPU cores / concurrent runs (never LightGBM's default)", minimum=0
    )
    auc_floor: float = setting(0.6, "ROC-AUC floor of the scores check", minimum=0.0, maximum=1.0)
    cv_strategy: str = setting(
        "random",
        "tuning folds: random (as the seed), spatial_blocks or checkerboard (need coordinates)",
        choices=CV_STRATEGIES,
    )
    block_size_km: float = setting(20.0, "block size of the spatial folds, km", above=0.0)
    background_points: int = setting(
        10_000,
        "background points (label 0) drawn for a species whose gold data holds PRESENT rows only (at most all "
        "there are; see background_from)",
        minimum=1,
    )
    background_from: str = setting(
        "auto",
        "where background points come from: raster_cells, feature_rows (the site's other records: they share the "
        "presences' observer bias), or auto (feature_rows when at least 1,000 are not presences, else raster_cells "
        "when the site has covariate rasters)",
        choices=BACKGROUND_FROM,
    )
    presence_thinning: str = setting(
        "none",
        "presence-only species: keep one presence per covariate raster cell (cell) or every presence (none)",
        choices=PRESENCE_THINNING,
    )
    features_version: int | None = setting(
        None, "version of <site>-training-features to train on (unset: the latest)", minimum=1, fix="use e.g. 1"
    )
    species_version: int | None = setting(
        None, "version of <site>-training-species to train on (unset: the latest)", minimum=1, fix="use e.g. 1"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_value(f.name, getattr(self, f.name), f.metadata)

    def threads(self, concurrent_runs: int = MAX_CONCURRENT_RUNS) -> int:
        """LightGBM threads per step: the setting, or when it is 0 the CPU budget of one of ``concurrent_runs``
        (by default the daemon's maximum, config/dagster.yaml)."""
        from biodiv_core.threads import cpu_budget

        return self.num_threads or cpu_budget(concurrent_runs)

    def replace(self, **overrides: Any) -> RunSettings:
        """These settings with ``overrides`` (None values keep the current value)."""
        return parse_settings({**self.as_dict(), **{k: v for k, v in overrides.items() if v is not None}}, "overrides")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def setting_fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(RunSettings)


def value_type(annotation: Any) -> type:
    """``int`` for ``int`` and ``int | None`` (the type a text value converts to)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return annotation


def setting_types() -> dict[str, Any]:
    return typing.get_type_hints(RunSettings)


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def parse_settings(values: typing.Mapping[str, Any], source: str) -> RunSettings:
    """RunSettings from raw values (YAML or environment text), ConfigError naming ``source`` on bad input."""
    known = setting_types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{source} has unknown settings {unknown}; known: {sorted(known)}.")
    converted = {}
    for name, raw in values.items():
        kind = value_type(known[name])
        try:
            converted[name] = raw if raw is None or isinstance(raw, kind) else kind(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}={raw!r} in {source} is not a valid {kind.__name__}: {exc}.") from exc
    return RunSettings(**converted)


def load_run_settings(overrides: typing.Mapping[str, Any] | None = None, config_dir: Path | None = None) -> RunSettings:
    """Defaults < config/run.yml < BIODIV_<KEY> environment variables < ``overrides`` (None values skipped).

    A bad value raises ConfigError naming the file or variable it came from; a value the overrides replace
    is not checked.
    """
    path = (config_dir or settings.config_dir()) / RUN_SETTINGS_FILE
    values: dict[str, Any] = {}
    if path.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML ({exc}): fix the file.") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must be a mapping of setting: value, e.g. 'max_evals: 20'.")
        values.update(loaded)
        parse_settings(values, str(path))  # name the file when it alone is wrong
    sources = [str(path)]
    for name in setting_types():
        text = os.environ.get(env_var(name), "").strip()
        if text:
            values[name] = text
            sources.append(env_var(name))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:
        values.update(given)
        sources.append("the run's settings")
    return parse_settings(values, " or ".join(sources))


# The defaults, for library functions called without a run (tests, notebooks): one source, the fields above.
DEFAULTS = RunSettings()
