"""Habitat-suitability maps (issue 7): every point of a site scored, parquet + PNG, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest
from model_quality_data import clustered_sdm, train_booster
from scipy.stats import spearmanr

from biodiv_core.errors import DataContractError
from biodiv_core.serving.habitat import MAP_FILE, OUTPUT_FILE, run_habitat, suitability_table

PREDICTORS = ["temperature", "precipitation", "noise", "land_cover"]


@pytest.fixture(scope="module")
def site():
    """A site's full feature table (land cover as strings, as read from CSV); only a third is labelled."""
    frame, y, truth = clustered_sdm(n_clusters=40, per_cluster=30, residual=0.0, seed=6, scattered=300)
    labelled = np.arange(len(y)) % 3 == 0
    booster = train_booster(frame.loc[labelled, PREDICTORS], y[labelled], rounds=60)
    features = frame.assign(land_cover=frame["land_cover"].astype(str))
    return features, booster, truth


def test_run_habitat_scores_every_point_and_writes_table_map_and_summary(site, tmp_path):
    features, booster, truth = site
    out = tmp_path / "habitat"
    summary = run_habitat(features, booster, out, feature_names=PREDICTORS, threshold=0.4, title="Lynx at test")
    table = pd.read_parquet(out / OUTPUT_FILE)
    assert list(table.columns) == ["gbifid", "decimallatitude", "decimallongitude", "probability", "predicted"]
    assert len(table) == len(features) == summary["rows"]
    assert table["gbifid"].dtype == np.int64 and table["gbifid"].tolist() == features["gbifid"].tolist()
    assert table["probability"].between(0, 1).all()
    assert (table["predicted"] == (table["probability"] >= 0.4)).all()
    # Unlabelled points are mapped too, and the map tracks the true suitability.
    assert spearmanr(table["probability"], truth).statistic > 0.6
    assert (out / MAP_FILE).read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["share_predicted_present"] == pytest.approx((table["probability"] >= 0.4).mean())
    assert summary["map"] == str(out / MAP_FILE)


def test_suitability_matches_the_model_and_ignores_extra_columns(site):
    features, booster, _ = site
    table = suitability_table(features.assign(extra="x"), booster, feature_names=PREDICTORS)
    expected = booster.predict(features[PREDICTORS].assign(land_cover=features["land_cover"].astype("category")))
    np.testing.assert_allclose(table["probability"], expected)
    assert "predicted" not in table.columns
    # Without feature names: every column but the id and coordinates is a predictor.
    default = suitability_table(features[["gbifid", "decimallatitude", "decimallongitude", *PREDICTORS]], booster)
    np.testing.assert_allclose(default["probability"], expected)
    # A plain callable works as a model.
    constant = suitability_table(features, lambda X: np.full(len(X), 0.25), feature_names=PREDICTORS)
    assert (constant["probability"] == 0.25).all()


def test_missing_columns_are_data_contract_errors_and_leave_no_output(site, tmp_path):
    features, booster, _ = site
    out = tmp_path / "habitat"
    with pytest.raises(DataContractError, match="decimallongitude"):
        run_habitat(features.drop(columns="decimallongitude"), booster, out, feature_names=PREDICTORS)
    with pytest.raises(DataContractError, match="precipitation"):
        run_habitat(features.drop(columns="precipitation"), booster, out, feature_names=PREDICTORS)
    with pytest.raises(DataContractError, match="gbifid"):
        run_habitat(features.drop(columns="gbifid"), booster, out, feature_names=PREDICTORS)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def _deployed_model(tmp_path, data_root, threshold, raster_size=0):
    """Generated site data, a LightGBM model on it saved as an MLflow model, registered in the local registry.

    With rasters the model is saved as train_to_deploy saves it (covariate reference included); without, as a bare
    MLflow LightGBM model, like the ones saved before extrapolation flags.
    """
    import mlflow.lightgbm

    from biodiv_core.data.datastore import read_table, species_file
    from biodiv_core.data.generate import generate_datastore
    from biodiv_dagster.deployment.local import LocalDeploymentBackend

    species = "Lynx canadensis"
    info = generate_datastore(
        data_root, sites=["yellowstone"], species=[species], rows=800, gold_rows=500, seed=1, raster_size=raster_size
    )
    features = read_table(info["sites"]["yellowstone"]["features"])
    gold = read_table(species_file(data_root, "yellowstone", species))
    labelled = features.merge(gold[["gbifid", "occurrencestatus"]], on="gbifid")
    X = labelled.drop(columns=["gbifid", "decimallatitude", "decimallongitude", "occurrencestatus"])
    X["land_cover"] = X["land_cover"].astype("category")
    booster = train_booster(X, (labelled["occurrencestatus"] == "PRESENT").astype(int).to_numpy(), rounds=30)
    model_dir = tmp_path / "lgbm_gbif_model"
    if raster_size:
        from biodiv_core.serving.mlflow_model import save_model

        save_model(booster, tmp_path, sample=X, threshold=threshold)
    else:
        mlflow.lightgbm.save_model(
            booster, str(model_dir), pip_requirements=["lightgbm"], metadata={"threshold": threshold}
        )
    backend = LocalDeploymentBackend()
    version = backend.register(str(model_dir), "lgbm-yellowstone-lynx-canadensis", tags={"roc_auc": 0.8})
    return backend, version, len(features)


def test_habitat_suitability_asset_maps_the_deployed_model_over_the_site(tmp_path, monkeypatch):
    import dagster as dg

    from biodiv_dagster.habitat import habitat_suitability
    from biodiv_dagster.launcher.local import LocalStepLauncher
    from biodiv_dagster.partitions import partition_key

    data_root = tmp_path / "data"
    backend, version, n_points = _deployed_model(tmp_path, data_root, threshold=0.3)
    resources = {
        "deployment_backend": backend,
        "step_launcher": LocalStepLauncher(data_root=str(data_root), storage_root=str(tmp_path / "storage")),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("site", ["yellowstone"])
        instance.add_dynamic_partitions("species", ["lynx-canadensis"])
        key = str(partition_key("yellowstone", "lynx-canadensis"))
        # Nothing deployed yet: a clear failure, not a KeyError.
        instance.report_runless_asset_event(
            dg.AssetMaterialization("batch_deployment", partition=key, metadata={"reason": "below the AUC floor"})
        )
        failed = dg.materialize(
            [habitat_suitability], instance=instance, partition_key=key, resources=resources, raise_on_error=False
        )
        assert not failed.success
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "batch_deployment",
                partition=key,
                metadata={"model_name": "lgbm-yellowstone-lynx-canadensis", "deployed_version": version},
            )
        )
        result = dg.materialize([habitat_suitability], instance=instance, partition_key=key, resources=resources)
        assert result.success
        [event] = result.asset_materializations_for_node("habitat_suitability")
        metadata = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    assert metadata["rows"] == n_points  # every point of the site, not only the 500 labelled
    assert metadata["threshold"] == 0.3 and metadata["model_version"] == version
    assert "data:image/png;base64," in metadata["map_image"]
    table = pd.read_parquet(metadata["table"])
    assert len(table) == n_points and table["probability"].between(0, 1).all()
    assert (table["predicted"] == (table["probability"] >= 0.3)).all()
    # A model saved without a covariate reference (before extrapolation flags): scored, no flags, a note why.
    assert "mess" not in table.columns and "extrapolated_share" not in metadata
    assert "without a covariate reference" in metadata["extrapolation_note"]


def _materialize_habitat(tmp_path, data_root, backend, version):
    import dagster as dg

    from biodiv_dagster.habitat import habitat_suitability
    from biodiv_dagster.launcher.local import LocalStepLauncher
    from biodiv_dagster.partitions import partition_key

    resources = {
        "deployment_backend": backend,
        "step_launcher": LocalStepLauncher(data_root=str(data_root), storage_root=str(tmp_path / "storage")),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("site", ["yellowstone"])
        instance.add_dynamic_partitions("species", ["lynx-canadensis"])
        key = str(partition_key("yellowstone", "lynx-canadensis"))
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "batch_deployment",
                partition=key,
                metadata={"model_name": "lgbm-yellowstone-lynx-canadensis", "deployed_version": version},
            )
        )
        result = dg.materialize(
            [habitat_suitability], instance=instance, partition_key=key, resources=resources, raise_on_error=False
        )
        if not result.success:
            [failure] = [e for e in result.all_events if e.is_step_failure]
            return None, failure.step_failure_data.user_failure_data.description
        from biodiv_dagster.training.runner import partition_summary

        [event] = result.asset_materializations_for_node("habitat_suitability")
        metadata = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
        # `biodiv run --json` reports the surface of the partition's latest map.
        summary = partition_summary(instance, key)
        assert summary["suitability_raster"] == metadata.get("suitability_raster")
        assert summary["extrapolated_share"] == metadata.get("extrapolated_share")
        assert summary["surface_extrapolated_share"] == metadata.get("surface_extrapolated_share")
        return metadata, None


def test_with_covariate_rasters_the_asset_maps_every_cell_and_tracks_the_true_surface(tmp_path):
    import rasterio

    from biodiv_core.data.datastore import truth_surface_file

    data_root = tmp_path / "data"
    backend, version, n_points = _deployed_model(tmp_path, data_root, threshold=0.3, raster_size=40)
    metadata, _ = _materialize_habitat(tmp_path, data_root, backend, version)
    assert metadata["rows"] == n_points and metadata["covariates_version"] == 1
    assert metadata["cells"] == metadata["valid_cells"] == 40 * 40
    assert metadata["map"] == metadata["suitability_map"] and metadata["suitability_map"].endswith(".png")
    assert "data:image/png;base64," in metadata["map_image"]
    with rasterio.open(metadata["suitability_raster"]) as ours:
        assert ours.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ours.descriptions == ("probability", "presence", "mess")
        probability, presence, mess = ours.read(1), ours.read(2), ours.read(3)
    with rasterio.open(truth_surface_file(data_root, "yellowstone", "Lynx canadensis")) as truth:
        pearson = np.corrcoef(probability.ravel(), truth.read(1).ravel())[0, 1]
    assert pearson >= 0.8, pearson
    assert (presence == (probability >= 0.3)).all()
    assert metadata["surface_share_present"] == pytest.approx(presence.mean())
    # The points are cells of these rasters: few cells lie outside the training conditions.
    assert metadata["surface_extrapolated_share"] == pytest.approx((mess < 0).mean())
    assert metadata["surface_extrapolated_share"] <= 0.2
    table = pd.read_parquet(metadata["table"])
    assert (table["extrapolated"] == (table["mess"] < 0)).all()
    assert metadata["extrapolated_share"] == pytest.approx(table["extrapolated"].mean())
    assert metadata["extrapolated_share"] <= 0.2


def test_a_broken_raster_folder_fails_the_asset_with_the_files_named(tmp_path):
    from biodiv_core.data.datastore import covariates_dir

    data_root = tmp_path / "data"
    backend, version, _ = _deployed_model(tmp_path, data_root, threshold=0.3, raster_size=12)
    (covariates_dir(data_root, "yellowstone") / "slope.tif").unlink()
    metadata, failure = _materialize_habitat(tmp_path, data_root, backend, version)
    assert metadata is None
    assert "lack ['slope']" in failure and "yellowstone-covariates/1" in failure and "\n" not in failure
