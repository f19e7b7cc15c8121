"""Local mode of the step launcher: command line, output locations, canonical paths, step errors in failures."""

import dagster as dg
import pytest

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore
from biodiv_core.errors import ConfigError
from biodiv_core.step_args import ScoreArgs
from biodiv_dagster.launcher.base import canonical_results
from biodiv_dagster.launcher.local import LocalStepLauncher, step_env
from biodiv_dagster.launcher.spec import StepSpec


def _spec(**changes):
    values = dict(
        site="everglades",
        species="Cygnus buccinator",
        best_parameters="/in/best",
        split="/in/split",
        output="/out/scores/run1",
        num_threads=1,
        correlation_id="cid-1",
    )
    values.update(changes)
    return StepSpec(ScoreArgs(**values))


def test_spec_builds_the_contract_command_line():
    spec = _spec()
    assert spec.module == "azureml_steps.score"
    assert spec.arguments() == [
        "--site", "everglades", "--species", "Cygnus buccinator", "--partition", "everglades|cygnus-buccinator",
        "--correlation-id", "cid-1", "--num-threads", "1",
        "--best-parameters", "/in/best", "--split", "/in/split", "--output", "/out/scores/run1",
    ]  # fmt: skip
    assert spec.asset_keys == {"output": "scores"} and spec.outputs == {"output": "/out/scores/run1"}
    assert ScoreArgs.from_argv(spec.arguments()) == spec.args  # the step reads back what the launcher wrote
    with pytest.raises(ConfigError, match="num_threads=0"):
        _spec(num_threads=0)


def test_output_location_is_asset_site_species_run(isolated_state):
    launcher = LocalStepLauncher()
    location = launcher.output_location("scores", "everglades", "Cygnus buccinator", "run-42")
    assert location == str(settings.storage_root() / "scores" / "everglades" / "cygnus-buccinator" / "run-42")
    assert LocalStepLauncher(storage_root="/elsewhere").output_location("a", "s", "x", "r") == "/elsewhere/a/s/x/r"


def test_launcher_is_chosen_by_environment(monkeypatch):
    from biodiv_dagster.backends import step_launcher_from_env
    from biodiv_dagster.launcher.azureml import AzureMLStepLauncher

    monkeypatch.setenv("BIODIV_LAUNCHER_MODE", "cloud")
    with pytest.raises(ConfigError, match="BIODIV_LAUNCHER_MODE='cloud' is not a step launcher"):
        step_launcher_from_env()
    monkeypatch.setenv("BIODIV_LAUNCHER_MODE", "azureml")
    assert isinstance(step_launcher_from_env(), AzureMLStepLauncher)
    monkeypatch.delenv("BIODIV_LAUNCHER_MODE")
    assert isinstance(step_launcher_from_env(), LocalStepLauncher)


def test_step_env_carries_state_tracking_and_correlation(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x.db")
    env = step_env(_spec(num_threads=3))
    assert env["BIODIV_CORRELATION_ID"] == "cid-1"
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/x.db"
    assert env["BIODIV_HOME"] == str(settings.biodiv_home())
    assert env["BIODIV_NUM_THREADS"] == "3" and env["OMP_NUM_THREADS"] == "3"


def test_canonical_results_rewrite_paths_and_require_every_output():
    spec = _spec(output="azureml://datastores/ws/paths/scores/s/x/run1/")
    reported = dg.MaterializeResult(
        asset_key="scores",
        metadata={
            "path": dg.MetadataValue.path("/mnt/job/out"),
            "confusion_matrix": dg.MetadataValue.path("/mnt/job/out/confusion_matrix.png"),
            "roc_auc": 0.8,
        },
    )
    [result] = canonical_results(spec, [reported])
    assert result.metadata["path"].value == "azureml://datastores/ws/paths/scores/s/x/run1/"
    assert (
        result.metadata["confusion_matrix"].value
        == "azureml://datastores/ws/paths/scores/s/x/run1/confusion_matrix.png"
    )
    assert result.metadata["roc_auc"] == 0.8
    with pytest.raises(dg.Failure, match="without reporting"):
        canonical_results(spec, [])
    with pytest.raises(dg.Failure, match="does not produce"):
        canonical_results(spec, [dg.MaterializeResult(asset_key="other", metadata={})])


@pytest.fixture
def one_site(tmp_path, monkeypatch):
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=300)
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    return root


def test_prep_runs_under_pipes_at_the_canonical_location(one_site):
    from biodiv_dagster.instance import get_instance
    from biodiv_dagster.training.assets import prepared_data
    from biodiv_dagster.training.sync import add_partition

    instance = get_instance()
    add_partition(instance, "everglades", "Cygnus buccinator")
    result = dg.materialize(
        [prepared_data],
        instance=instance,
        partition_key="everglades|cygnus-buccinator",
        resources={"step_launcher": LocalStepLauncher()},
        tags={"correlation_id": "corr-123"},
    )
    [materialization] = result.asset_materializations_for_node("prepared_data")
    metadata = materialization.metadata
    expected = settings.storage_root() / "prepared_data" / "everglades" / "cygnus-buccinator" / result.run_id
    assert metadata["path"].value == str(expected)
    assert (expected / "features.parquet").is_file()
    assert metadata["correlation_id"].value == "corr-123"
    assert metadata["rows"].value == metadata["n_present"].value + metadata["n_absent"].value > 0
    assert metadata["input_data_versions"].value == {
        "everglades-training-features": 1,
        "everglades-training-species": 1,
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"enough_rows_per_class": True, "no_duplicate_ids": True}


def test_step_error_message_is_the_dagster_failure(one_site):
    from biodiv_dagster.instance import get_instance
    from biodiv_dagster.training.assets import prepared_data
    from biodiv_dagster.training.runner import failure_message
    from biodiv_dagster.training.sync import add_partition

    instance = get_instance()
    add_partition(instance, "everglades", "Lynx canadensis")  # no gold data for it
    result = dg.materialize(
        [prepared_data],
        instance=instance,
        partition_key="everglades|lynx-canadensis",
        resources={"step_launcher": LocalStepLauncher()},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "lynx_canadensis_golddata.csv" in failure.step_failure_data.user_failure_data.description
    message = failure_message(result)
    assert message.startswith("prepared_data: Step prep failed: No gold data for species 'Lynx canadensis'")
    assert "Traceback" not in message
