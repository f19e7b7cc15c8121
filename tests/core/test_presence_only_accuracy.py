"""A presence-only species against the truth: trained on presences and background points, how well does the
model rank the site's points by their true presence probability?

The generator keeps the PRESENT rows of the usual draw (labels drawn from the true probability) and drops the
ABSENT ones. The model's AUC "against the truth" is the expected AUC over labels drawn from the true
probabilities at every point of the site: each point counts as a presence with weight p and as an absence with
weight 1 - p. Ranking by p itself gives the Bayes-optimal value.

Measured on this test's data (6,000 points taking the values of the 100 x 100 sample raster cells, seed 11):
background from feature rows, AUC vs truth 0.833 against Bayes-optimal 0.849, Pearson with the true
probability 0.956; on points without rasters (raster_size 0, seeds 11, 3, 7, 19) 0.835 / 0.813 / 0.826 / 0.831
against 0.847 / 0.830 / 0.842 / 0.843 (gap 0.012 to 0.017), Pearson 0.946 to 0.964. The bounds below leave about
twice the largest gap. Background from raster cells on the same data: 0.710, because the sample points cluster
where observers go and uniform background cells teach the model that bias too (docs/model-quality.md).
"""

import numpy as np
import pandas as pd
from scipy.stats import pearsonr
from sklearn.metrics import roc_auc_score
from stage_helpers import run_prep, run_train, run_train_to_deploy

from biodiv_core import settings
from biodiv_core.data import datastore as ds
from biodiv_core.data.generate import generate_datastore
from biodiv_core.serving.batch_scoring import load_model
from biodiv_core.training.model import predict_proba

SITE, SPECIES = "yellowstone", "Lynx canadensis"


def auc_against_truth(score: np.ndarray, probability: np.ndarray) -> float:
    """Expected ROC-AUC of ``score`` over labels drawn from ``probability``."""
    labels = np.r_[np.ones(len(score)), np.zeros(len(score))]
    return float(roc_auc_score(labels, np.r_[score, score], sample_weight=np.r_[probability, 1 - probability]))


def _train(root, out, **prep_values):
    summary = run_prep(ds.features_dir(root, SITE), ds.species_file(root, SITE, SPECIES).parent, SPECIES,
                       out / "prepared", site=SITE, **prep_values)  # fmt: skip
    config = settings.config_dir() / "lgbm_params.yml"
    run_train(out / "prepared", config, out / "best", out / "split", site=SITE, species=SPECIES, n_folds=3, max_evals=8)
    run_train_to_deploy(out / "prepared", out / "best", out / "model", site=SITE, species=SPECIES)
    return summary, load_model(str(out / "model" / "lgbm_gbif_model"))


def test_presence_only_species_trains_with_background_and_ranks_like_the_truth(tmp_path):
    root = tmp_path / "data"
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=6000, seed=11, presence_only=[SPECIES])
    points = ds.read_table(ds.features_dir(root, SITE)).merge(pd.read_csv(ds.truth_file(root, SITE, SPECIES)))
    truth = points["probability"].to_numpy()
    bayes = auc_against_truth(truth, truth)

    # The default with rasters and thousands of feature rows: target-group background from the feature rows.
    covariates = str(ds.covariates_dir(root, SITE))
    summary, model = _train(root, tmp_path / "rows", covariates=covariates)
    assert summary["background_source"] == "feature_rows" and not summary["covariates_used"]
    assert summary["n_absent"] == summary["background_points"] == 6000 - summary["n_present"]
    predicted = predict_proba(model, points)
    auc, pearson = auc_against_truth(predicted, truth), pearsonr(predicted, truth)[0]
    print(
        f"feature-row background (default): AUC vs truth {auc:.4f} (Bayes-optimal {bayes:.4f}), Pearson {pearson:.3f}"
    )
    assert auc > bayes - 0.035, (auc, bayes)
    assert pearson > 0.9, pearson

    # Raster cells on the same biased points: it trains and ranks better than chance, but clearly worse, which is
    # why auto prefers the feature rows.
    summary, model = _train(root, tmp_path / "cells", covariates=covariates, background_from="raster_cells")
    assert summary["background_source"] == "raster_cells" and summary["background_points"] == 10_000
    cells_auc = auc_against_truth(predict_proba(model, points), truth)
    print(f"raster-cell background: AUC vs truth {cells_auc:.4f} (Bayes-optimal {bayes:.4f})")
    assert 0.6 < cells_auc < auc - 0.05, (cells_auc, auc)
