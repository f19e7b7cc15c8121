"""Training assets through Dagster with the local launcher: one partition end to end, inputs from metadata."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore
from biodiv_core.errors import ConfigError
from biodiv_core.run_settings import load_run_settings
from biodiv_dagster.correlation import correlation_id_from_tags
from biodiv_dagster.instance import get_instance
from biodiv_dagster.launcher.local import LocalStepLauncher
from biodiv_dagster.training.assets import training_assets
from biodiv_dagster.training.config import training_run_config
from biodiv_dagster.training.sync import add_partition

PARTITION = "everglades|cygnus-buccinator"
TINY = dict(max_evals=2, n_folds=3, seed=11, num_threads=1)


@pytest.fixture
def data(tmp_path, monkeypatch):
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=500, seed=2)
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    return root


def _materialize(instance, selection, tags=None, raise_on_error=True):
    return dg.materialize(
        training_assets,
        selection=selection,
        instance=instance,
        partition_key=PARTITION,
        resources={"step_launcher": LocalStepLauncher()},
        run_config=training_run_config(selection, **TINY),
        tags=tags or {},
        raise_on_error=raise_on_error,
    )


def _latest(instance, asset):
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[PARTITION]), limit=1
    ).records
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}


def test_one_partition_end_to_end_reading_inputs_from_metadata(data, tmp_path):
    instance = get_instance()
    add_partition(instance, "everglades", "Cygnus buccinator")
    first = _materialize(instance, ["prepared_data"], tags={"correlation_id": "corr-e2e"})
    prepared = _latest(instance, "prepared_data")
    assert prepared["path"] == str(
        settings.storage_root() / "prepared_data" / "everglades" / "cygnus-buccinator" / first.run_id
    )

    # Move the prepared folder and say so in a new materialization: downstream must follow the metadata.
    moved = tmp_path / "moved-prepared"
    shutil.copytree(prepared["path"], moved)
    shutil.rmtree(prepared["path"])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "prepared_data", partition=PARTITION, metadata={**prepared, "path": dg.MetadataValue.path(str(moved))}
        )
    )

    rest = _materialize(
        instance,
        ["best_parameters", "train_test_split", "scores", "deployable_model"],
        tags={"correlation_id": "corr-e2e"},
    )
    assert rest.success
    best, split = _latest(instance, "best_parameters"), _latest(instance, "train_test_split")
    scores, model = _latest(instance, "scores"), _latest(instance, "deployable_model")
    for asset, metadata in [("best_parameters", best), ("train_test_split", split), ("scores", scores)]:
        assert metadata["path"] == str(
            settings.storage_root() / asset / "everglades" / "cygnus-buccinator" / rest.run_id
        )
        assert Path(metadata["path"]).is_dir()
        assert metadata["correlation_id"] == "corr-e2e"
        assert metadata["species"] == "Cygnus buccinator" and metadata["site"] == "everglades"
    assert split["train_rows"] + split["test_rows"] == prepared["rows"]
    assert best["max_evals"] == 2 and best["n_folds"] == 3 and best["num_threads"] == 1
    assert isinstance(best["best_parameters"], dict) and 0.5 < best["best_cv_auc"] <= 1
    assert 0.5 < scores["roc_auc"] <= 1 and Path(scores["path"], "confusion_matrix.png").is_file()
    assert Path(model["model_path"], "MLmodel").is_file()
    assert model["model_uri"] == Path(model["model_path"]).as_uri()
    _assert_mlflow_runs_are_linked_named_and_tagged(rest.run_id, best, scores, model)

    checks = {e.check_name: e.passed for e in rest.get_asset_check_evaluations()}
    assert checks == {"roc_auc_above_floor": True}

    # The MLflow runs carry the correlation id.
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri())
    assert "corr-e2e" in client.get_run(scores["mlflow_run_id"]).data.tags.values()


def test_downstream_without_upstream_fails_clearly(data):
    instance = get_instance()
    add_partition(instance, "everglades", "Cygnus buccinator")
    result = _materialize(instance, ["scores"], raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert (
        "best_parameters has not been materialized for partition"
        in failure.step_failure_data.user_failure_data.description
    )


def test_run_config_defaults_come_from_file_then_environment(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "run.yml").write_text("max_evals: 7\nn_folds: 4\nauc_floor: 0.7\n")
    monkeypatch.setenv("BIODIV_CONFIG_DIR", str(folder))
    defaults = load_run_settings()
    assert (defaults.max_evals, defaults.n_folds, defaults.auc_floor) == (7, 4, 0.7)
    monkeypatch.setenv("BIODIV_MAX_EVALS", "3")
    assert load_run_settings().max_evals == 3
    with pytest.raises(ConfigError, match="max_evals=0"):
        training_run_config(max_evals=0)
    monkeypatch.setenv("BIODIV_N_FOLDS", "1")
    with pytest.raises(ConfigError, match="n_folds=1"):
        load_run_settings()


def test_correlation_id_prefers_tag_then_backfill_then_run():
    assert correlation_id_from_tags({"correlation_id": "c", "dagster/backfill": "b"}, "r") == "c"
    assert correlation_id_from_tags({"dagster/backfill": "b"}, "r") == "b"
    assert correlation_id_from_tags({}, "r") == "r"


def test_a_run_can_pin_the_data_versions_it_trains_on(data, monkeypatch):
    generate_datastore(data, sites=["everglades"], species=["Cygnus buccinator"], rows=300, seed=4, version=2)
    instance = get_instance()
    add_partition(instance, "everglades", "Cygnus buccinator")
    features, species = "everglades-training-features", "everglades-training-species"
    _materialize(instance, ["prepared_data"])
    assert _latest(instance, "prepared_data")["input_data_versions"] == {features: 2, species: 2}  # the latest
    pinned = dg.materialize(
        training_assets,
        selection=["prepared_data"],
        instance=instance,
        partition_key=PARTITION,
        resources={"step_launcher": LocalStepLauncher()},
        run_config=training_run_config(["prepared_data"], **TINY, features_version=1, species_version=1),
    )
    assert pinned.success
    prepared = _latest(instance, "prepared_data")
    assert prepared["input_data_versions"] == {features: 1, species: 1}
    assert prepared["rows"] == 400  # version 1 has 500 points (400 labelled), version 2 has 300
    monkeypatch.setenv("BIODIV_SPECIES_VERSION", "3")  # the environment pins too, and a missing version is clear
    with pytest.raises(dg.Failure, match="Version 3"):
        _materialize(instance, ["prepared_data"])


def _assert_mlflow_runs_are_linked_named_and_tagged(dagster_run_id, *step_metadata):
    """Each step's metadata links its MLflow run in the MLflow UI; the run says whose step it is."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri())
    for metadata in step_metadata:
        run_id = metadata["mlflow_run_id"]
        experiment = metadata["mlflow_experiment_id"]
        assert metadata["mlflow_run"] == (
            f"{settings.mlflow_ui_url()}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"
        )
        assert "mlflow_tracking_uri" not in metadata
        run = client.get_run(run_id)
        step = run.data.tags["step"]
        assert run.info.run_name == f"{step} everglades/Cygnus buccinator"
        assert {
            "site": "everglades",
            "species": "Cygnus buccinator",
            "partition": PARTITION,
            "correlation_id": "corr-e2e",
            "dagster_run_id": dagster_run_id,
        }.items() <= run.data.tags.items()
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow UI: classic ML view


def test_prepared_data_versions_name_the_covariate_rasters_when_prep_drew_on_them(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for version in (1, 2):  # version 2 of every asset, rasters included; the run pins features and species to 1
        generate_datastore(
            root, sites=["everglades"], species=["Cygnus buccinator"], rows=400, raster_size=20, seed=version,
            presence_only=["Cygnus buccinator"], version=version,
        )  # fmt: skip
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    instance = get_instance()
    add_partition(instance, "everglades", "Cygnus buccinator")
    features, species, rasters = "everglades-training-features", "everglades-training-species", "everglades-covariates"

    def prepared_versions(background_from):
        run_config = training_run_config(
            ["prepared_data"], **TINY, background_from=background_from, background_points=100,
            features_version=1, species_version=1,
        )  # fmt: skip
        dg.materialize(training_assets, selection=["prepared_data"], instance=instance, partition_key=PARTITION,
                       resources={"step_launcher": LocalStepLauncher()}, run_config=run_config)  # fmt: skip
        [record] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("prepared_data"), asset_partitions=[PARTITION]), limit=1
        ).records
        metadata = record.asset_materialization.metadata
        return metadata["input_data_versions"].value, record.asset_materialization.tags["dagster/data_version"]

    # Background cells from the rasters: their (latest) version is an input of the prepared data.
    versions, data_version = prepared_versions("raster_cells")
    assert versions == {features: 1, species: 1, rasters: 2}
    assert data_version == f"{rasters}:2,{features}:1,{species}:1"
    # Background from the feature rows: the rasters are not read, a new raster version changes nothing.
    versions, data_version = prepared_versions("feature_rows")
    assert versions == {features: 1, species: 1} and rasters not in data_version
