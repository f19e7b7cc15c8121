"""The deployable model against the truth: held-out AUC close to the Bayes-optimal AUC (issue 2, done-means).

The generator knows each point's presence probability. Points left out of the gold data are never seen by
training; labels drawn for them from the true probability form a held-out set on which the model's AUC and
the Bayes-optimal AUC (ranking by the true probability itself) are measured on the same labels.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from stage_helpers import run_prep, run_train, run_train_to_deploy

from biodiv_core import settings
from biodiv_core.data import datastore
from biodiv_core.data.generate import generate_datastore
from biodiv_core.naming import features_asset_name, species_asset_name, species_stem, truth_asset_name
from biodiv_core.serving.batch_scoring import load_model
from biodiv_core.stages.common import read_best_parameters
from biodiv_core.training.model import predict_proba

SITE, SPECIES = "yellowstone", "Lynx canadensis"


def _train(tmp_path, seed=0):
    root = tmp_path / "data"
    generate_datastore(root, sites=[SITE], species=[SPECIES], rows=9000, gold_rows=4000, seed=11)
    out = tmp_path / f"out-{seed}"
    run_prep(root / features_asset_name(SITE) / "1", root / species_asset_name(SITE) / "1", SPECIES, out / "prepared")
    run_train(
        out / "prepared",
        settings.config_dir() / "lgbm_params.yml",
        out / "best",
        out / "split",
        n_folds=3,
        max_evals=12,
        seed=seed,
    )
    run_train_to_deploy(out / "prepared", out / "best", out / "model")
    return root, out


def test_deployable_model_auc_close_to_bayes_optimal_and_deterministic(tmp_path):
    root, out = _train(tmp_path)
    gold = datastore.read_table(datastore.species_file(root, SITE, SPECIES), columns=["gbifid"])
    truth = pd.read_csv(root / truth_asset_name(SITE) / "1" / f"{species_stem(SPECIES)}_truth.csv")
    features = datastore.read_table(root / features_asset_name(SITE) / "1")
    held_out = features[~features["gbifid"].isin(gold["gbifid"])].merge(truth, on="gbifid")
    assert len(held_out) == 5000

    labels = np.random.default_rng(5).random(len(held_out)) < held_out["probability"].to_numpy()
    model = load_model(str(out / "model" / "lgbm_gbif_model"))
    predicted = predict_proba(model, held_out)
    model_auc = roc_auc_score(labels, predicted)
    bayes_auc = roc_auc_score(labels, held_out["probability"])
    assert 0.7 < bayes_auc < 0.95
    print(f"held-out AUC {model_auc:.4f} vs Bayes-optimal {bayes_auc:.4f}")
    assert model_auc > bayes_auc - 0.03, (model_auc, bayes_auc)

    # Same inputs and seed -> same best parameters.
    _, again = _train(tmp_path / "again")
    assert read_best_parameters(again / "best") == read_best_parameters(out / "best")
