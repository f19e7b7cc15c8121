"""Bad input through the whole platform: the step entry point, `biodiv run` and a Dagster materialization.

Every bad-input case (tests/reliability_helpers.py) goes through the `prep` step's command line (exit 2, our
message, no traceback, nothing written). A representative subset also goes through `biodiv run` in process,
which is a real Dagster run of the train_models job on the test's instance: the run fails at prepared_data with
the message in the failure and its metadata, nothing downstream runs, no output folder, no MLflow run or model,
no registration. One case runs `biodiv run` as a real process (exit code 2, stdout empty, no traceback).
Running all 37 cases through Dagster costs ~8 s each on this loaded machine; the subset covers each prep stage
(columns, ids, empty files, join, classes per fold) and the step path covers every case (the real-process runs of
the round-2 cases are in test_reliability_cli_data.py).
"""

import subprocess
import sys

import dagster as dg
import pytest
from reliability_helpers import BAD_INPUT_IDS, BAD_INPUTS, PARTITION, SITE, SPECIES, bad_store, files_under

from azureml_steps import prep as prep_step
from biodiv_core import settings

DOWNSTREAM = ("best_parameters", "train_test_split", "scores", "deployable_model", "registered_model")
DAGSTER_SUBSET = [
    "gold_without_occurrencestatus",
    "duplicate_ids_in_features",
    "empty_gold_file",
    "fewer_rows_of_a_class_than_folds",
    "float_ids_past_2_53",
    "text_in_a_numeric_column",
]
TINY = ["--max-evals", "2", "--folds", "3", "--num-threads", "1"]


@pytest.fixture
def step_logging():
    """The step's log handler writes to this test's captured stderr: remove it before the capture closes."""
    import logging

    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_biodiv_step", False)]:
        root.removeHandler(handler)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=BAD_INPUT_IDS)
@pytest.mark.usefixtures("step_logging")
def test_every_bad_input_fails_the_prep_step_cleanly(case, tmp_path, capfd):
    fdir, sdir = bad_store(tmp_path / "data", case)
    output = tmp_path / "storage" / "prepared"
    argv = ["--features", str(fdir), "--species-dir", str(sdir), "--species", SPECIES, "--site", SITE]
    argv += ["--output", str(output)]
    if case.name == "fewer_rows_of_a_class_than_folds":
        argv += ["--min-rows-per-class", "3"]  # what prepared_data passes: its n_folds
    code = prep_step.cli(argv)
    err = capfd.readouterr().err
    assert code == 2, err
    assert case.fragment in err and "error: " in err
    assert "Traceback" not in err
    assert not (tmp_path / "storage").exists() or files_under(tmp_path / "storage") == []


@pytest.mark.usefixtures("step_logging")
def test_float_ids_past_2_32_keep_their_rows_through_the_prep_step(tmp_path, capfd):
    """Was: ids narrowed to float32 with the covariates, rounded onto other ids; the run "succeeded" (AUC 1.0)."""
    import numpy as np
    import pandas as pd
    from reliability_helpers import valid_tables, write_store

    features, gold = valid_tables()
    features["gbifID"] = (features["gbifID"] * 3 + 2**32).astype(float)  # written as 4294970296.0
    gold["gbifID"] = features["gbifID"].astype(np.int64)
    fdir, sdir = write_store(tmp_path / "data", features, gold)
    output = tmp_path / "prepared"
    argv = ["--features", str(fdir), "--species-dir", str(sdir), "--species", SPECIES, "--site", SITE]
    assert prep_step.cli([*argv, "--output", str(output)]) == 0, capfd.readouterr().err
    prepared = pd.read_parquet(output / "features.parquet")
    assert prepared["gbifid"].tolist() == gold["gbifID"].tolist()  # every id exact, each with its own row
    assert prepared["elevation"].tolist() == features["elevation"].astype(np.float32).tolist()


def _biodiv_run(data_root, capfd, species=SPECIES):
    from biodiv_dagster.cli import main

    code = main(["run", "--site", SITE, "--species", species, "--data-root", str(data_root), "--json", *TINY])
    return code, capfd.readouterr()


def _mlflow_runs_and_models():
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri())
    runs = [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]
    return runs, client.search_registered_models()


@pytest.mark.parametrize("name", DAGSTER_SUBSET)
def test_bad_input_through_biodiv_run_fails_at_prepared_data_and_leaves_nothing(name, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(tmp_path / "data"))  # cmd_run sets it; restore after the test
    monkeypatch.setenv("BIODIV_STEP_LOG_LEVEL", "WARNING")
    case = BAD_INPUTS[BAD_INPUT_IDS.index(name)]
    bad_store(tmp_path / "data", case)
    code, captured = _biodiv_run(tmp_path / "data", capfd)

    # The CLI: exit 2, the library's message after "error:", no traceback, no JSON on stdout.
    assert code == 2
    assert captured.out == ""
    assert "error: Training everglades x Cygnus buccinator failed in prepared_data" in captured.err
    assert case.fragment in captured.err
    assert "Traceback" not in captured.err

    # The Dagster run: failed at prepared_data with the message as description and metadata.
    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs()
    assert run.job_name == "train_models" and run.status == dg.DagsterRunStatus.FAILURE
    failures = [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_step_failure]
    assert [e.dagster_event.step_key for e in failures] == ["prepared_data"]
    user_failure = failures[0].dagster_event.step_failure_data.user_failure_data
    assert case.fragment in user_failure.description
    metadata = {key: getattr(value, "value", value) for key, value in user_failure.metadata.items()}
    assert case.fragment in metadata["message"] and metadata["error_type"] == "DataContractError"
    assert metadata["step"] == "prep" and metadata["correlation_id"] == run.tags["correlation_id"]

    # Nothing downstream ran or was recorded; no output folder; no MLflow run or model; no registration.
    events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
    started = [e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_START]
    assert started == ["prepared_data"]
    retried = [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == []  # a data error is not retried by the retry policy
    for asset in ("prepared_data", *DOWNSTREAM):
        assert not instance.fetch_materializations(dg.AssetKey(asset), limit=1).records, asset
    assert not settings.storage_root().exists() or files_under(settings.storage_root()) == []
    runs, models = _mlflow_runs_and_models()
    assert runs == [] and models == []
    assert not settings.endpoints_dir().exists() or list(settings.endpoints_dir().iterdir()) == []


def test_bad_input_through_the_biodiv_process(tmp_path):
    """The real console process: exit 2, the message on stderr, stdout empty, no traceback."""
    case = BAD_INPUTS[BAD_INPUT_IDS.index("one_class_after_join")]
    bad_store(tmp_path / "data", case)
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from biodiv_dagster.cli import main; sys.exit(main())"]
        + ["run", "--site", SITE, "--species", SPECIES, "--data-root", str(tmp_path / "data"), "--json", *TINY],
        capture_output=True,
        text=True,
        cwd=settings.REPO_ROOT,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert completed.stdout == ""
    assert case.fragment in completed.stderr and "Traceback" not in completed.stderr
    assert PARTITION.split("|")[1] in completed.stderr or SPECIES in completed.stderr
