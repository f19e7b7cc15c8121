"""Registration, quality gate, deployment and retraining automation (issue 3 items 4 and 5).

`deployment_definitions()` is merged into the main Definitions by biodiv_dagster/definitions.py.
"""

import dagster as dg


def deployment_definitions() -> dg.Definitions:
    """Assets registered_model and batch_deployment, their job, the registration sensor, the weekly retrain
    schedule, the new-data-version sensor, and the resources deployment_backend and quality_gate.

    Needs the training assets (prepared_data ... deployable_model) from the main Definitions to resolve
    retrain_job's selection.
    """
    from biodiv_dagster.config import load_run_defaults
    from biodiv_dagster.deployment.assets import (
        QualityGate,
        batch_deployment,
        register_and_deploy_job,
        registered_model,
    )
    from biodiv_dagster.deployment.automation import new_data_version_sensor, retrain_job, weekly_retrain_schedule
    from biodiv_dagster.deployment.backend import default_backend
    from biodiv_dagster.deployment.sensor import registration_sensor

    # One AUC floor for the scores asset check and the deployment gate (config/run.yml, BIODIV_AUC_FLOOR).
    gate = QualityGate(auc_floor=load_run_defaults(check_cv=False).auc_floor)

    return dg.Definitions(
        assets=[registered_model, batch_deployment],
        jobs=[register_and_deploy_job, retrain_job],
        sensors=[registration_sensor, new_data_version_sensor],
        schedules=[weekly_retrain_schedule],
        resources={"deployment_backend": default_backend(), "quality_gate": gate},
    )
