"""Habitat-suitability maps (issue 7): every point of a site scored, parquet + PNG, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest
from model_quality_data import clustered_sdm, train_booster
from scipy.stats import spearmanr

from biodiv_core.errors import DataContractError
from biodiv_core.habitat import MAP_FILE, OUTPUT_FILE, run_habitat, suitability_table

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
