"""Crash safety and retries: killed steps leave nothing a reader can see, runs end FAILED, transient faults retry.

Faults are injected into the real step processes with a ``sitecustomize`` module on PYTHONPATH (written by
the test, active only when ``BIODIV_TEST_FAULT`` is set), so the code under test is unchanged:

- ``hang_before_rename``: the step has written every file of its output into the hidden temp folder and
  blocks just before the rename that publishes it (the worst moment to die);
- ``kill_after_mlflow_start``: the step SIGKILLs itself right after starting its MLflow run (once);
- ``fail_after_output``: the step's output folder is complete, then reporting it raises OSError (once);
- ``hang_after_mlflow_start``: the step sleeps inside its MLflow run (to be terminated from outside).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
from reliability_helpers import PARTITION, SITE, SPECIES, valid_tables, write_store

from biodiv_core import settings
from biodiv_dagster.instance import get_instance
from biodiv_dagster.launcher.local import LocalStepLauncher
from biodiv_dagster.retry import STEP_RETRY_POLICY
from biodiv_dagster.training.assets import training_assets
from biodiv_dagster.training.config import training_run_config
from biodiv_dagster.training.sync import add_partition

TINY = dict(max_evals=2, n_folds=3, seed=3, num_threads=1)

SITECUSTOMIZE = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    FAULT = os.environ.get("BIODIV_TEST_FAULT", "")
    MARKER = Path(os.environ.get("BIODIV_TEST_FAULT_MARKER", "/nonexistent"))

    def _first_time():
        if MARKER.exists():
            return False
        MARKER.write_text(str(os.getpid()))
        return True

    if FAULT == "hang_before_rename":
        _replace = os.replace
        def _slow_replace(src, dst, *a, **k):
            if ".tmp-" in os.path.basename(str(src)):
                MARKER.write_text(str(src))
                time.sleep(600)
            return _replace(src, dst, *a, **k)
        os.replace = _slow_replace
    elif FAULT in ("kill_after_mlflow_start", "hang_after_mlflow_start"):
        import biodiv_core.tracking as tracking
        _note = tracking._note_run
        def _noted(run_id):
            _note(run_id)
            if FAULT == "hang_after_mlflow_start":
                MARKER.write_text(run_id)
                time.sleep(600)
            elif _first_time():
                os.kill(os.getpid(), signal.SIGKILL)
        tracking._note_run = _noted
    elif FAULT == "fail_after_output":
        import azureml_steps.reporting as reporting
        _report = reporting.report
        def _failing_report(asset_key, metadata):
            if _first_time():
                raise OSError("simulated transient I/O error")
            return _report(asset_key, metadata)
        reporting.report = _failing_report
    """
)


@pytest.fixture
def fault(tmp_path, monkeypatch):
    """Returns set_fault(name) -> marker path; the fault applies to every Python process started afterwards."""
    folder = tmp_path / "faults"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))

    def set_fault(name: str) -> Path:
        marker = tmp_path / f"fault-{name}.marker"
        monkeypatch.setenv("BIODIV_TEST_FAULT", name)
        monkeypatch.setenv("BIODIV_TEST_FAULT_MARKER", str(marker))
        return marker

    return set_fault


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_store(root, *valid_tables(120))
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    return root


def _wait_for(predicate, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _prep_command(store: Path, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "azureml_steps.prep",
        "--features", str(store / f"{SITE}-training-features" / "1"),
        "--species-dir", str(store / f"{SITE}-training-species" / "1"),
        "--species", SPECIES, "--site", SITE, "--output", str(output),
    ]  # fmt: skip


def test_step_killed_mid_write_leaves_no_visible_output_and_rerun_succeeds(store, tmp_path, fault):
    marker = fault("hang_before_rename")
    output = tmp_path / "storage" / "prepared_data" / "run-1"
    step = subprocess.Popen(_prep_command(store, output), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Not only exists(): write_text creates the file before its text is in it.
        _wait_for(lambda: marker.exists() and marker.read_text(), what="the step to finish writing its temp folder")
        temp = Path(marker.read_text())
        assert {"features.parquet", "targets.parquet", "summary.json"} <= set(os.listdir(temp))  # all written ...
        assert not output.exists()  # ... and still invisible
    finally:
        step.send_signal(signal.SIGKILL)
        step.wait(30)
    assert step.returncode == -signal.SIGKILL
    assert not output.exists() and _visible(output.parent) == []  # a reader listing the folder sees nothing

    os.environ.pop("BIODIV_TEST_FAULT")  # re-run the same partition/output without the fault
    rerun = subprocess.run(_prep_command(store, output), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert {"features.parquet", "targets.parquet", "summary.json"} <= set(os.listdir(output))


def _materialize(instance, selection, raise_on_error=False):
    return dg.materialize(
        training_assets,
        selection=selection,
        instance=instance,
        partition_key=PARTITION,
        resources={"step_launcher": LocalStepLauncher()},
        run_config=training_run_config(selection, **TINY),
        raise_on_error=raise_on_error,
    )


def _event_types(instance, run_id):
    return [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]


def _mlflow_runs(step):
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.step = '{step}'")


def test_killed_train_step_is_marked_failed_in_mlflow_and_retried(store, fault):
    """SIGKILL inside the MLflow run: the launcher marks the run FAILED, the retry policy re-runs the step."""
    instance = get_instance()
    add_partition(instance, SITE, SPECIES)
    assert _materialize(instance, ["prepared_data"]).success
    fault("kill_after_mlflow_start")
    result = _materialize(instance, ["best_parameters", "train_test_split"])
    assert result.success
    events = _event_types(instance, result.run_id)
    assert [e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY] == [
        "best_parameters_and_split"
    ]
    statuses = sorted(run.info.status for run in _mlflow_runs("train"))
    assert statuses == ["FAILED", "FINISHED"]  # the killed attempt is not left RUNNING
    assert len(instance.fetch_materializations(dg.AssetKey("best_parameters"), limit=10).records) == 1


def test_transient_failure_after_writing_output_is_retried_and_succeeds(store, fault):
    """The output folder was complete when the step failed: the retry replaces it instead of 'already exists'."""
    assert STEP_RETRY_POLICY.max_retries >= 1 and STEP_RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL
    instance = get_instance()
    add_partition(instance, SITE, SPECIES)
    marker = fault("fail_after_output")
    result = _materialize(instance, ["prepared_data"])
    assert marker.exists(), "the fault did not fire"
    assert result.success, [e.message for e in instance.all_logs(result.run_id) if e.level >= 40]
    events = _event_types(instance, result.run_id)
    assert sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in events) == 1
    [record] = instance.fetch_materializations(dg.AssetKey("prepared_data"), limit=10).records
    assert Path(record.asset_materialization.metadata["path"].value).joinpath("targets.parquet").is_file()


RUN_SCRIPT = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from biodiv_dagster.training.assets import training_assets
    from biodiv_dagster.training.config import training_run_config
    from biodiv_dagster.instance import get_instance
    from biodiv_dagster.launcher.local import LocalStepLauncher

    selection = ["prepared_data", "best_parameters", "train_test_split"]
    result = dg.materialize(
        training_assets, selection=selection, instance=get_instance(), partition_key=sys.argv[1],
        resources={"step_launcher": LocalStepLauncher()}, raise_on_error=False,
        run_config=training_run_config(selection, max_evals=2, n_folds=3, seed=3, num_threads=1),
    )
    sys.exit(0 if result.success else 3)
    """
)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_terminated_dagster_run_stops_its_step_and_fails_the_mlflow_run(store, fault, tmp_path):
    """SIGTERM to the process executing a run (what a run termination does to the run worker) mid-step."""
    instance = get_instance()
    add_partition(instance, SITE, SPECIES)
    marker = fault("hang_after_mlflow_start")
    script = tmp_path / "run_one.py"
    script.write_text(RUN_SCRIPT)
    log = (tmp_path / "run.log").open("w")  # a file, not a pipe: nobody reads the run's log while it runs
    runner = subprocess.Popen([sys.executable, str(script), PARTITION], stdout=log, stderr=log)
    try:
        _wait_for(marker.exists, timeout=120, what="the train step to start its MLflow run")
        [step_pid] = [pid for pid in _children(runner.pid) if "azureml_steps.train" in _cmdline(pid)]
        runner.send_signal(signal.SIGTERM)
        runner.wait(60)
    finally:
        if runner.poll() is None:
            runner.kill()
        log.close()
    assert runner.returncode != 0, (tmp_path / "run.log").read_text()[-3000:]
    assert not Path(f"/proc/{step_pid}").exists() or _is_zombie(step_pid), "the step process outlived its run"

    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.FAILURE
    events = _event_types(instance, run.run_id)
    assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]  # stopped, not retried
    [mlflow_run] = _mlflow_runs("train")
    assert mlflow_run.info.run_id == marker.read_text() and mlflow_run.info.status == "FAILED"
    best = settings.storage_root() / "best_parameters" / "everglades" / "cygnus-buccinator"
    assert _visible(best) == []
    assert not instance.fetch_materializations(dg.AssetKey("best_parameters"), limit=1).records


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
