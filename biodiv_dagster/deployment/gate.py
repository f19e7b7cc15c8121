"""Quality gate: should a newly registered model version replace the deployed one?

A pure function so the rule is tested without a registry: deploy iff the candidate's ROC-AUC reaches the
floor and is no worse than the deployed version's beyond a tolerance. The reason is shown in the UI.
"""

import math
from dataclasses import dataclass

from biodiv_core.errors import ConfigError

DEFAULT_AUC_FLOOR = 0.7
DEFAULT_AUC_TOLERANCE = 0.01


@dataclass(frozen=True)
class GateDecision:
    deploy: bool
    reason: str


def decide(
    roc_auc: float | None,
    deployed_auc: float | None,
    *,
    has_deployed: bool,
    floor: float = DEFAULT_AUC_FLOOR,
    tolerance: float = DEFAULT_AUC_TOLERANCE,
    lift: float | None = None,
    min_lift: float | None = None,
) -> GateDecision:
    """Decide on a candidate with test ROC-AUC ``roc_auc`` against the deployed version's ``deployed_auc``.

    ``has_deployed`` says whether any version is deployed; a deployed version without a recorded AUC
    (registered by hand) is replaced only by a candidate that clears the floor.
    """
    if not 0.0 <= floor <= 1.0:
        raise ConfigError(f"Quality gate auc_floor={floor} is outside [0, 1]: set a ROC-AUC such as 0.7.")
    if not 0.0 <= tolerance <= 1.0:
        raise ConfigError(f"Quality gate auc_tolerance={tolerance} is outside [0, 1]: set a small value such as 0.01.")
    if roc_auc is None or math.isnan(roc_auc):
        return GateDecision(False, "not deployed: the candidate has no ROC-AUC (scores metadata `roc_auc` missing)")
    if roc_auc < floor:
        return GateDecision(False, f"not deployed: ROC-AUC {roc_auc:.4f} is below the floor {floor:.4f}")
    # Opt-in: the model must beat the quadratic logistic baseline by ``min_lift`` AUC.
    if min_lift is not None and (lift is None or math.isnan(lift) or lift < min_lift):
        shown = "unknown (scores metadata `lift` missing)" if lift is None or math.isnan(lift) else f"{lift:.4f}"
        return GateDecision(False, f"not deployed: lift over the baseline {shown} is below min_lift {min_lift:.4f}")
    if not has_deployed:
        return GateDecision(True, f"deployed: ROC-AUC {roc_auc:.4f} >= floor {floor:.4f} and no version deployed yet")
    if deployed_auc is None or math.isnan(deployed_auc):
        return GateDecision(
            True, f"deployed: ROC-AUC {roc_auc:.4f} >= floor {floor:.4f}; the deployed version has no recorded ROC-AUC"
        )
    if roc_auc < deployed_auc - tolerance:
        return GateDecision(
            False,
            f"not deployed: ROC-AUC {roc_auc:.4f} is worse than the deployed version's {deployed_auc:.4f} "
            f"by more than the tolerance {tolerance:.4f}",
        )
    return GateDecision(
        True,
        f"deployed: ROC-AUC {roc_auc:.4f} >= floor {floor:.4f} and within {tolerance:.4f} of "
        f"(or better than) the deployed version's {deployed_auc:.4f}",
    )
