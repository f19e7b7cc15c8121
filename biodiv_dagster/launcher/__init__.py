"""The AzureML step launcher resource (DESIGN section 5), resource key ``step_launcher``.

Assets describe a step with a `StepSpec`; the launcher runs it where ``mode`` says and returns one
`MaterializeResult` per output asset, built from what the step reported through Dagster Pipes.

Each mode lives in its own module (imported only when used, so loading the definitions stays light)
exposing three functions that take the resource as first argument:

- ``output_location(launcher, asset, site, species, run_id) -> str``
- ``data_input(launcher, asset, version) -> tuple[str, int]``: location + resolved version of a
  versioned data-store asset (``<site>-training-features``...), given to the step as an input
- ``launch(launcher, context, spec) -> Sequence[dg.MaterializeResult]``: run the step, raise
  ``dg.Failure`` with the step's own error message when it fails

Whatever the mode, `launch` here then rewrites path metadata to the canonical output location the
launcher chose (not the path the step saw, e.g. an AzureML mount) and checks every output was reported.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

import dagster as dg

from biodiv_core.errors import ConfigError
from biodiv_dagster.launcher.spec import StepSpec

__all__ = ["StepLauncher", "StepSpec", "canonical_results"]

# mode -> module implementing it (see the module docstring for the three functions).
MODE_MODULES = {
    "local": "biodiv_dagster.launcher.local",
    "azureml": "biodiv_dagster.launcher.azureml",
}


class StepLauncher(dg.ConfigurableResource):
    """Runs the azureml_steps entry points: ``local`` (subprocess through Pipes) or ``azureml`` (command job)."""

    mode: str = "local"
    # local mode: step outputs root (None: biodiv_core.settings.storage_root(), read at call time)
    storage_root: str | None = None
    # local mode: data store root (None: biodiv_core.settings.data_root(), i.e. BIODIV_DATA_ROOT)
    data_root: str | None = None

    def _mode(self) -> ModuleType:
        module_name = MODE_MODULES.get(self.mode)
        if module_name is None:
            raise ConfigError(
                f"step_launcher mode {self.mode!r} is unknown: use one of {sorted(MODE_MODULES)} "
                "(set BIODIV_LAUNCHER_MODE or the resource config)."
            )
        return importlib.import_module(module_name)

    def output_location(self, asset: str, site: str, species: str, run_id: str) -> str:
        """Where ``asset`` of (site, species) goes for this run: ``<root>/<asset>/<site>/<species>/<run_id>/``."""
        return self._mode().output_location(self, asset, site, species, run_id)

    def data_input(self, asset: str, version: int | None = None) -> tuple[str, int]:
        """(location, resolved version) of a data-store asset; latest version when ``version`` is None."""
        return self._mode().data_input(self, asset, version)

    def launch(self, context: dg.AssetExecutionContext, spec: StepSpec) -> list[dg.MaterializeResult]:
        context.log.info(f"launching step {spec.step} ({self.mode}) correlation_id={spec.correlation_id}")
        results = self._mode().launch(self, context, spec)
        return canonical_results(spec, results)


def canonical_results(spec: StepSpec, results: Sequence[dg.MaterializeResult]) -> list[dg.MaterializeResult]:
    """Results with ``path`` (and paths under it) set to the launcher's output locations, one per output asset."""
    location_by_key = {spec.asset_keys[option]: spec.outputs[option] for option in spec.asset_keys}
    by_key: dict[str, dg.MaterializeResult] = {}
    for result in results:
        key = result.asset_key.to_user_string() if result.asset_key else None
        if key not in location_by_key:
            raise dg.Failure(
                description=f"Step {spec.step} reported asset {key!r}, which it does not produce "
                f"(expected {sorted(location_by_key)})."
            )
        by_key[key] = _with_location(result, location_by_key[key])
    missing = sorted(set(location_by_key) - set(by_key))
    if missing:
        raise dg.Failure(
            description=f"Step {spec.step} finished without reporting {missing}: it must call "
            "azureml_steps.reporting.report() for each output."
        )
    return [by_key[key] for key in location_by_key]


def _with_location(result: dg.MaterializeResult, location: str) -> dg.MaterializeResult:
    metadata = dict(result.metadata or {})
    seen = metadata.get("path")
    seen_path = str(seen.value if isinstance(seen, dg.MetadataValue) else seen or "").rstrip("/")
    for name, value in list(metadata.items()):
        # Files the step reported inside its output folder move with it (confusion_matrix.png...).
        if isinstance(value, dg.PathMetadataValue) and seen_path and name != "path":
            text = str(value.value)
            if text.startswith(seen_path + "/"):
                metadata[name] = dg.MetadataValue.path(location.rstrip("/") + text[len(seen_path) :])
    metadata["path"] = dg.MetadataValue.path(location)
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata=metadata,
        data_version=result.data_version,
        check_results=result.check_results,
        tags=result.tags,
    )
