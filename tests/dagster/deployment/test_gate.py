"""The quality gate: floor, tolerance, first deployment, and reasons that say what happened."""

import math

import pytest

from biodiv_core.errors import ConfigError
from biodiv_dagster.deployment.gate import decide


@pytest.mark.parametrize(
    ("roc_auc", "deployed_auc", "has_deployed", "expected"),
    [
        (0.80, None, False, True),  # first model above the floor
        (0.65, None, False, False),  # first model below the floor
        (0.80, 0.85, True, False),  # worse by more than the tolerance
        (0.845, 0.85, True, True),  # worse by less than the tolerance
        (0.90, 0.85, True, True),  # better
        (0.85, 0.85, True, True),  # equal (a re-run of the same model)
        (0.69, 0.60, True, False),  # better than deployed but under the floor
        (0.80, None, True, True),  # deployed version without a recorded AUC
        (None, None, False, False),  # no AUC reported
        (math.nan, 0.8, True, False),
    ],
)
def test_decision_table(roc_auc, deployed_auc, has_deployed, expected):
    decision = decide(roc_auc, deployed_auc, has_deployed=has_deployed, floor=0.7, tolerance=0.01)
    assert decision.deploy is expected
    assert decision.reason.startswith("deployed" if expected else "not deployed")


def test_reason_names_the_numbers_that_decided():
    worse = decide(0.75, 0.90, has_deployed=True, floor=0.7, tolerance=0.02)
    assert not worse.deploy
    assert "0.7500" in worse.reason and "0.9000" in worse.reason and "0.0200" in worse.reason
    low = decide(0.55, None, has_deployed=False, floor=0.6, tolerance=0.0)
    assert "below the floor 0.6000" in low.reason


def test_tolerance_boundary_is_inclusive():
    assert decide(0.80, 0.85, has_deployed=True, floor=0.5, tolerance=0.05).deploy
    assert not decide(0.7999, 0.85, has_deployed=True, floor=0.5, tolerance=0.05).deploy


@pytest.mark.parametrize(("floor", "tolerance"), [(1.5, 0.01), (-0.1, 0.01), (0.7, -0.01)])
def test_bad_configuration_is_a_config_error(floor, tolerance):
    with pytest.raises(ConfigError, match="auc_"):
        decide(0.8, None, has_deployed=False, floor=floor, tolerance=tolerance)


def test_an_older_or_the_same_version_never_goes_back_over_the_deployed_one():
    """Two runs of one partition reach the gate in either order: what is deployed only moves forward."""
    from biodiv_dagster.deployment.assets import _newer_deployed
    from biodiv_dagster.deployment.backend import DeployedVersion

    assert _newer_deployed(None, "1") is None  # nothing deployed: the gate decides
    assert _newer_deployed(DeployedVersion("1", 0.8), "2") is None  # a newer candidate: the gate decides
    older = _newer_deployed(DeployedVersion("3", 0.8), "2")
    assert older is not None and not older.deploy and "newer version 3" in older.reason
    same = _newer_deployed(DeployedVersion("2", 0.8), "2")
    assert same is not None and not same.deploy and "already deployed" in same.reason
    assert _newer_deployed(DeployedVersion("abc", 0.8), "2") is None  # versions that are not numbers: the gate
