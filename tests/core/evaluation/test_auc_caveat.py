"""The scores of a presence-only species say what their AUC means: prep's caveat reaches quality.json and the
score step's summary (the scores asset metadata), through the train step's cv_quality.json."""

import json

import pytest
from stage_helpers import run_prep, run_score, run_train

from biodiv_core import settings
from biodiv_core.data import datastore as ds
from biodiv_core.data.background import AUC_CAVEAT
from biodiv_core.data.generate import generate_datastore
from biodiv_core.evaluation.outputs import QUALITY_FILE
from biodiv_core.evaluation.quality import CV_QUALITY_FILE

SITE, PRESENCE_ONLY, WITH_ABSENCES = "yellowstone", "Lynx canadensis", "Cygnus buccinator"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    generate_datastore(
        root, sites=[SITE], species=[PRESENCE_ONLY, WITH_ABSENCES], rows=700, raster_size=0, seed=4,
        presence_only=[PRESENCE_ONLY],
    )  # fmt: skip
    return root


def _scores(root, species, out):
    gold_dir = ds.species_file(root, SITE, species).parent
    run_prep(ds.features_dir(root, SITE), gold_dir, species, out / "prepared", site=SITE, background_points=300)
    config = settings.config_dir() / "lgbm_params.yml"
    run_train(out / "prepared", config, out / "best", out / "split", site=SITE, species=species, n_folds=3, max_evals=2)
    return run_score(out / "best", out / "split", out / "scores", site=SITE, species=species)


@pytest.mark.parametrize(("species", "caveat"), [(PRESENCE_ONLY, AUC_CAVEAT), (WITH_ABSENCES, None)])
def test_scores_carry_the_auc_caveat_of_presence_only_species(store, tmp_path, species, caveat):
    summary = _scores(store, species, tmp_path)
    assert json.loads((tmp_path / "best" / CV_QUALITY_FILE).read_text())["auc_caveat"] == caveat
    assert json.loads((tmp_path / "scores" / QUALITY_FILE).read_text())["auc_caveat"] == caveat
    assert summary["auc_caveat"] == caveat and summary["roc_auc"] is not None
