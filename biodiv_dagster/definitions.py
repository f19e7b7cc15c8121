"""The code location: `dagster dev` (workspace.yaml) and `biodiv` load ``defs`` from here.

One `Definitions` per domain, merged. Import stays light: assets, sensors and resources import pandas,
LightGBM, MLflow or Azure only inside the functions that need them.
"""

import dagster as dg

from biodiv_dagster.deployment.definitions import deployment_definitions
from biodiv_dagster.habitat import habitat_definitions
from biodiv_dagster.habitat_automation import habitat_automation_definitions
from biodiv_dagster.notifications import notification_definitions
from biodiv_dagster.training.definitions import TRAIN_JOB, training_definitions

__all__ = ["TRAIN_JOB", "defs"]

defs = dg.Definitions.merge(
    training_definitions(),
    deployment_definitions(),
    habitat_definitions(),
    habitat_automation_definitions(),
    notification_definitions(),
)
