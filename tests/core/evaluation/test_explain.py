"""Explanations (issue 7): importance, SHAP, response curves that follow the known niche, plots."""

import json

import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from model_quality_data import PRECIPITATION_OPTIMUM, clustered_sdm, train_booster
from scipy.stats import spearmanr

from biodiv_core.errors import DataContractError
from biodiv_core.evaluation.explain import (
    explain_model,
    gain_importance,
    partial_dependence,
    plot_calibration,
    plot_habitat_map,
    shap_summary,
)
from biodiv_core.training.thresholds import calibration_table

PREDICTORS = ["temperature", "precipitation", "noise", "land_cover"]


@pytest.fixture(scope="module")
def fitted():
    # No cluster effect: presence follows the niche alone (rises with temperature, peaks in precipitation).
    frame, y, truth = clustered_sdm(n_clusters=60, per_cluster=40, residual=0.0, seed=4, scattered=600)
    X = frame[PREDICTORS]
    return X, y, train_booster(X, y, rounds=80), frame, truth


def test_importance_and_shap_rank_niche_covariates_above_noise(fitted):
    X, y, booster, _, _ = fitted
    importance = gain_importance(booster, X)
    assert list(importance.columns) == ["feature", "gain", "gain_share", "splits"]
    assert importance["gain_share"].sum() == pytest.approx(1.0)
    assert importance["feature"].iloc[0] in ("temperature", "precipitation")
    shap = shap_summary(booster, X)
    assert set(shap["feature"]) == set(PREDICTORS)
    assert set(shap["feature"].head(2)) == {"temperature", "precipitation"}  # the niche's two covariates
    assert shap.set_index("feature")["mean_abs_shap"]["noise"] < shap["mean_abs_shap"].iloc[0] / 3
    # Warmer points get positive contributions from temperature on average over presences.
    contributions = booster.predict(X, pred_contrib=True)
    assert contributions[y == 1, 0].mean() > contributions[y == 0, 0].mean()


def test_response_curves_follow_the_known_niche(fitted):
    X, _, booster, _, _ = fitted
    temperature = partial_dependence(booster, X, "temperature", grid_size=15)
    assert spearmanr(temperature["value"], temperature["probability"]).statistic > 0.9
    precipitation = partial_dependence(booster, X, "precipitation", grid_size=25)
    # Hump-shaped: the peak is inside the range, near the optimum (0.3 sd above the mean).
    peak = precipitation["value"].iloc[int(precipitation["probability"].argmax())]
    z_peak = (peak - X["precipitation"].mean()) / X["precipitation"].std()
    assert abs(z_peak - PRECIPITATION_OPTIMUM) < 0.7
    assert precipitation["probability"].max() - precipitation["probability"].iloc[[0, -1]].max() > 0.1
    cover = partial_dependence(booster, X, "land_cover").set_index("value")["probability"]
    assert cover["forest"] > cover["wetland"]


def test_partial_dependence_works_for_sklearn_models_and_rejects_unknown_features(fitted):
    X, y, _, _, _ = fitted
    model = LGBMClassifier(n_estimators=30, num_threads=1, verbose=-1).fit(X, y)
    curve = partial_dependence(model, X, "temperature", grid_size=5)
    assert len(curve) == 5 and curve["probability"].between(0, 1).all()
    assert gain_importance(model, X)["feature"].iloc[0] in ("temperature", "precipitation")
    with pytest.raises(DataContractError, match="'rain' is not a column"):
        partial_dependence(model, X, "rain")


def test_explain_model_writes_tables_and_images(fitted, tmp_path):
    X, _, booster, _, _ = fitted
    summary = explain_model(booster, X, tmp_path / "explain", n_top=2, sample_size=300)
    assert set(summary["top_features"]) == {"temperature", "precipitation"}
    for name in ("importance.png", "shap_summary.png", "response_curves.png"):
        data = (tmp_path / "explain" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    curves = pd.read_csv(tmp_path / "explain" / "response_curves.csv")
    assert set(curves["feature"]) == set(summary["top_features"])
    assert (
        json.loads((tmp_path / "explain" / "explanations.json").read_text())["top_features"] == summary["top_features"]
    )


def test_calibration_and_habitat_map_plots(fitted, tmp_path):
    X, y, booster, frame, _ = fitted
    p = booster.predict(X)
    path = plot_calibration(calibration_table(y, p), tmp_path / "calibration.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    table = frame[["decimallatitude", "decimallongitude"]].assign(probability=p)
    path = plot_habitat_map(table, tmp_path / "map.png")
    assert path.stat().st_size > 5000


def test_generated_data_top_features_include_the_true_niche(tmp_path):
    """On the project's generator the model's top SHAP features name covariates of the known niche."""
    from biodiv_core.data.datastore import read_table, species_file
    from biodiv_core.data.generate import generate_datastore

    species = "Lynx canadensis"
    # Points with their own values: on raster cells, points sharing a cell let any fine-grained layer
    # (elevation, slope) stand for the cell itself, which is not what this test is about.
    info = generate_datastore(tmp_path, sites=["yellowstone"], species=[species], rows=3000, seed=0, raster_size=0)
    niche = info["sites"]["yellowstone"]["species"][species]["niche"]
    features = read_table(info["sites"]["yellowstone"]["features"])
    gold = read_table(species_file(tmp_path, "yellowstone", species))
    data = features.merge(gold[["gbifid", "occurrencestatus"]], on="gbifid")
    y = (data["occurrencestatus"] == "PRESENT").to_numpy().astype(int)
    X = data.drop(columns=["gbifid", "decimallatitude", "decimallongitude", "occurrencestatus"])
    X["land_cover"] = X["land_cover"].astype("category")
    booster = train_booster(X, y, rounds=60)
    top = shap_summary(booster, X)["feature"].head(4).tolist()
    # Four niche covariates (three numeric + land cover); correlated layers may stand in for one of them.
    assert len(set(top) & set(niche)) >= 3, (top, niche)
