"""The warm step server (azureml_steps._warm) shared by every process of one interpreter set-up.

A backfill's run workers, `biodiv run` calls one after another, `biodiv main`'s workers and the tests all fork
their steps from one pre-imported server, so only the first of them pays the imports (with a server per
process, each run paid 3-5 s of CPU for them, and its first steps ran cold while the server imported). The
server belongs to no one: it is a daemon in its own session that exits after idle minutes (no step running,
no request). Its name hashes what a fork inherits and a fresh interpreter would see differently: the
interpreter, the ``PYTHON*`` variables, the user, and the modification times of the site-packages folders
and of the server's code, so a ``pip install`` or an edited server gets a new one (the old one idles out).
``BIODIV_WARM_STEPS=0`` runs every step the plain way (``python -m azureml_steps.<step>``).
"""

from __future__ import annotations

import hashlib
import os
import site
import subprocess
import sys
import tempfile
from pathlib import Path

from azureml_steps import _warm
from biodiv_core.atomic import file_lock

ENV_VAR = "BIODIV_WARM_STEPS"
IDLE_SECONDS = 600


def enabled() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def server_key(kind: str = "step") -> str:
    """Names the server a fork of which behaves like a fresh ``python -m`` of this process's set-up."""
    folders = sorted({*site.getsitepackages(), site.getusersitepackages()})
    parts = [kind, sys.executable, str(os.getuid()), repr(sorted(_warm._interpreter_env(dict(os.environ)).items()))]
    parts += [f"{folder}:{_mtime(folder)}" for folder in folders]
    parts.append(f"{_warm.__file__}:{_mtime(_warm.__file__)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def socket_path(kind: str = "step") -> str:
    # In the temp folder, not BIODIV_HOME: Unix socket paths are limited to 107 bytes, and one server serves
    # every BIODIV_HOME (each step gets its caller's environment).
    folder = Path(tempfile.gettempdir()) / f"biodiv-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return str(folder / f"{kind}-{server_key(kind)}.sock")


def start(kind: str = "step") -> str | None:
    """Socket path of the shared warm server of ``kind`` (``step``, or ``run`` for Dagster run workers),
    starting it if none runs; None when warm processes are off."""
    if not enabled() or not hasattr(os, "fork") or _warm.has_startup_hook(dict(os.environ)):
        return None
    path = socket_path(kind)
    if _warm.server_alive(path):
        return path
    with file_lock(path.removesuffix(".sock") + ".lock"):  # concurrent runs start one server, not one each
        if not _warm.server_alive(path):
            with open(path.removesuffix(".sock") + ".log", "w") as log:
                command = [sys.executable, "-m", "azureml_steps._warm", "serve", "--socket", path, "--detach"]
                command += ["--idle-seconds", str(IDLE_SECONDS), "--kind", kind]
                # Returns once the daemon has forked off; it writes its pid and imports meanwhile.
                subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)
    return path


def ready(kind: str) -> str | None:
    """Socket path of the shared server of ``kind`` when one is running, else None (and none is started)."""
    if not enabled() or not hasattr(os, "fork") or _warm.has_startup_hook(dict(os.environ)):
        return None
    path = socket_path(kind)
    return path if _warm.server_alive(path) else None


def command(module: str, arguments: list[str], kind: str = "step") -> list[str]:
    """The command line of ``python -m module arguments``: through the warm server when there is one."""
    path = start(kind)
    if path is None:
        return [sys.executable, "-m", module, *arguments]
    return [sys.executable, "-m", "azureml_steps._warm", "run", "--socket", path, module, *arguments]
