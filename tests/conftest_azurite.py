"""Pytest plugin: Azurite, the Azure Storage emulator, for tests of the Blob Pipes channel.

Loaded from tests/conftest.py (`pytest_plugins`). The `azurite` fixture starts `azurite-blob`
(npm package from package.json, `make node-deps`) once per session on 127.0.0.1 with a free port and
yields a connection string for the emulator's well-known development account.
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account (public, not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with code {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"azurite-blob did not listen on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Connection string of a running Azurite Blob service (stopped at the end of the session)."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `make node-deps` (npm install) first.")
    location = tmp_path_factory.mktemp("azurite")
    port = _free_port()
    log = open(location / "azurite.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--loose",
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, process)
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(location, ignore_errors=True)
