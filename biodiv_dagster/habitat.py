"""`habitat_suitability`: the deployed model applied to every point of the site's features.

Runs in the Dagster process, like `batch_deployment`: it reads the deployed version from the
`batch_deployment` metadata, finds the model through the `deployment_backend` registry, reads the
site's latest feature version from the data store and writes the parquet table and map image with
``biodiv_core.serving.habitat.run_habitat``. When the site has covariate rasters (``<site>-covariates``, latest
version), every valid cell is predicted too and the surface (COG + map) is reported as ``suitability_raster``.
The share of points (``extrapolated_share``) and cells (``surface_extrapolated_share``) where the model
extrapolates (MESS < 0, `biodiv_core.serving.similarity`) goes into the metadata.
Local data store only (the step launcher's ``local`` mode); in
``azureml`` mode the features live in a workspace data asset and the asset fails with a clear message.
"""

import base64
from pathlib import Path

import dagster as dg

from biodiv_core.errors import BiodivError, NotFoundError
from biodiv_core.naming import covariates_asset_name, features_asset_name
from biodiv_dagster.deployment.backend import DeploymentBackend
from biodiv_dagster.deployment.upstream import latest_record, metadata_values
from biodiv_dagster.launcher.base import StepLauncher
from biodiv_dagster.partitions import site_species_partitions, split_partition_key

# Inline the map in the UI below this size (the PNG path is always reported).
MAX_INLINE_IMAGE_BYTES = 300_000


def _fail(message: str) -> dg.Failure:
    return dg.Failure(description=message, allow_retries=False)


def _local(location: str) -> str:
    if "://" in location or location.startswith("azureml:"):
        raise _fail(
            f"habitat_suitability reads the site's data locally, but it is at {location}: "
            "run it with the local step launcher (BIODIV_LAUNCHER_MODE=local) and a local data store."
        )
    return location


def _covariates(step_launcher: StepLauncher, site_slug: str) -> tuple[str, int] | None:
    """(location, version) of the site's covariate rasters; None when the site has none (the point map)."""
    try:
        location, version = step_launcher.data_input(covariates_asset_name(site_slug))
    except NotFoundError:
        return None
    return _local(location), version


@dg.asset(
    partitions_def=site_species_partitions,
    deps=["batch_deployment"],
    group_name="biodiv",
    owners=["team:biodiv"],
    kinds={"python", "parquet", "lightgbm"},
    description="Probability of presence at every point of the site's features (labelled or not) from the "
    "deployed model: parquet (gbifid, decimallatitude, decimallongitude, probability, predicted at the "
    "model's TSS threshold, mess and extrapolated: MESS < 0, conditions outside the training data) and a map "
    "image coloured by probability. With the site's covariate rasters, every valid cell too: a Cloud-Optimized "
    "GeoTIFF (probability, presence, mess) and its map, extrapolated cells hatched.",
)
def habitat_suitability(
    context: dg.AssetExecutionContext, deployment_backend: DeploymentBackend, step_launcher: StepLauncher
) -> dg.MaterializeResult:
    from biodiv_core.data.datastore import read_table
    from biodiv_core.data.rasters import open_covariates
    from biodiv_core.serving import batch_scoring
    from biodiv_core.serving.habitat import run_habitat

    partition = str(context.partition_key)
    site_slug, species_slug = split_partition_key(partition)
    try:
        deployment = metadata_values(
            latest_record(context.instance, "batch_deployment", partition).asset_materialization
        )
        name, version = deployment.get("model_name"), deployment.get("deployed_version")
        if not name or not version:
            raise _fail(
                f"No model is deployed for {partition} (batch_deployment decision: {deployment.get('reason')}); "
                "a habitat map needs a deployed model: train a model that passes the quality gate."
            )
        model_uri = deployment_backend.model_location(str(name), str(version))
        features_location, features_version = step_launcher.data_input(features_asset_name(site_slug))
        _local(features_location)
        rasters = _covariates(step_launcher, site_slug)
        model, inputs = batch_scoring.load_scorer(model_uri)
        threshold = inputs.threshold
        features = read_table(features_location)
        # Checked before any cell is scored: a wrong grid or a missing covariate fails here, naming the files.
        covariates = open_covariates(rasters[0], inputs.features) if rasters else None
        output = step_launcher.output_location("habitat_suitability", site_slug, species_slug, context.run_id)
        summary = run_habitat(
            features,
            model,
            output,
            threshold=threshold,
            title=f"{name} v{version}: habitat suitability",
            inputs=inputs,
            covariates=covariates,
        )
    except BiodivError as exc:
        raise _fail(str(exc)) from exc

    cells = f", {summary['valid_cells']} cells" if covariates is not None else ""
    context.log.info(f"habitat_suitability {partition}: {summary['rows']} points{cells} scored with {name} v{version}")
    metadata = {
        "path": dg.MetadataValue.path(summary["path"]),
        "table": dg.MetadataValue.path(summary["table"]),
        "map": dg.MetadataValue.path(summary["map"]),
        "rows": dg.MetadataValue.int(summary["rows"]),
        "threshold": dg.MetadataValue.float(float(threshold)),
        "share_predicted_present": dg.MetadataValue.float(float(summary["share_predicted_present"])),
        "probability_mean": dg.MetadataValue.float(float(summary["probability_mean"])),
        "probability_quantiles": dg.MetadataValue.json(summary["probability_quantiles"]),
        "model_name": dg.MetadataValue.text(str(name)),
        "model_version": dg.MetadataValue.text(str(version)),
        "model_uri": dg.MetadataValue.text(str(model_uri)),
        "features_version": dg.MetadataValue.int(int(features_version)),
    }
    # Share of points (and cells) where the model extrapolates (MESS < 0); models saved without a covariate
    # reference have none, and the note says so.
    if summary.get("extrapolated_share") is not None:
        metadata["extrapolated_share"] = dg.MetadataValue.float(float(summary["extrapolated_share"]))
    else:
        metadata["extrapolation_note"] = dg.MetadataValue.text(str(summary.get("extrapolation_note")))
    if covariates is not None:
        metadata |= {
            "suitability_raster": dg.MetadataValue.path(summary["suitability_raster"]),
            "suitability_map": dg.MetadataValue.path(summary["suitability_map"]),
            "cells": dg.MetadataValue.int(summary["cells"]),
            "valid_cells": dg.MetadataValue.int(summary["valid_cells"]),
            "surface_probability_mean": dg.MetadataValue.float(float(summary["surface_probability_mean"])),
            "surface_share_present": dg.MetadataValue.float(float(summary["surface_share_present"])),
            "covariates_version": dg.MetadataValue.int(int(rasters[1])),
        }
        if summary.get("surface_extrapolated_share") is not None:
            share = float(summary["surface_extrapolated_share"])
            metadata["surface_extrapolated_share"] = dg.MetadataValue.float(share)
    if deployment.get("correlation_id"):
        metadata["correlation_id"] = dg.MetadataValue.text(str(deployment["correlation_id"]))
    image = Path(summary["map"])
    if image.stat().st_size <= MAX_INLINE_IMAGE_BYTES:
        encoded = base64.b64encode(image.read_bytes()).decode("ascii")
        metadata["map_image"] = dg.MetadataValue.md(f"![habitat map](data:image/png;base64,{encoded})")
    return dg.MaterializeResult(metadata=metadata)


def habitat_definitions() -> dg.Definitions:
    """The asset alone: its resources (deployment_backend, step_launcher) come from the other Definitions."""
    return dg.Definitions(assets=[habitat_suitability])
