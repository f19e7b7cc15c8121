"""`mlflow models serve -m models:/<name>@deployed --env-manager local`: the deployed model online, on 127.0.0.1.

The real server (uvicorn, in its own process) is started on a free port after the step's storage folder is gone,
polled on its health endpoint, sent `dataframe_split` requests of raw rows, and stopped.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from deployment_helpers import FEATURES, sample_features, trained_in_a_run

from biodiv_core import naming
from biodiv_core.training.model import predict_proba
from biodiv_dagster.deployment.local import LocalDeploymentBackend

SITE, SPECIES = "yellowstone", "Cygnus buccinator"
START_TIMEOUT_SECONDS = 240  # a deadline, not a sleep: the loop ends as soon as /ping answers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_until_healthy(process: subprocess.Popen, base: str, log_path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # between polls only
    pytest.fail(f"mlflow models serve not healthy after {START_TIMEOUT_SECONDS} s: {log_path.read_text()[-3000:]}")


@pytest.fixture
def server(tmp_path):
    """The deployed version served from the registry (storage folder removed first); yields (base URL, booster)."""
    folder, run_id, booster = trained_in_a_run(tmp_path / "storage" / "deployable_model", SITE, SPECIES)
    backend = LocalDeploymentBackend()
    name = naming.model_name(SITE, SPECIES)
    version = backend.register(str(folder), name, {"roc_auc": 0.8, "mlflow_run_id": run_id})
    backend.deploy(name, version, naming.endpoint_name(SITE, SPECIES), SITE, SPECIES)
    shutil.rmtree(tmp_path / "storage")

    port = _free_port()
    venv_bin = os.path.dirname(sys.executable)
    mlflow_cli = os.path.join(venv_bin, "mlflow")
    # As in an activated environment: the CLI execs `uvicorn` from PATH.
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [mlflow_cli, "models", "serve", "-m", f"models:/{name}@deployed", "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(process, base, log_path)
        yield base, booster
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own session (the CLI and the uvicorn it execs), SIGKILL if it does not stop."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)


def _split(frame) -> dict:
    """A `dataframe_split` request body of ``frame`` (NaN as null)."""
    body = json.loads(frame.to_json(orient="split", index=False))
    return {"dataframe_split": {"columns": body["columns"], "data": body["data"]}}


def test_served_model_scores_raw_rows_and_answers_bad_input_with_a_400(server):
    base, booster = server
    raw = sample_features(n_rows=40, seed=5).astype({"landcover": str})
    raw["decimallatitude"] = 44.6  # extra columns a raw features file holds
    expected = predict_proba(booster, raw[FEATURES].astype({"landcover": "category"}))

    status, body = _post(f"{base}/invocations", _split(raw))
    assert status == 200, body
    rows = body["predictions"]
    assert [set(row) for row in rows[:1]] == [{"gbifid", "probability", "presence", "mess", "extrapolated"}]
    assert all(isinstance(row["extrapolated"], bool) and row["extrapolated"] == (row["mess"] < 0) for row in rows)
    assert [row["gbifid"] for row in rows] == raw["gbifid"].tolist()  # every row, in input order
    np.testing.assert_allclose([row["probability"] for row in rows], expected, rtol=1e-9)
    assert [row["presence"] for row in rows] == [int(p >= 0.4) for p in expected]  # the model's threshold

    status, body = _post(f"{base}/invocations", _split(raw.drop(columns=["precip"])))
    assert status == 400, body
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "missing column(s) ['precip']" in body["message"] and "\n" not in body["message"]
    assert "stack_trace" not in body and "Traceback" not in json.dumps(body)

    text = raw.astype({"elevation": object})
    text.loc[3, "elevation"] = "high"
    status, body = _post(f"{base}/invocations", _split(text))
    assert 400 <= status < 500, body  # MLflow's own schema check comes first and names the column
    assert "elevation" in body["message"] and "Traceback" not in json.dumps(body)

    status, body = _post(f"{base}/invocations", _split(raw.head(0)))
    assert status == 200 and body["predictions"] == []
