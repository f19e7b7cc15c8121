"""The deployed MLflow model scores raw features tables (issue 12, item 1): generated site data, train_to_deploy."""

import json
import logging
import os
import shutil
import subprocess
import sys

import mlflow
import mlflow.lightgbm
import numpy as np
import pandas as pd
import pytest
from deployment_helpers import mlflow_models_predict
from mlflow.models import Model

from biodiv_core.errors import DataContractError
from biodiv_core.serving import scoring
from biodiv_core.serving.pyfunc import load_folder

SITE, SPECIES, THRESHOLD = "yellowstone", "Lynx canadensis", 0.35
SCORED = ["gbifid", "probability", "presence", "mess", "extrapolated"]  # train_to_deploy saves the reference


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, mlflow_template_db):
    """Generated data -> run_prep -> run_train_to_deploy (fixed best parameters): the model folder and the CSV."""
    from stage_helpers import run_prep, run_train_to_deploy

    from biodiv_core.data.datastore import features_dir, species_dir
    from biodiv_core.data.generate import generate_datastore

    root = tmp_path_factory.mktemp("pyfunc")
    shutil.copyfile(mlflow_template_db, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIODIV_HOME", str(root / "home"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        # Points with their own values (no raster cells shared): every land-cover class is in training.
        info = generate_datastore(root / "data", sites=[SITE], species=[SPECIES], rows=900, seed=2, raster_size=0)
        run_prep(features_dir(root / "data", SITE), species_dir(root / "data", SITE), SPECIES, root / "prepared")
        best = root / "best"
        best.mkdir()
        params = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "num_boost_round": 40, "seed": 0}
        (best / "best_parameters.json").write_text(json.dumps(params))
        (best / "cv_quality.json").write_text(json.dumps({"threshold": THRESHOLD}))
        summary = run_train_to_deploy(root / "prepared", best, root / "deploy", site=SITE, species=SPECIES)
    return {
        "model": summary["model_path"],
        "csv": info["sites"][SITE]["feature_files"][0],
        "prepared": root / "prepared",
        "root": root,
    }


@pytest.fixture(scope="module")
def raw(deployed):
    return pd.read_csv(deployed["csv"])  # GBIF spelling (gbifID, decimalLatitude), land_cover as text


def expected_probability(deployed, raw):
    """What the project's one predict function gives on the same rows, land cover as a category."""
    from biodiv_core.training.model import predict_proba

    booster = mlflow.lightgbm.load_model(deployed["model"])
    frame = raw.rename(columns=str.lower).assign(land_cover=lambda f: f["land_cover"].astype("category"))
    return predict_proba(booster, frame)


def test_pyfunc_scores_the_raw_features_file(deployed, raw):
    assert "land_cover" in raw.columns and raw["land_cover"].dtype == object
    model = mlflow.pyfunc.load_model(deployed["model"])
    out = model.predict(raw)
    assert list(out.columns) == SCORED
    assert len(out) == len(raw) and out["gbifid"].tolist() == raw["gbifID"].tolist()  # every row, input order
    np.testing.assert_allclose(out["probability"], expected_probability(deployed, raw), rtol=1e-9)
    assert out["presence"].tolist() == (out["probability"] >= THRESHOLD).astype(int).tolist()
    assert 0 < out["presence"].sum() < len(out)
    # Shuffled rows come back in their own order; only the feature columns (no id) give no gbifid.
    shuffled = raw.sample(frac=1, random_state=0)
    again = model.predict(shuffled)
    assert again["gbifid"].tolist() == shuffled["gbifID"].tolist()
    features = Model.load(deployed["model"]).metadata["features"]
    bare = model.predict(raw[features])
    assert list(bare.columns) == SCORED[1:]
    np.testing.assert_allclose(bare["probability"], out["probability"])


def test_folder_signature_example_and_metadata(deployed, raw):
    folder = deployed["model"]
    assert os.path.basename(folder) == "lgbm_gbif_model"
    names = set(os.listdir(folder))
    assert {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt", "model.lgb", "code"} <= names
    assert os.path.isfile(os.path.join(folder, "code", "biodiv_core", "serving", "scoring.py"))
    meta = Model.load(folder)
    features = meta.metadata["features"]
    assert meta.metadata["threshold"] == THRESHOLD
    assert set(meta.metadata["categories"]) == {"land_cover"}
    assert set(meta.metadata["categories"]["land_cover"]) == set(raw["land_cover"].unique())
    inputs = meta.signature.inputs
    assert inputs.input_names() == ["gbifid", "gbifID", *features]
    types = {spec.name: spec.type.name for spec in inputs.inputs}
    assert types["land_cover"] == "string" and types["elevation"] == "double" and types["gbifid"] == "long"
    assert meta.signature.outputs.input_names() == SCORED
    example = meta.load_input_example(folder)
    assert list(example.columns) == ["gbifid", *features] and len(example) > 0
    predicted = mlflow.pyfunc.load_model(folder).predict(example)
    assert len(predicted) == len(example)
    # The lightgbm flavor still loads the bare booster.
    assert mlflow.lightgbm.load_model(folder).feature_name() == features


def test_column_case_and_extra_columns(deployed, raw):
    model = mlflow.pyfunc.load_model(deployed["model"])
    reference = model.predict(raw)
    extra = raw.assign(notes="seen from the road", observer_id=7)[["notes", *raw.columns, "observer_id"]]
    np.testing.assert_allclose(model.predict(extra)["probability"], reference["probability"])

    # The scoring function itself (batch-score, habitat maps, the pyfunc) matches names in any case.
    upper = raw.rename(columns=str.upper)
    direct = load_folder(deployed["model"]).predict(upper)
    assert direct["gbifid"].tolist() == raw["gbifID"].tolist()
    np.testing.assert_allclose(direct["probability"], reference["probability"])
    # Through mlflow.pyfunc, MLflow's signature enforcement keeps only the exact names: a clear error, not a crash.
    with pytest.raises(DataContractError, match=r"missing column\(s\).*LAND_COVER|missing column\(s\).*land_cover"):
        model.predict(upper)


def test_unseen_levels_become_missing_and_are_reported(deployed, raw, caplog):
    model = mlflow.pyfunc.load_model(deployed["model"])
    changed = raw.copy()
    changed.loc[changed.index[:3], "land_cover"] = "glacier"
    with caplog.at_level(logging.WARNING, logger="biodiv_core.serving.scoring"):
        out = model.predict(changed)
    assert out.attrs["unseen_levels"] == {"land_cover": 3}
    assert model.get_raw_model().unseen_levels == {"land_cover": 3}
    assert "3 value(s) of 'land_cover' not seen in training" in caplog.text and "glacier" in caplog.text
    # Scored as a missing land cover, the other rows untouched.
    missing = raw.copy()
    missing.loc[missing.index[:3], "land_cover"] = None
    np.testing.assert_allclose(out["probability"], model.predict(missing)["probability"])
    np.testing.assert_allclose(out["probability"][3:], model.predict(raw)["probability"][3:])


def test_bad_input_gets_clear_errors(deployed, raw):
    model = mlflow.pyfunc.load_model(deployed["model"])
    with pytest.raises(DataContractError, match=r"missing column\(s\) \['soil_moisture'\].*lgbm-yellowstone"):
        model.predict(raw.drop(columns=["soil_moisture"]))
    text = raw.astype({"elevation": object})
    text.loc[text.index[5], "elevation"] = "high"
    # MLflow's own type check comes first through the pyfunc and names the column ...
    with pytest.raises(mlflow.exceptions.MlflowException, match="elevation"):
        model.predict(text)
    # ... the scoring function names column and values.
    with pytest.raises(DataContractError, match=r"'elevation' must be numeric.*'high'"):
        load_folder(deployed["model"]).predict(text)
    empty = model.predict(raw.head(0))
    assert list(empty.columns) == SCORED and len(empty) == 0


def test_scoring_recodes_integral_levels_and_checks_the_threshold():
    inputs = scoring.ModelInputs(["x", "kind"], {"kind": ["1", "2"]}, 0.5)
    frame = pd.DataFrame({"X": ["0.5", "1"], "kind": [1.0, 3.0]})
    prepared, unseen = scoring.prepare(frame, inputs)
    assert prepared["x"].tolist() == [0.5, 1.0] and prepared["kind"].tolist()[0] == "1"
    assert pd.isna(prepared["kind"].tolist()[1]) and unseen == {"kind": 1}
    out = scoring.score(frame, lambda x: np.array([0.2, 0.7]), inputs, threshold=0.6)
    assert out["presence"].tolist() == [0, 1]
    with pytest.raises(Exception, match="threshold"):
        scoring.score(frame, lambda x: np.array([0.2, 0.7]), inputs, threshold=1.5)


def test_mlflow_models_predict_cli_on_the_csv(deployed, raw, tmp_path):
    """`mlflow models predict --env-manager local` in a fresh process: the copy of biodiv_core in the folder."""
    source = tmp_path / "raw.csv"
    raw.head(200).to_csv(source, index=False)
    result = mlflow_models_predict(deployed["model"], source, tmp_path)
    assert list(result.columns) == SCORED
    assert result["gbifid"].tolist() == raw["gbifID"].head(200).tolist()
    np.testing.assert_allclose(result["probability"], expected_probability(deployed, raw.head(200)), rtol=1e-6)


def test_the_folder_loads_with_its_own_code(deployed, tmp_path):
    """A fresh interpreter imports biodiv_core from the model folder (what an env without biodiv has)."""
    script = (
        "import sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]);"
        "out = m.predict(pd.read_csv(sys.argv[2]).head(5)); import biodiv_core; print(biodiv_core.__file__, len(out))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, deployed["model"], deployed["csv"]],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    location, rows = done.stdout.split()[-2:]
    assert location.startswith(os.path.join(deployed["model"], "code")) and rows == "5"


def test_loading_leaves_sys_path_as_it_was(deployed):
    """MLflow prepends the folder's code/ to sys.path; the loader takes it off, so later imports (and spawned
    children, which inherit sys.path) get the installed biodiv_core, not this model's copy."""
    before = list(sys.path)
    mlflow.pyfunc.load_model(deployed["model"])
    assert sys.path == before
    assert not any(entry.startswith(deployed["model"]) for entry in sys.path)
