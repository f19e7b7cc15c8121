"""The warm step server of this process (azureml_steps._warm): started on first use, one per process.

Each process that launches local steps (a Dagster run worker, a `biodiv main` worker, a test) gets its own
server, started in the background the first time the local launcher is used, so its imports overlap with
the run's own start-up; it exits when that process does (or after idle minutes). A step launched before the
server is ready, or with ``BIODIV_WARM_STEPS=0``, runs the plain way (``python -m azureml_steps.<step>``).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ENV_VAR = "BIODIV_WARM_STEPS"
_servers: dict[int, tuple[subprocess.Popen, str]] = {}  # pid of the owning process -> (server, socket path)


def enabled() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def start() -> str | None:
    """Socket path of this process's warm server (starting it if needed), or None when warm steps are off."""
    if not enabled() or not hasattr(os, "fork"):
        return None
    owner = os.getpid()  # a forked or spawned child never uses its parent's server
    if owner in _servers and _servers[owner][0].poll() is None:
        return _servers[owner][1]
    path = str(Path(tempfile.mkdtemp(prefix="biodiv-warm-")) / "steps.sock")
    server = subprocess.Popen(
        [sys.executable, "-m", "azureml_steps._warm", "serve", "--socket", path, "--parent", str(owner)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in a terminal reaches the steps through their clients, not here
    )
    _servers[owner] = (server, path)
    atexit.register(_stop, owner)
    return path


def command(module: str, arguments: list[str]) -> list[str]:
    """The command line of a step: through the warm server when there is one, else the plain one."""
    path = start()
    if path is None:
        return [sys.executable, "-m", module, *arguments]
    return [sys.executable, "-m", "azureml_steps._warm", "run", "--socket", path, module, *arguments]


def _stop(owner: int) -> None:
    entry = _servers.pop(owner, None)
    if entry is None or os.getpid() != owner:
        return
    server, path = entry
    server.terminate()
    try:
        server.wait(5)
    except subprocess.TimeoutExpired:
        server.kill()
    Path(path).unlink(missing_ok=True)
    try:
        Path(path).parent.rmdir()
    except OSError:
        pass
