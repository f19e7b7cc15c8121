"""The code location loads, names what the contracts promise, and imports no heavy library."""

import json
import subprocess
import sys

import dagster as dg

from biodiv_core import settings

TRAINING = {"prepared_data", "best_parameters", "train_test_split", "scores", "deployable_model"}


def test_definitions_are_loadable():
    from biodiv_dagster.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys >= TRAINING
    for key in TRAINING:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "biodiv"
        assert node.owners and node.description
        assert node.partitions_def is not None
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert {
        ("prepared_data", "enough_rows_per_class"),
        ("prepared_data", "no_duplicate_ids"),
        ("scores", "roc_auc_above_floor"),
    } <= checks
    assert "step_launcher" in defs.resources
    assert defs.resolve_sensor_def("partition_sync_sensor") is not None
    assert defs.resolve_job_def("train_models") is not None


def test_upstream_edges_follow_the_pipeline():
    from biodiv_dagster.definitions import defs

    graph = defs.resolve_asset_graph()

    def parents(key):
        return {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("best_parameters") == {"prepared_data"} == parents("train_test_split")
    assert parents("scores") == {"best_parameters", "train_test_split"}
    assert parents("deployable_model") == {"prepared_data", "best_parameters"}


def test_import_is_light():
    code = (
        "import sys, json, biodiv_dagster.definitions\n"
        "print(json.dumps(sorted(m for m in ('pandas', 'lightgbm', 'mlflow', 'sklearn', 'pyarrow', 'azure.ai.ml',"
        " 'matplotlib', 'hyperopt') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=settings.REPO_ROOT
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_workspace_points_at_the_definitions():
    import yaml

    workspace = yaml.safe_load((settings.REPO_ROOT / "workspace.yaml").read_text())
    target = workspace["load_from"][0]["python_module"]
    assert target["module_name"] == "biodiv_dagster.definitions" and target["attribute"] == "defs"


def test_dagster_home_gets_the_project_instance_config(isolated_state):
    from biodiv_dagster.instance import ensure_dagster_home, get_instance

    home = ensure_dagster_home()
    assert home == isolated_state / "dagster"
    instance = get_instance()
    assert instance.root_directory == str(home)
    queue = instance.run_coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 2
    # Registration runs: one at a time per partition (the sensor tags each with its partition), not one overall.
    assert {"key": "biodiv/registration", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
        queue.tag_concurrency_limits
    )
    config = (home / "dagster.yaml").read_text()
    assert "enabled: false" in config  # telemetry
    # An edited dagster.yaml is never overwritten.
    (home / "dagster.yaml").write_text(config + "\n# edited\n")
    ensure_dagster_home()
    assert (home / "dagster.yaml").read_text().endswith("# edited\n")
