import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification
from stage_helpers import run_score, run_train, run_train_to_deploy

from biodiv_core.errors import ConfigError, DataContractError

SITE = "Site A"
CONFIG = {
    "initial": {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_child_samples": 10,
        "max_bin": 63,
        "num_boost_round": 60,
    },
    "search_space": {
        "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.3},
        "num_leaves": {"distribution": "quniform", "low": 4, "high": 31, "q": 1},
    },
}


@pytest.fixture
def prepared(tmp_path):
    """A prep output folder as run_prep writes it (gbifid-keyed parquet files + summary.json)."""
    x, y = make_classification(n_samples=800, n_features=6, n_informative=3, random_state=2)
    ids = np.arange(1000, 1800)
    features = pd.DataFrame(x, columns=[f"bio{i}" for i in range(6)]).astype("float32")
    features["land_cover"] = pd.Categorical(np.where(x[:, 0] > 0, "forest", "grass"))
    folder = tmp_path / "prepared"
    folder.mkdir()
    features.insert(0, "gbifid", ids)
    features.to_parquet(folder / "features.parquet", index=False)
    pd.DataFrame({"gbifid": ids, "target": y.astype("int8")}).to_parquet(folder / "targets.parquet", index=False)
    pd.DataFrame({"gbifid": ids, "decimallatitude": 1.0, "decimallongitude": 2.0}).to_parquet(
        folder / "coords.parquet", index=False
    )
    (folder / "summary.json").write_text(json.dumps({"site": "Site A", "species": "Cygnus buccinator", "rows": 800}))
    return folder


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "lgbm_params.yml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_stages_chain(tmp_path, prepared, params_file):
    best, split, scores, deploy = (tmp_path / n for n in ("best", "split", "scores", "deploy"))
    train = run_train(prepared, params_file, best, split, site=SITE, n_folds=3, max_evals=3, correlation_id="corr-42")
    assert json.loads(json.dumps(train)) == train
    assert (train["train_rows"], train["test_rows"]) == (640, 160)
    assert len(train["trials"]) == 3 and train["species"] == "Cygnus buccinator"
    saved = json.loads((best / "best_parameters.json").read_text())
    assert saved == train["best_parameters"] and saved["num_boost_round"] >= 1
    assert len(json.loads((best / "trials.json").read_text())) == 3
    x_train = pd.read_parquet(split / "x_train.parquet")
    assert "gbifid" in x_train.columns and "decimallatitude" not in x_train.columns
    assert isinstance(x_train["land_cover"].dtype, pd.CategoricalDtype)

    score = run_score(best, split, scores, site=SITE, correlation_id="corr-42")
    assert json.loads(json.dumps(score)) == score
    assert score["roc_auc"] > 0.85
    assert json.loads((scores / "metrics.json").read_text())["roc_auc"] == score["roc_auc"]
    quality = {"quality.json", "calibration_curve.png", "explanations"}
    seed = {"metrics.json", "confusion_matrix.png", "classification_report.png", "roc_curve.png"}
    assert {p.name for p in scores.iterdir()} == seed | quality
    # With two threads (a lone `biodiv run`) the figures are drawn by forked workers: the same files, all whole.
    two = run_score(best, split, tmp_path / "scores-2", site=SITE, correlation_id="corr-2", num_threads=2)
    assert two["roc_auc"] == pytest.approx(score["roc_auc"], abs=0.01)
    written = sorted(p.relative_to(tmp_path / "scores-2") for p in (tmp_path / "scores-2").rglob("*.png"))
    assert written == sorted(p.relative_to(scores) for p in scores.rglob("*.png")) and len(written) == 7
    assert all((tmp_path / "scores-2" / p).read_bytes()[:4] == b"\x89PNG" for p in written)

    deployed = run_train_to_deploy(prepared, best, deploy, site=SITE, correlation_id="corr-42")
    metadata = json.loads((deploy / "model_metadata.json").read_text())
    assert metadata["run_id"] == deployed["mlflow_run_id"]
    assert metadata["run_uri"] == f"runs:/{metadata['run_id']}/lgbm_gbif_model" == deployed["mlflow_run_uri"]
    assert deployed["registry_name"] == "lgbm-site-a-cygnus-buccinator"
    features = pd.read_parquet(prepared / "features.parquet").head(20)
    raw = features.astype({c: object for c in features.select_dtypes("category").columns})  # text, as in a CSV
    predicted = mlflow.pyfunc.load_model(deployed["model_uri"]).predict(raw)
    assert list(predicted.columns) == ["gbifid", "probability", "presence", "mess", "extrapolated"]
    assert predicted["gbifid"].tolist() == raw["gbifid"].tolist()
    probabilities = predicted["probability"].to_numpy()
    assert probabilities.shape == (20,) and ((probabilities > 0) & (probabilities < 1)).all()

    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.correlation_id = 'corr-42'")
    assert sorted(runs["tags.step"]) == ["score", "train", "train_to_deploy"]
    assert set(runs["status"]) == {"FINISHED"}
    artifacts = mlflow.MlflowClient().list_artifacts(deployed["mlflow_run_id"], "lgbm_gbif_model")
    assert any(a.path.endswith("MLmodel") for a in artifacts)
    # Every MLflow run of the partition names it (the score run was once tagged site=None species=None).
    assert set(runs["tags.site"]) == {SITE} and set(runs["tags.species"]) == {"Cygnus buccinator"}
    assert set(runs["tags.partition"]) == {"site-a|cygnus-buccinator"}


def test_bad_config_fails_before_writing_anything(tmp_path, prepared):
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({**CONFIG, "search_space": {"num_leaves": {"distribution": "gauss"}}}))
    with pytest.raises(ConfigError, match="unknown distribution"):
        run_train(prepared, bad, tmp_path / "best", tmp_path / "split", n_folds=3, max_evals=2, correlation_id="c")
    assert not (tmp_path / "best").exists() and not (tmp_path / "split").exists()


def test_failed_tuning_leaves_no_outputs_and_marks_the_run_failed(tmp_path, prepared, params_file):
    with pytest.raises(DataContractError, match="n_folds"):  # 500 folds: more than either class has rows
        run_train(
            prepared, params_file, tmp_path / "best", tmp_path / "split", n_folds=500, max_evals=2,
            correlation_id="corr-fail",
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lgbm_params.yml", "prepared"]
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.correlation_id = 'corr-fail'")
    assert list(runs["status"]) == ["FAILED"]
