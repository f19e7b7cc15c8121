"""The deployment domain's Definitions: registration, quality gate, deployment and retraining automation."""

import dagster as dg

from biodiv_core.run_settings import load_run_settings
from biodiv_dagster.backends import deployment_backend_from_env
from biodiv_dagster.deployment.assets import QualityGate, batch_deployment, register_and_deploy_job, registered_model
from biodiv_dagster.deployment.automation import new_data_version_sensor, retrain_job, weekly_retrain_schedule
from biodiv_dagster.deployment.sensor import registration_sensor


def deployment_definitions() -> dg.Definitions:
    """Assets registered_model and batch_deployment, their job, the registration sensor, the weekly retrain
    schedule, the new-data-version sensor, and the resources deployment_backend and quality_gate.

    Needs the training assets (prepared_data ... deployable_model) from the main Definitions to resolve
    retrain_job's selection.
    """
    # One AUC floor for the scores asset check and the deployment gate (config/run.yml, BIODIV_AUC_FLOOR).
    gate = QualityGate(auc_floor=load_run_settings().auc_floor)

    return dg.Definitions(
        assets=[registered_model, batch_deployment],
        jobs=[register_and_deploy_job, retrain_job],
        sensors=[registration_sensor, new_data_version_sensor],
        schedules=[weekly_retrain_schedule],
        resources={"deployment_backend": deployment_backend_from_env(), "quality_gate": gate},
    )
