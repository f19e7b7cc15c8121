"""The training domain's Definitions: the five training assets, their job, the partition sync sensor, the sensor that
retracts the outputs of runs failed on storage, the launcher."""

import dagster as dg

from biodiv_dagster.backends import step_launcher_from_env
from biodiv_dagster.deployment.rollback import storage_failure_sensor
from biodiv_dagster.partitions import site_species_partitions
from biodiv_dagster.training.assets import TRAINING_ASSET_KEYS, training_assets
from biodiv_dagster.training.sync import partition_sync_sensor

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
        sensors=[partition_sync_sensor, storage_failure_sensor],
        resources={"step_launcher": step_launcher_from_env()},
        # One step at a time per run: every step already runs in its own process (or AzureML job), and the
        # LightGBM thread budget is cores / concurrent runs (dagster.yaml). The multiprocess default would let
        # `scores` and `deployable_model` of one run train together and oversubscribe the cores.
        executor=dg.in_process_executor,
    )
