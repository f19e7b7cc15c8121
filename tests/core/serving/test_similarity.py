"""Extrapolation flags: MESS against the training covariates, in the one scoring path and the saved model."""

import json
import shutil
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from biodiv_core.serving import mlflow_model, similarity
from biodiv_core.serving.batch_scoring import load_scorer, score_file
from biodiv_core.serving.pyfunc import load_folder
from biodiv_core.serving.scoring import ModelInputs, score
from biodiv_core.training.model import fit_model

NUMERIC = ["elevation", "precipitation", "temperature", "slope"]
PARAMS = {"objective": "binary", "learning_rate": 0.2, "num_leaves": 7, "num_boost_round": 20, "seed": 0}


def training_frame(rows=5000, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(NUMERIC))) * [300, 50, 5, 10] + [1500, 400, 8, 15], columns=NUMERIC)
    frame["land_cover"] = pd.Categorical(rng.choice(["forest", "grass", "wetland"], rows))
    target = (frame["elevation"] > 1500).astype(int) ^ (rng.random(rows) < 0.2)
    return frame, target.to_numpy()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    frame, target = training_frame()
    booster = fit_model(frame, target, PARAMS, num_threads=1)
    folder = mlflow_model.save_model(booster, tmp_path_factory.mktemp("model"), sample=frame, threshold=0.4)
    return folder, frame


def raw(frame):
    """As a CSV holds it: land cover as text, a gbifid."""
    return frame.astype({"land_cover": object}).assign(gbifid=np.arange(len(frame)))


def _mess(frame, reference_frame):
    inputs = ModelInputs([*NUMERIC, "land_cover"], {"land_cover": ["forest", "grass", "wetland"]})
    reference = similarity.build_reference(reference_frame, inputs.features, inputs.categories)
    return score(raw(frame), lambda x: np.full(len(x), 0.5), replace(inputs, reference=reference))


def test_mess_flags_points_far_outside_the_training_range_and_few_inside():
    train, _ = training_frame()
    inside, _ = training_frame(rows=2000, seed=1)  # new points from the same conditions
    scored = _mess(inside, train)
    share_inside = scored["extrapolated"].mean()
    # Far outside: one covariate of each point (drawn at random) moved by 3 training ranges, up or down.
    rng = np.random.default_rng(2)
    shifted = inside.copy()
    spans = train[NUMERIC].max() - train[NUMERIC].min()
    which = rng.integers(0, len(NUMERIC), len(shifted))
    for i, name in enumerate(NUMERIC):
        moved = which == i
        shifted.loc[moved, name] += rng.choice([-3, 3], moved.sum()) * spans[name]
    share_outside = _mess(shifted, train)["extrapolated"].mean()
    print(f"extrapolated: {share_inside:.3f} of in-range points, {share_outside:.3f} of shifted ones")
    assert share_outside >= 0.9 and share_inside <= 0.2
    assert scored["mess"].between(-100, 100).all()


def test_similarity_follows_elith_et_al():
    reference = np.linspace(0.0, 100.0, 101)  # min 0, max 100, median 50
    values = np.array([50.0, 0.0, 100.0, 25.0, -50.0, 150.0, np.nan])
    got = similarity.numeric_similarity(values, reference)
    # median 100, the ends 0, a quarter in 2f = 50, half a range below / above -50, missing NaN.
    np.testing.assert_allclose(got, [100.0, 0.0, 0.0, 50.0, -50.0, -50.0, np.nan])
    # A training column with one value: that value is on the edge, anything else outside.
    np.testing.assert_allclose(similarity.numeric_similarity(np.array([3.0, 5.0]), np.array([3.0])), [0.0, -200.0])


def test_unseen_level_is_extrapolation_and_missing_values_constrain_nothing():
    train, _ = training_frame()
    points = train.head(6).copy().astype({"land_cover": object})
    points[NUMERIC] = train[NUMERIC].median().to_numpy()  # in the middle of every range
    points.loc[points.index[0], "land_cover"] = "glacier"  # never seen in training
    points.loc[points.index[1], "land_cover"] = None
    points.loc[points.index[2], NUMERIC] = np.nan
    scored = _mess(points, train)
    assert scored["extrapolated"].tolist() == [True, False, False, False, False, False]
    assert scored["mess"].iloc[0] == similarity.UNSEEN_LEVEL_SIMILARITY
    assert scored["mess"].iloc[1] > 90 and scored["mess"].iloc[2] == 100.0  # seen level, numbers missing
    # A level the model knows but no training row had (an unused category) is extrapolation too.
    scored = _mess(points.assign(land_cover="wetland"), train[train["land_cover"] != "wetland"])
    assert scored["extrapolated"].all()


def test_reference_stays_small_whatever_the_training_size(tmp_path):
    train, _ = training_frame(rows=200_000)
    reference = similarity.build_reference(train, [*NUMERIC, "land_cover"], {"land_cover"})
    assert all(len(v) == similarity.REFERENCE_POINTS for v in reference.numeric.values())
    assert reference.numeric["elevation"][0] == train["elevation"].min()
    assert reference.numeric["elevation"][-1] == train["elevation"].max()
    size = similarity.write_reference(reference, tmp_path).stat().st_size
    print(f"reference of 200,000 rows x {len(NUMERIC)} numeric covariates: {size} bytes")
    assert size < 6000 * len(NUMERIC)
    again = similarity.read_reference(tmp_path)
    assert again.levels == {"land_cover": ["forest", "grass", "wetland"]} and again.rows == 200_000
    np.testing.assert_array_equal(again.numeric["slope"], reference.numeric["slope"])


def test_pyfunc_of_the_saved_model_returns_mess_columns(saved):
    folder, frame = saved
    meta = yaml.safe_load((folder / "MLmodel").read_text())["metadata"]
    assert meta["covariate_reference"] == similarity.REFERENCE_FILE and (folder / similarity.REFERENCE_FILE).is_file()
    points = raw(frame.head(200))
    points.loc[:9, "elevation"] = 10_000.0  # far above any training elevation
    out = mlflow.pyfunc.load_model(str(folder)).predict(points)
    assert list(out.columns) == ["gbifid", "probability", "presence", "mess", "extrapolated"]
    assert out["extrapolated"].dtype == bool and out["extrapolated"].head(10).all()
    assert out["extrapolated"].iloc[10:].mean() <= 0.2
    assert (out["extrapolated"] == (out["mess"] < 0)).all()
    # The same through batch scoring (the local endpoint's path) and the direct loader.
    model, inputs = load_scorer(str(folder))
    np.testing.assert_allclose(score(points, model, inputs)["mess"], out["mess"])
    np.testing.assert_allclose(load_folder(folder).predict(points)["mess"], out["mess"])


def test_batch_score_file_has_the_columns_and_the_share(saved, tmp_path):
    folder, frame = saved
    points = raw(frame.head(100))
    points.loc[:24, "temperature"] = -80.0
    points.to_csv(tmp_path / "in.csv", index=False)
    summary = score_file(str(folder), tmp_path / "in.csv", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["gbifid", "probability", "predicted_class", "mess", "extrapolated"]
    assert out["extrapolated"].head(25).all()
    assert summary["extrapolated"] == int(out["extrapolated"].sum()) >= 25
    assert summary["extrapolated_share"] == pytest.approx(out["extrapolated"].mean())


def test_a_model_saved_before_mess_still_loads_and_scores_without_the_columns(saved, tmp_path):
    folder, frame = saved
    old = tmp_path / "old_model"
    shutil.copytree(folder, old)
    (old / similarity.REFERENCE_FILE).unlink()
    mlmodel = yaml.safe_load((old / "MLmodel").read_text())
    del mlmodel["metadata"]["covariate_reference"]
    (old / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    points = raw(frame.head(50))
    loaded = mlflow.pyfunc.load_model(str(old))
    out = loaded.predict(points)
    assert list(out.columns) == ["gbifid", "probability", "presence"]
    assert out.attrs["extrapolation"] == similarity.NO_REFERENCE_NOTE
    assert loaded.get_raw_model().extrapolation == similarity.NO_REFERENCE_NOTE
    new = mlflow.pyfunc.load_model(str(folder)).predict(points)
    np.testing.assert_allclose(out["probability"], new["probability"])
    points.to_csv(tmp_path / "in.csv", index=False)
    summary = score_file(str(old), tmp_path / "in.csv", tmp_path / "out.csv")
    assert summary["extrapolated"] is None and summary["extrapolation_note"] == similarity.NO_REFERENCE_NOTE
    assert json.loads(json.dumps(summary))["rows"] == 50
    assert list(pd.read_csv(tmp_path / "out.csv").columns) == ["gbifid", "probability", "predicted_class"]
