"""`biodiv run` handed to a fork of the warm run server: same output, exit codes and errors as in its own process."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore

CLI = [sys.executable, "-c", "import sys; from biodiv_dagster.cli import main; sys.exit(main())"]
RUN = ["run", "--site", "everglades", "--species", "Cygnus buccinator", "--max-evals", "1", "--folds", "2"]


@pytest.fixture
def warm_env(tmp_path):
    """A data store, and a warm `run` server of this test's own (its own TMPDIR), up and listening."""
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=500, seed=4)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "BIODIV_DATA_ROOT": str(root)}
    Path(env["TMPDIR"]).mkdir()
    code = "from biodiv_dagster.launcher import warm; print(warm.start('run'))"
    path = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    socket_path = Path(path.stdout.strip())
    deadline = time.monotonic() + 300
    while not socket_path.exists():  # listening once its imports are done
        assert time.monotonic() < deadline, "the warm run server did not come up"
        time.sleep(0.2)
    yield env
    pid = int(socket_path.with_suffix(".pid").read_text())
    os.kill(pid, 15)


def _biodiv(env, *args):
    return subprocess.Popen(
        [*CLI, *args], env=env, cwd=settings.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_run_in_the_warm_fork_reports_its_model_and_is_not_this_process(warm_env):
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from biodiv_dagster.training.orphans import LAUNCHER_TAG

    client = _biodiv(warm_env, *RUN, "--json")
    out, err = client.communicate(timeout=600)
    assert client.returncode == 0, err[-3000:]
    [line] = out.strip().splitlines()  # still exactly one JSON object on stdout
    result = json.loads(line)
    assert result["registered_version"] == "1" and result["deployed"] is True
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(settings.dagster_home())))
    [train_run] = [r for r in instance.get_runs() if r.job_name == "train_models"]
    # Dagster ran in a fork of the server, not in the process the user started.
    launcher_pid = int(train_run.tags[LAUNCHER_TAG].split(":")[1])
    assert launcher_pid != client.pid


def test_a_user_error_in_the_warm_fork_is_one_line_and_exit_2(warm_env):
    client = _biodiv(warm_env, "run", "--site", "everglades", "--species", "Nobody here", "--max-evals", "1")
    out, err = client.communicate(timeout=300)
    assert client.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Nobody here" in lines[0], err
    assert "Traceback" not in err and out == ""


def test_a_run_in_its_own_process_ends_with_its_exit_code_after_its_atexit_work(tmp_path):
    """No warm server: the run goes in this process, which ends by os._exit after its atexit handlers (no
    interpreter teardown). One of those handlers starts the warm run server for the next run: it comes up."""
    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=500, seed=4)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "BIODIV_DATA_ROOT": str(root)}
    Path(env["TMPDIR"]).mkdir()
    code = "from biodiv_dagster.launcher import warm; print(warm.socket_path('run'))"
    socket_path = Path(subprocess.run([*CLI[:1], "-c", code], env=env, capture_output=True, text=True).stdout.strip())
    assert not socket_path.exists()
    try:
        client = _biodiv(env, *RUN, "--json")
        out, err = client.communicate(timeout=600)
        assert client.returncode == 0, err[-3000:]
        [line] = out.strip().splitlines()
        assert json.loads(line)["deployed"] is True
        deadline = time.monotonic() + 300
        while not socket_path.exists():  # the server the atexit handler started, listening once it has imported
            assert time.monotonic() < deadline, "no warm run server after the run's exit"
            time.sleep(0.2)
        bad = _biodiv(env, "run", "--site", "nowhere", "--species", "Cygnus buccinator")
        _, err = bad.communicate(timeout=300)
        assert bad.returncode == 2 and err.strip().startswith("error:") and "Traceback" not in err
    finally:
        for pid_file in Path(env["TMPDIR"]).glob("biodiv-warm-*/*.pid"):  # step and run servers: not left idling
            try:
                os.kill(int(pid_file.read_text()), 15)
            except (OSError, ValueError):
                pass


def _exit_with(monkeypatch, code: int, stdout=None, profiler=None) -> list[str]:
    """What `_exit_without_teardown` does, in order, with os._exit (and the interpreter's shutdown) recorded."""
    import atexit
    import threading

    from biodiv_dagster import cli

    calls: list[str] = []
    monkeypatch.setattr(threading, "_shutdown", lambda: calls.append("threads"))
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    monkeypatch.setattr(os, "_exit", lambda value: calls.append(f"exit {value}"))
    monkeypatch.setattr(sys, "getprofile", lambda: profiler)  # None: even under pytest-cov or a debugger
    monkeypatch.setattr(sys, "gettrace", lambda: None)
    if stdout is not None:
        monkeypatch.setattr(sys, "stdout", stdout)
    cli._exit_without_teardown(code)
    return calls


def test_the_fast_exit_joins_threads_runs_atexit_and_keeps_the_exit_code(monkeypatch):
    assert _exit_with(monkeypatch, 0) == ["threads", "atexit", "exit 0"]
    assert _exit_with(monkeypatch, 2) == ["threads", "atexit", "exit 2"]


def test_an_unflushable_stdout_turns_success_into_120_as_python_does(monkeypatch):
    class Full:
        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(28, "No space left on device")

    assert _exit_with(monkeypatch, 0, stdout=Full())[-1] == "exit 120"
    assert _exit_with(monkeypatch, 2, stdout=Full())[-1] == "exit 2"


def test_a_warm_fork_is_left_to_its_server_and_a_profiler_gets_the_normal_exit(monkeypatch):
    from azureml_steps import _exit

    monkeypatch.setattr(_exit, "_in_fork", True)
    assert _exit_with(monkeypatch, 0) == []
    monkeypatch.setattr(_exit, "_in_fork", False)
    assert _exit_with(monkeypatch, 0, profiler=object()) == []  # a profiler writes its results at the normal exit
