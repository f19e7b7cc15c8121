"""The step launcher resource (DESIGN section 5), resource key ``step_launcher``: the base every backend extends.

Assets describe a step with a `StepSpec`; a backend (`LocalStepLauncher`, `AzureMLStepLauncher`) runs it and
returns one `MaterializeResult` per output asset, built from what the step reported through Dagster Pipes.
`launch` then rewrites path metadata to the canonical output location the launcher chose (not the path the
step saw, e.g. an AzureML mount) and checks every output was reported. `biodiv_dagster.backends` picks the
backend from the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from biodiv_core.atomic import COMPLETE_MARKER, COMPLETE_MARKER_KEY, OutputCommit
from biodiv_dagster.launcher.spec import StepSpec


class StepLauncher(dg.ConfigurableResource):
    """Runs the azureml_steps entry points; subclasses say where."""

    def output_location(self, asset: str, site: str, species: str, run_id: str) -> str:
        """Where ``asset`` of (site, species) goes for this run: ``<root>/<asset>/<site>/<species>/<run_id>/``."""
        raise NotImplementedError

    def data_input(self, asset: str, version: int | None = None) -> tuple[str, int]:
        """(location, resolved version) of a data-store asset; latest version when ``version`` is None."""
        raise NotImplementedError

    def run_step(self, context: dg.AssetExecutionContext, spec: StepSpec) -> Sequence[dg.MaterializeResult]:
        """Run the step; raise ``dg.Failure`` with the step's own error message when it fails."""
        raise NotImplementedError

    def output_commit(self) -> OutputCommit:
        """How steps commit their output folders where this backend puts them (`biodiv_core.atomic`)."""
        return OutputCommit.RENAME  # a rename is cheap and atomic on a local disk

    def launch(self, context: dg.AssetExecutionContext, spec: StepSpec) -> list[dg.MaterializeResult]:
        context.log.info(f"launching step {spec.step} ({type(self).__name__}) correlation_id={spec.correlation_id}")
        commit = self.output_commit()
        spec = dataclasses.replace(spec, env={**commit.env(), **spec.env})
        return canonical_results(spec, self.run_step(context, spec), commit)


def canonical_results(
    spec: StepSpec, results: Sequence[dg.MaterializeResult], commit: OutputCommit = OutputCommit.RENAME
) -> list[dg.MaterializeResult]:
    """Results with ``path`` (and paths under it) set to the launcher's output locations, one per output asset.

    Outputs written in place (`OutputCommit.MARKER`) must report their completion marker: without it the folder
    is not an output, and the asset fails rather than materializing it.
    """
    location_by_key = {spec.asset_keys[option]: spec.outputs[option] for option in spec.asset_keys}
    by_key: dict[str, dg.MaterializeResult] = {}
    for result in results:
        key = result.asset_key.to_user_string() if result.asset_key else None
        if key not in location_by_key:
            raise dg.Failure(
                description=f"Step {spec.step} reported asset {key!r}, which it does not produce "
                f"(expected {sorted(location_by_key)})."
            )
        if commit is OutputCommit.MARKER and COMPLETE_MARKER_KEY not in (result.metadata or {}):
            raise dg.Failure(
                description=f"Step {spec.step} reported {key} without its {COMPLETE_MARKER} marker: the output folder "
                "is unfinished; materialize it again."
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
    return with_metadata(result, metadata)


def with_metadata(
    result: dg.MaterializeResult, metadata: Mapping[str, Any], checks=(), data_version=None
) -> dg.MaterializeResult:
    """``result`` with ``metadata`` in place of its own, ``checks`` added, ``data_version`` if given."""
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata=dict(metadata),
        check_results=[*(result.check_results or []), *checks],
        data_version=data_version or result.data_version,
        tags=result.tags,
    )
