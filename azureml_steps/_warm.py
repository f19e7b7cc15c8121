"""Warm step processes for the local launcher: import the heavy libraries once, fork a fresh process per step.

Every step process used to pay the same ~3 s (more on a busy machine) importing MLflow, LightGBM, pandas,
scikit-learn and matplotlib before doing well under a second of work on a small partition. Here a *server*
imports those third-party libraries once; for each step a small *client* process (what the launcher starts,
so Dagster Pipes, stdio and exit codes work exactly as with ``python -m azureml_steps.<step>``) hands the
server its argv, environment, working directory and stdio file descriptors over a Unix socket. The server
forks a *supervisor*, which forks the step process: the same step code an AzureML job runs, in a fresh
process that imports our own modules anew (so edited project code is never stale; only third-party modules
are shared). The supervisor relays the client's signals to the step, kills the step when the client dies
(the client is the process Dagster and the tests see), and sends back the exit status, which the client
exits with (a step killed by a signal makes the client die of the same signal). A client that finds the
server still importing waits for it; one that finds no server runs the step the plain way.

    python -m azureml_steps._warm serve --socket PATH --detach   # by the local launcher (launcher/warm.py)
    python -m azureml_steps._warm run --socket PATH azureml_steps.train --site ...
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import select
import signal
import socket
import struct
import sys
import time

from azureml_steps import _exit
from azureml_steps._profile import PROFILE_ENV, cpu_profile

# Third-party modules imported once by a server, shared copy-on-write by its forks: one server kind for steps,
# one for Dagster run workers (`dagster api execute_run`, launched by biodiv_dagster.run_launcher).
STEP_PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "sklearn.metrics",
    "sklearn.model_selection",
    "lightgbm",
    "hyperopt",
    "matplotlib.pyplot",
    "mlflow",
    "mlflow.lightgbm",
    "mlflow.pyfunc",
    # What opening the SQLite tracking store and saving a model import (alembic, SQLAlchemy, GitPython,
    # pygments): ~2-3 s per step on top of the libraries above, measured with -X importtime in a warm fork.
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.db.utils",
    "git",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "yaml",
)
RUN_PRELOAD = (
    "dagster",
    "dagster._cli.api",
    "dagster._core.execution.api",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "dagster_mlflow",
    # The assets that run in the run worker itself: registration (MLflow's stores) and the habitat map, which
    # loads the model and scores every point and cell (LightGBM, scikit-learn, matplotlib, rasterio): without
    # these a map run imported for 7 s of CPU (cProfile of a forked run worker).
    *STEP_PRELOAD,
    "rasterio",
)
PRELOADS = {"step": STEP_PRELOAD, "run": RUN_PRELOAD}
# Caches filled once by the server so that no step fills its own: saving a model checks its pip requirements
# against the installed packages, and MLflow maps every installed distribution to its modules for that (1.2-1.3 s
# per train_to_deploy step; the map depends only on the environment the server shares with its steps).
WARM_UPS = ("mlflow.utils.requirements_utils:_init_modules_to_packages_map",)
RELAYED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _interpreter_env(env: dict) -> dict:
    """What shapes an interpreter at start-up (sys.path, sitecustomize, hash seed...): PYTHON* variables."""
    return {key: value for key, value in env.items() if key.startswith("PYTHON") and key != "PYTHONUNBUFFERED"}


def has_startup_hook(env: dict) -> bool:
    """Whether ``env``'s PYTHONPATH brings a ``sitecustomize``/``usercustomize``: start-up code (a test's fault
    injection, a benchmark's memory probe) that may read the environment when the interpreter starts, which
    a fork of the server never does again. Such steps run the plain way."""
    for folder in filter(None, env.get("PYTHONPATH", "").split(os.pathsep)):
        if any(os.path.exists(os.path.join(folder, f"{name}.py")) for name in ("sitecustomize", "usercustomize")):
            return True
    return False


_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, payload: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(payload).encode()
    message = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [message], fds)
    else:
        sock.sendall(message)


def _recv(sock: socket.socket, with_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One framed JSON message (and up to ``with_fds`` file descriptors); (None, []) when the peer closed."""
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, with_fds)
    else:
        head = sock.recv(_HEADER.size, socket.MSG_WAITALL)
    if len(head) < _HEADER.size:
        return None, fds
    (size,) = _HEADER.unpack(head)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None, fds
        data += chunk
    return json.loads(data), fds


# --------------------------------------------------------------------------- server side


def serve(path: str, idle_seconds: float, parent: int | None, kind: str = "step") -> None:
    """Accept requests on ``path`` until nothing ran for ``idle_seconds`` (or ``parent``, if given, is gone)."""
    import importlib

    for name in PRELOADS[kind]:
        try:
            importlib.import_module(name)
        except ImportError:  # a missing optional library is imported (and fails) in the step as before
            pass
    for target in WARM_UPS:
        module, _, function = target.partition(":")
        try:
            getattr(importlib.import_module(module), function)()
        except Exception:  # a private MLflow helper renamed: the step fills the cache itself, as before
            pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # clients see the socket only once it listens
    server.listen(64)
    stopping = []
    signal.signal(signal.SIGTERM, lambda number, frame: stopping.append(number))
    supervisors: set[int] = set()
    last = time.monotonic()
    while not stopping and (parent is None or os.getppid() == parent):
        _reap(supervisors)
        if supervisors:  # a step still running is not idleness
            last = time.monotonic()
        elif time.monotonic() - last >= idle_seconds:
            break
        ready, _, _ = select.select([server], [], [], 1.0)
        if not ready or stopping:
            continue
        conn, _ = server.accept()
        last = time.monotonic()
        pid = os.fork()
        if pid == 0:  # supervisor
            server.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os._exit(_supervise(conn))
        supervisors.add(pid)
        conn.close()
    try:  # first the socket, so that no client connects to a server on its way out
        os.unlink(path)
    except OSError:
        pass
    server.close()
    _reap(supervisors, block=True)


def detach(pid_file: str) -> bool:
    """Become a daemon (True in the daemon, False in the starting process, which should exit).

    Shared by processes that come and go (run workers, CLI calls, tests), the server must not be any one's
    child: it is re-parented to init, in its own session, in ``/``, and writes its pid for clients to find.
    """
    if os.fork() > 0:
        return False
    os.setsid()
    os.chdir("/")
    with open(pid_file + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    return True


def _reap(supervisors: set[int], block: bool = False) -> None:
    """Wait for finished supervisors: waited-for children count in this process's CPU usage (benchmarks read it)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            supervisors.clear()
            return
        if pid == 0:
            return
        supervisors.discard(pid)


def _supervise(conn: socket.socket) -> int:
    request, fds = _recv(conn, with_fds=3)
    if request is None or len(fds) != 3:
        return 1
    if _interpreter_env(request["env"]) != _interpreter_env(dict(os.environ)) or has_startup_hook(request["env"]):
        # A fresh interpreter would start differently (another PYTHONPATH, a sitecustomize): not a fork of this one.
        _send(conn, {"cold": True})
        return 0
    pid = os.fork()
    if pid == 0:
        conn.close()
        _become_step(request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
            return 0
        ready, _, _ = select.select([conn], [], [], 0.05)
        if ready:
            message, _ = _recv(conn)
            if message is None:  # the client died (killed, or its run was stopped hard): so does the step
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return 0
            os.kill(pid, int(message["signal"]))


def _become_step(request: dict, fds: list[int]) -> None:
    _exit.mark_fork()
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for number in RELAYED_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        os.setsid()  # its own process group, as a fresh `python -m` would have under the client
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdin, sys.stdout, sys.stderr = (
            open(0, closefd=False),  # noqa: SIM115
            open(1, "w", closefd=False),  # noqa: SIM115
            open(2, "w", closefd=False),  # noqa: SIM115
        )
        sys.argv = [request["module"], *request["args"]]
        sys.path[0] = request["cwd"]
        profile = cpu_profile(request["env"].get(PROFILE_ENV))
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            if profile is not None:
                profile.disable()
                profile.dump_stats(os.path.join(request["env"][PROFILE_ENV], f"{request['module']}-{os.getpid()}.prof"))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        _exit.exit_now(code)


# --------------------------------------------------------------------------- client side


def run(path: str, module: str, args: list[str], wait: float = 180.0) -> int:
    """Run ``python -m module args`` in a warm fork; the exit code (or the death by signal) is the step's.
    ``wait``: seconds to wait for a server that is still importing before running the plain way."""
    sock = _connect(path, wait)
    if sock is None:
        return _cold(module, args)  # no server (gone idle, not started): the plain way
    from azureml_steps._orphan import PARENT_ENV, exit_with_parent

    # This client is the launcher's child: it watches the launcher (and relays the SIGTERM), the step its supervisor.
    env = {key: value for key, value in os.environ.items() if key != PARENT_ENV}
    request = {"module": module, "args": args, "cwd": os.getcwd(), "env": env}
    # Relayed from before the request: a SIGTERM that arrives while the server forks reaches the step once it
    # runs, instead of killing this client and, with it, the step unwarned.
    pending: list[int] = []
    running: list[bool] = []

    def relay(number, frame):
        if not running:
            pending.append(number)
            return
        try:
            _send(sock, {"signal": number})
        except OSError:
            pass

    for number in RELAYED_SIGNALS:
        signal.signal(number, relay)
    _send(sock, request, fds=[0, 1, 2])
    started, _ = _recv(sock)
    if started is None or started.get("cold"):
        sock.close()
        for number in RELAYED_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        if pending:  # stopped before anything ran: end as the plain process would have
            os.kill(os.getpid(), pending[0])
        return _cold(module, args)
    running.append(True)
    for number in pending:
        relay(number, None)
    exit_with_parent()
    while True:
        try:
            finished, _ = _recv(sock)
            break
        except InterruptedError:
            continue
    if finished is None:
        return 1
    code = int(finished["exit"])
    if code < 0:  # killed by a signal: die the same way, so the launcher sees what a plain process shows
        for number in RELAYED_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def pid_file(path: str) -> str:
    """Where the server listening on socket ``path`` writes its pid (``X.sock`` -> ``X.pid``)."""
    return path.removesuffix(".sock") + ".pid"


def server_alive(path: str) -> bool:
    """Whether the server of socket ``path`` is running (maybe still importing), from its pid file."""
    try:
        with open(pid_file(path)) as handle:
            pid = int(handle.read())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return path.encode() in handle.read().split(b"\0")  # that server, not a process that got its pid
    except (OSError, ValueError):
        return False


def _connect(path: str, timeout: float = 180.0) -> socket.socket | None:
    """A connection to the server, waiting while it is still importing (a cold step would import the same
    libraries beside it, on the same cores); None when there is no server."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
        if not server_alive(path) or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def _cold(module: str, args: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", module, *args])
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azureml_steps._warm", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve")
    server.add_argument("--socket", required=True)
    server.add_argument("--idle-seconds", type=float, default=600.0)
    server.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    server.add_argument("--detach", action="store_true", help="run as a daemon shared by processes (pid file)")
    server.add_argument("--kind", choices=sorted(PRELOADS), default="step", help="what to preload")
    client = commands.add_parser("run")
    client.add_argument("--socket", required=True)
    client.add_argument("module")
    client.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    if options.command == "serve":
        if options.detach and not detach(pid_file(options.socket)):
            return 0
        serve(options.socket, options.idle_seconds, options.parent, options.kind)
        return 0
    return run(options.socket, options.module, list(options.args))


if __name__ == "__main__":
    sys.exit(main())
