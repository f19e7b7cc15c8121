"""Local mode of the step launcher: ``python -m azureml_steps.<step>`` under Dagster's PipesSubprocessClient.

Outputs go to ``<storage_root>/<asset>/<site>/<species>/<run_id>/``; data inputs are version folders
of the local data store. The step's stderr is forwarded to the run's compute logs; a step that fails
also writes its clean error message to a file whose text becomes the Dagster failure description.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from biodiv_core import settings
from biodiv_core.naming import slugify
from biodiv_dagster.launcher.spec import StepSpec

ERROR_FILE_ENV = "BIODIV_STEP_ERROR_FILE"  # same name as azureml_steps._cli.ERROR_FILE_ENV


def _storage_root(launcher) -> Path:
    return Path(launcher.storage_root).expanduser().resolve() if launcher.storage_root else settings.storage_root()


def _data_root(launcher) -> Path:
    return Path(launcher.data_root).expanduser().resolve() if launcher.data_root else settings.data_root()


def output_location(launcher, asset: str, site: str, species: str, run_id: str) -> str:
    # Partition keys are slugs already; slugify again so a display name can never build a path.
    folder = _storage_root(launcher) / asset / slugify(site, "site") / slugify(species) / run_id
    return str(folder)


def data_input(launcher, asset: str, version: int | None = None) -> tuple[str, int]:
    from biodiv_core import datastore

    root = _data_root(launcher)
    resolved = datastore.resolve_version(root, asset, version)
    return str(root / asset / str(resolved)), resolved


def step_env(spec: StepSpec) -> dict[str, str]:
    """Environment every step gets: local state, tracking store, correlation id and thread budget."""
    env = {
        "BIODIV_HOME": str(settings.biodiv_home()),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri(),
        "BIODIV_CORRELATION_ID": spec.correlation_id,
        "PYTHONUNBUFFERED": "1",
    }
    threads = spec.params.get("num_threads") or spec.params.get("num-threads")
    if threads:
        # OpenMP busy-waiting on a shared 2-core machine is what makes LightGBM 25x slower (DESIGN 9).
        env.update(BIODIV_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.update(spec.env)
    return env


def launch(launcher, context: dg.AssetExecutionContext, spec: StepSpec) -> Sequence[dg.MaterializeResult]:
    for location in spec.outputs.values():
        Path(location).parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", spec.module, *spec.arguments()]
    fd, error_file = tempfile.mkstemp(prefix=f"biodiv-{spec.step}-", suffix=".error.json")
    os.close(fd)
    try:
        env = {**step_env(spec), ERROR_FILE_ENV: error_file}
        client = dg.PipesSubprocessClient(forward_stdio=True)
        try:
            invocation = client.run(context=context, command=command, env=env)
        except Exception as exc:
            failure = _step_failure(spec, error_file)
            if failure is None:
                raise
            raise failure from exc
        return invocation.get_results(implicit_materializations=False)
    finally:
        Path(error_file).unlink(missing_ok=True)


def _step_failure(spec: StepSpec, error_file: str) -> dg.Failure | None:
    try:
        error = json.loads(Path(error_file).read_text() or "null")
    except (OSError, ValueError):
        error = None
    if not error:
        return None
    user_error = bool(error.get("user_error"))
    return dg.Failure(
        description=f"Step {spec.step} failed: {error.get('message')}",
        metadata={
            "step": spec.step,
            "error_type": str(error.get("type")),
            "message": str(error.get("message")),
            "correlation_id": spec.correlation_id,
        },
        # Bad data or config fails the same way on every retry.
        allow_retries=not user_error,
    )
