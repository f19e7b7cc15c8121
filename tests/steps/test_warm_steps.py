"""Warm step processes (azureml_steps._warm): a fork of a pre-imported server behaves like `python -m <step>`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STEP = """
import os, signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def on_term(number, frame):
    (out / "terminated").write_text(str(number))
    sys.exit(3)
signal.signal(signal.SIGTERM, on_term)
(out / "seen.txt").write_text(f"{os.getcwd()}|{os.environ.get('STEP_VALUE')}|{os.getppid()}|{VERSION}")
print("to stdout"); print("to stderr", file=sys.stderr)
mode = sys.argv[2]
if mode == "sleep":
    time.sleep(60)
if mode == "kill-self":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(mode))
"""


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory):
    """A warm server whose interpreter sees a module folder (PYTHONPATH is the same for the clients)."""
    base = tmp_path_factory.mktemp("warm")
    modules = base / "modules"
    modules.mkdir()
    env = {**os.environ, "PYTHONPATH": str(modules)}
    socket_path = str(base / "warm.sock")
    process = subprocess.Popen(
        [sys.executable, "-m", "azureml_steps._warm", "serve", "--socket", socket_path, "--parent", str(os.getpid())],
        env=env,
    )
    deadline = time.monotonic() + 120
    while not Path(socket_path).exists():
        assert process.poll() is None and time.monotonic() < deadline, "warm server did not start"
        time.sleep(0.05)
    yield socket_path, env, modules
    process.terminate()
    process.wait(10)


@pytest.fixture
def server(warm_server):
    (warm_server[2] / "toy_step.py").write_text("VERSION = 1\n" + STEP)
    return warm_server


def _client(socket_path, env, *args, **kwargs):
    command = [sys.executable, "-m", "azureml_steps._warm", "run", "--socket", socket_path, "toy_step", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_warm_step_gets_argv_env_cwd_stdio_and_its_exit_code(server, tmp_path):
    socket_path, env, _ = server
    client = _client(socket_path, {**env, "STEP_VALUE": "42"}, str(tmp_path), "7", cwd=tmp_path)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 7
    assert "to stdout" in out and "to stderr" in err
    cwd, value, parent, version = (tmp_path / "seen.txt").read_text().split("|")
    assert (cwd, value, version) == (str(tmp_path), "42", "1")
    assert int(parent) != client.pid  # forked by the server's supervisor, not started by the client


def test_a_profile_folder_gets_the_cpu_profile_of_each_forked_step(server, tmp_path):
    import pstats

    socket_path, env, _ = server
    profiles = tmp_path / "profiles"
    client = _client(socket_path, {**env, "BIODIV_WARM_PROFILE": str(profiles)}, str(tmp_path), "5")
    client.communicate(timeout=60)
    assert client.returncode == 5  # the step's exit code is kept
    [profile] = profiles.glob("toy_step-*.prof")
    assert any(name == "<module>" and "toy_step" in path for path, _, name in pstats.Stats(str(profile)).stats)


def test_project_code_is_imported_fresh_by_every_step(server, tmp_path):
    socket_path, env, modules = server
    (modules / "toy_step.py").write_text("VERSION = 2\n" + STEP)
    client = _client(socket_path, env, str(tmp_path), "0")
    client.communicate(timeout=60)
    assert client.returncode == 0 and (tmp_path / "seen.txt").read_text().endswith("|2")


def test_signals_reach_the_step_and_a_killed_client_takes_the_step_with_it(server, tmp_path):
    socket_path, env, _ = server
    client = _client(socket_path, env, str(tmp_path), "sleep")
    _wait_for(lambda: (tmp_path / "seen.txt").exists())
    client.send_signal(signal.SIGTERM)
    assert client.wait(30) == 3 and (tmp_path / "terminated").read_text() == str(int(signal.SIGTERM))

    (tmp_path / "seen.txt").unlink()
    client = _client(socket_path, env, str(tmp_path), "sleep")
    _wait_for(lambda: (tmp_path / "seen.txt").exists())
    step_pid = _step_pid(tmp_path)
    client.kill()
    client.wait(30)
    _wait_for(lambda: not _alive(step_pid), what="the step to die with its client")


def test_a_step_killed_by_a_signal_kills_its_client_the_same_way(server, tmp_path):
    socket_path, env, _ = server
    client = _client(socket_path, env, str(tmp_path), "kill-self")
    client.communicate(timeout=60)
    assert client.returncode == -signal.SIGKILL


def test_another_interpreter_set_up_runs_cold(server, tmp_path):
    """A client whose PYTHONPATH differs (a test's sitecustomize, say) gets a fresh interpreter, not a fork."""
    socket_path, env, modules = server
    other = {**env, "PYTHONPATH": f"{modules}{os.pathsep}{tmp_path}"}
    client = _client(socket_path, other, str(tmp_path), "5")
    client.communicate(timeout=120)
    assert client.returncode == 5
    assert int((tmp_path / "seen.txt").read_text().split("|")[2]) == os.getpid()  # exec'd in place: our child


def test_without_a_server_the_step_runs_the_plain_way(tmp_path, server):
    _, env, _ = server
    client = _client(str(tmp_path / "no-such.sock"), env, str(tmp_path), "4")
    client.communicate(timeout=120)
    assert client.returncode == 4


def _step_pid(folder):
    # seen.txt holds the step's parent (the supervisor); the step is that supervisor's only child.
    import psutil

    supervisor = int((folder / "seen.txt").read_text().split("|")[2])
    [step] = psutil.Process(supervisor).children()
    return step.pid


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


START = "from biodiv_dagster.launcher import warm; print(warm.start())"


def _server_pid(socket_path: str) -> int:
    from azureml_steps import _warm

    return int(Path(_warm.pid_file(socket_path)).read_text())


def _stop_server(socket_path: str) -> None:
    try:
        os.kill(_server_pid(socket_path), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def test_processes_of_one_set_up_share_one_server_and_a_new_set_up_gets_its_own(tmp_path):
    """Run workers and CLI calls come and go; the server outlives the process that started it."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    starters = [subprocess.Popen([sys.executable, "-c", START], env=env, stdout=subprocess.PIPE, text=True)]
    starters.append(subprocess.Popen([sys.executable, "-c", START], env=env, stdout=subprocess.PIPE, text=True))
    paths = {starter.communicate(timeout=60)[0].strip() for starter in starters}
    other_env = {**env, "PYTHONPATH": str(tmp_path)}  # what a fresh interpreter would see differently
    other = subprocess.run([sys.executable, "-c", START], env=other_env, capture_output=True, text=True, timeout=60)
    try:
        [path] = paths  # both starters found the same server (one started it, under the lock)
        assert other.stdout.strip() != path
        assert len([name for name in os.listdir(Path(path).parent) if name.endswith(".pid")]) == 2
        server = _server_pid(path)
        assert all(starter.returncode == 0 for starter in starters)
        assert Path(f"/proc/{server}").exists()  # its starters are gone; it is not
        _wait_for(lambda: Path(path).exists(), timeout=120, what="the server to listen")
    finally:
        for socket_path in {*paths, other.stdout.strip()}:
            _stop_server(socket_path)


def test_a_client_waits_for_a_server_still_importing_and_an_idle_server_exits(tmp_path):
    """A step launched while the server imports is forked by it (not run cold beside it); idle, it goes away."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "toy_step.py").write_text("VERSION = 3\n" + STEP)
    env = {**os.environ, "PYTHONPATH": str(modules)}
    socket_path = str(tmp_path / "shared.sock")
    serve = [sys.executable, "-m", "azureml_steps._warm", "serve", "--socket", socket_path, "--detach"]
    subprocess.run([*serve, "--idle-seconds", "3"], env=env, check=True, timeout=60)
    try:
        assert not Path(socket_path).exists()  # still importing the libraries
        client = _client(socket_path, env, str(tmp_path), "0")
        client.communicate(timeout=120)
        assert client.returncode == 0
        supervisor = int((tmp_path / "seen.txt").read_text().split("|")[2])
        assert supervisor not in (client.pid, os.getpid())  # forked by the server, not exec'd cold
        server = _server_pid(socket_path)
        _wait_for(lambda: not _alive(server), timeout=60, what="the idle server to exit")
        assert not Path(socket_path).exists()
    finally:
        _stop_server(socket_path)


def test_a_sitecustomize_on_the_path_means_cold_steps(tmp_path):
    """Start-up code a fork would skip (fault injection, memory probes) needs a fresh interpreter."""
    from azureml_steps import _warm

    assert not _warm.has_startup_hook({"PYTHONPATH": str(tmp_path)})
    (tmp_path / "sitecustomize.py").write_text("")
    assert _warm.has_startup_hook({"PYTHONPATH": f"/nonexistent{os.pathsep}{tmp_path}"})
