"""Step entry points as plain subprocesses (no Dagster): the four steps in sequence on generated data."""

import json
import subprocess
import sys

import pytest

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore

SPECIES = "Cygnus buccinator"


def run_step(step, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", f"azureml_steps.{step}", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=settings.REPO_ROOT,
        env=env,
        timeout=300,
    )


def reports(completed):
    """The `biodiv-report {json}` lines a step prints per output when no orchestrator listens."""
    lines = [line for line in completed.stdout.splitlines() if line.startswith("biodiv-report ")]
    return {r["asset_key"]: r["metadata"] for r in (json.loads(line.split(" ", 1)[1]) for line in lines)}


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=[SPECIES], rows=500, seed=3)
    return root


def test_steps_in_sequence(data, tmp_path):
    out = tmp_path / "out"
    cid = "test-correlation-7"
    prep = run_step(
        "prep",
        "--features", data / "everglades-training-features" / "1",
        "--species-dir", data / "everglades-training-species" / "1",
        "--species", SPECIES, "--site", "everglades",
        "--output", out / "prepared", "--correlation-id", cid,
    )  # fmt: skip
    assert prep.returncode == 0, prep.stderr
    prepared = reports(prep)["prepared_data"]
    assert prepared["rows"] == prepared["n_present"] + prepared["n_absent"] == 400
    assert prepared["n_features"] == len(prepared["features"]) > 0
    assert prepared["path"] == str(out / "prepared") and prepared["correlation_id"] == cid
    assert prepared["species"] == SPECIES and prepared["site"] == "everglades"
    # Every log line carries the correlation id.
    log_lines = [line for line in prep.stderr.splitlines() if " INFO " in line]
    assert log_lines and all(line.count(f"correlation_id={cid}") == 1 for line in log_lines), log_lines

    train = run_step(
        "train",
        "--site", "everglades", "--species", SPECIES,
        "--prepared", out / "prepared", "--params-config", settings.config_dir() / "lgbm_params.yml",
        "--best-parameters", out / "best", "--split", out / "split", "--n-folds", 3, "--max-evals", 3, "--seed", 5,
        "--cv-strategy", "random", "--block-size-km", 20, "--num-threads", 1, "--correlation-id", cid,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    trained = reports(train)
    assert set(trained) == {"best_parameters", "train_test_split"}
    best = trained["best_parameters"]
    assert best["n_trials"] == 3 and 0.5 < best["best_cv_auc"] <= 1.0
    assert best["best_parameters"]["num_leaves"] >= 8 and best["mlflow_run_id"]
    # One report: the numbers, the tuning-history plot inlined, the best parameters.
    assert "Tuning history" in best["report"] and "data:image/png;base64," in best["report"]
    assert (out / "best" / "tuning_history.png").is_file()
    assert all(v == float(f"{v:.4g}") for v in (best["best_cv_auc"], best["threshold"]))  # 4 significant digits
    split = trained["train_test_split"]
    assert split["train_rows"] + split["test_rows"] == prepared["rows"]

    score = run_step(
        "score", "--site", "everglades", "--species", SPECIES,
        "--best-parameters", out / "best", "--split", out / "split", "--output", out / "scores",
        "--num-threads", 1, "--correlation-id", cid,
    )  # fmt: skip
    assert score.returncode == 0, score.stderr
    scored = reports(score)["scores"]
    assert 0.5 < scored["roc_auc"] <= 1.0 and 0.0 < scored["accuracy"] <= 1.0
    # One report per partition: numbers with the cut-off each uses, the per-class table, the plots inlined;
    # no image path or inline-image entries beside it, no metrics JSON doubling the table.
    report = scored["report"]
    threshold = scored["threshold"]
    assert f"Cut-off **{threshold}**" in report and "| accuracy |" in report and "PRESENT" in report
    assert report.count("data:image/png;base64,") >= 4 and "ROC curve" in report
    assert not {"metrics", "metrics_json", "confusion_matrix", "confusion_matrix_image"} & set(scored)
    assert (out / "scores" / "roc_curve.png").is_file()
    # Accuracy and the confusion matrix use the deployed model's threshold, not 0.5.
    metrics = json.loads((out / "scores" / "metrics.json").read_text())
    cv_threshold = json.loads((out / "best" / "cv_quality.json").read_text())["threshold"]
    assert metrics["threshold"] == cv_threshold != 0.5
    assert round(metrics["accuracy"], 4) == round(scored["accuracy"], 4)

    deploy = run_step(
        "train_to_deploy", "--site", "everglades", "--species", SPECIES,
        "--prepared", out / "prepared", "--best-parameters", out / "best",
        "--output", out / "model", "--num-threads", 1, "--correlation-id", cid,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stderr
    model = reports(deploy)["deployable_model"]
    assert model["model_path"] == str(out / "model" / "lgbm_gbif_model")
    assert {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt"} <= set(model["model_files"])
    assert model["model_uri"].startswith("file://") and model["mlflow_run_id"]


def test_bad_input_exits_2_with_the_message_and_no_traceback(data, tmp_path):
    completed = run_step(
        "prep",
        "--features", data / "everglades-training-features" / "1",
        "--species-dir", data / "everglades-training-species" / "1",
        "--species", "Lynx canadensis", "--site", "everglades", "--output", tmp_path / "out",
    )  # fmt: skip
    assert completed.returncode == 2
    assert "error: No gold data for species 'Lynx canadensis'" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


def test_error_file_for_the_launcher(data, tmp_path):
    error_file = tmp_path / "error.json"
    env = {**__import__("os").environ, "BIODIV_STEP_ERROR_FILE": str(error_file)}
    completed = run_step(
        "prep", "--features", tmp_path / "missing", "--species-dir", tmp_path / "missing",
        "--species", SPECIES, "--site", "everglades", "--output", tmp_path / "out", env=env,
    )  # fmt: skip
    assert completed.returncode == 2
    error = json.loads(error_file.read_text())
    assert error["user_error"] is True and "missing" in error["message"]


def test_argparse_errors_name_the_option():
    completed = run_step("train", "--prepared", "x")
    assert completed.returncode == 2 and "--params-config" in completed.stderr


def test_a_bad_argument_value_is_one_line_exit_2(tmp_path):
    completed = run_step(
        "train", "--site", "everglades", "--species", SPECIES, "--prepared", "x", "--params-config", "y",
        "--best-parameters", tmp_path / "b", "--split", tmp_path / "s", "--n-folds", 5, "--max-evals", 0,
        "--seed", 1, "--cv-strategy", "random", "--block-size-km", 20,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: max_evals=0: hyperopt TPE evaluations per partition must be >= 1; use e.g. 20."
    ]


@pytest.mark.parametrize("step", ["prep", "train", "score", "train_to_deploy"])
def test_step_modules_import_light(step):
    # Cold start matters on AzureML: heavy libraries load only when main() runs.
    code = (
        f"import sys, json, azureml_steps.{step}\n"
        "print(json.dumps([m for m in ('dagster', 'pandas', 'lightgbm', 'mlflow', 'sklearn', 'matplotlib') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
