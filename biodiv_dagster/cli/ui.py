"""`biodiv ui`: the Dagster UI, its daemon and the MLflow UI on the same local state, until Ctrl-C.

Runs ``dagster-webserver`` and ``dagster-daemon`` directly (what ``dagster dev`` starts, without its
"superseded by dg dev" notice) and ``mlflow server`` on the SQLite store when tracking is local. Dagster's
metadata links (``mlflow_run``, ``mlflow_model_version``) point at that MLflow UI: the port chosen here is
handed to the Dagster processes as ``BIODIV_MLFLOW_UI_URL``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from biodiv_core import settings
from biodiv_core.errors import ConfigError

DEFAULT_PORT = 3000
# Per-process environment: MLflow's server imports a deprecated Starlette module (a warning about MLflow's code).
PROCESS_ENV = {"mlflow": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}}


def register(subparsers) -> None:
    ui = subparsers.add_parser(
        "ui",
        help="Start the Dagster UI + daemon and the MLflow UI on the local state (Ctrl-C stops them).",
        description="Serve the Dagster UI (dagster-webserver), run the daemon (sensors, schedules, run queue) and "
        "serve the MLflow UI on the local tracking store, all on 127.0.0.1; prints both URLs. "
        "Example: biodiv ui --port 3001 --mlflow-port 5001",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ui.add_argument("--port", type=int, default=DEFAULT_PORT, help="Dagster UI port")
    ui.add_argument(
        "--mlflow-port",
        type=int,
        default=int(os.environ.get("BIODIV_MLFLOW_PORT") or settings.DEFAULT_MLFLOW_UI_PORT),
        help="MLflow UI port (env BIODIV_MLFLOW_PORT); not started when MLFLOW_TRACKING_URI is a server",
    )
    ui.set_defaults(handler=cmd_ui)


def _check_free(port: int, option: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} on 127.0.0.1 is in use ({exc.strerror}): pick another with {option} "
                f"(make ui PORT=... MLFLOW_PORT=...) or stop what listens there."
            ) from exc


def mlflow_command(port: int) -> list[str] | None:
    """``mlflow server`` on the local store, or None when tracking goes to a server we do not own."""
    uri = settings.mlflow_tracking_uri()
    if not uri.startswith("sqlite:"):
        return None
    return [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        settings.mlflow_artifact_root().as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def ui_commands(port: int, mlflow_port: int) -> dict[str, list[str]]:
    """The processes `biodiv ui` runs, by name (run from the repository root)."""
    bin_dir = Path(sys.executable).parent
    commands = {
        "dagster-webserver": [
            str(bin_dir / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "workspace.yaml",
        ],
        "dagster-daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
    }
    mlflow = mlflow_command(mlflow_port)
    if mlflow:
        commands["mlflow"] = mlflow
    return commands


def cmd_ui(args: argparse.Namespace) -> int:
    from biodiv_core.tracking import ensure_experiment
    from biodiv_dagster.cli.platform import open_instance
    from biodiv_dagster.instance import ensure_dagster_home
    from biodiv_dagster.mlflow_links import experiment_url

    open_instance()  # fails the runs a killed `biodiv run`/`main` left STARTED
    home = ensure_dagster_home()
    _check_free(args.port, "--port")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.setdefault("BIODIV_DAGSTER_UI_URL", f"http://127.0.0.1:{args.port}")  # links in failure notifications
    commands = ui_commands(args.port, args.mlflow_port)
    if "mlflow" in commands:
        _check_free(args.mlflow_port, "--mlflow-port")
        env.setdefault(settings.MLFLOW_UI_URL_ENV, f"http://127.0.0.1:{args.mlflow_port}")
        os.environ[settings.MLFLOW_UI_URL_ENV] = env[settings.MLFLOW_UI_URL_ENV]
    experiment = ensure_experiment()  # exists (tagged for the classic ML view) before the MLflow UI lists it
    print(f"Dagster UI:  http://127.0.0.1:{args.port}  (DAGSTER_HOME={home})")
    print(f"MLflow UI:   {experiment_url(experiment)}  (store {settings.mlflow_tracking_uri()})")
    print("Ctrl-C stops them.", flush=True)
    return _serve(commands, env)


def _serve(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Run every command until one exits or Ctrl-C; then stop the others. Returns the first exit code."""
    import signal

    # SIGTERM (a service manager, a test) stops the children too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    processes = {
        name: subprocess.Popen(command, cwd=settings.REPO_ROOT, env={**env, **PROCESS_ENV.get(name, {})})
        for name, command in commands.items()
    }
    code = 0
    try:
        while True:
            ended = {name: p.poll() for name, p in processes.items() if p.poll() is not None}
            if ended:
                name, code = next(iter(ended.items()))
                print(f"{name} exited with code {code}; stopping the others", file=sys.stderr, flush=True)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        code = 0
    finally:
        _stop(processes.values())
    return code


def _stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
