"""The Dagster code location: `dagster dev` (workspace.yaml) and `biodiv` load ``defs`` from here.

Composed from one `Definitions` per domain and merged. Import stays light: assets, sensors and
resources import pandas, LightGBM, MLflow or Azure only inside the functions that need them.
"""

from __future__ import annotations

import os

import dagster as dg

from biodiv_dagster.assets import TRAINING_ASSET_KEYS, training_assets
from biodiv_dagster.deployment import deployment_definitions
from biodiv_dagster.habitat import habitat_definitions
from biodiv_dagster.launcher import StepLauncher
from biodiv_dagster.partitions import site_species_partitions
from biodiv_dagster.sync import partition_sync_sensor

TRAIN_JOB = "train_models"

train_models_job = dg.define_asset_job(
    TRAIN_JOB,
    selection=dg.AssetSelection.assets(*TRAINING_ASSET_KEYS),
    partitions_def=site_species_partitions,
    description="Prepare, tune, score and build the deployable model of one site x species partition.",
)


def training_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=training_assets,
        jobs=[train_models_job],
        sensors=[partition_sync_sensor],
        resources={"step_launcher": StepLauncher(mode=os.environ.get("BIODIV_LAUNCHER_MODE", "local"))},
        # One step at a time per run: every step already runs in its own process (or AzureML job), and the
        # LightGBM thread budget is cores / concurrent runs (dagster.yaml). The multiprocess default would let
        # `scores` and `deployable_model` of one run train together and oversubscribe the cores.
        executor=dg.in_process_executor,
    )


defs = dg.Definitions.merge(training_definitions(), deployment_definitions(), habitat_definitions())
