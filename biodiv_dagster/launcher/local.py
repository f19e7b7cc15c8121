"""The local step launcher: ``python -m azureml_steps.<step>`` under Dagster's PipesSubprocessClient.

Outputs go to ``<storage_root>/<asset>/<site>/<species>/<run_id>/``; data inputs are version folders
of the local data store. The step's stderr is forwarded to the run's compute logs; a step that fails
also writes its clean error message to a file whose text becomes the Dagster failure description.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from biodiv_core import settings
from biodiv_core.naming import slugify
from biodiv_dagster.launcher import warm
from biodiv_dagster.launcher.base import StepLauncher
from biodiv_dagster.launcher.spec import StepSpec
from biodiv_dagster.retraction import STORAGE_ERROR_KEY

# Dagster's own PipesSubprocessClient calls one of its preview APIs; the warning is about Dagster's code, printed
# once per step (18-26 lines of `make run`), and says nothing a user can act on.
warnings.filterwarnings("ignore", message=r"Function `PipesMessageReader\.expected_writer_count`")

ERROR_FILE_ENV = "BIODIV_STEP_ERROR_FILE"  # same name as azureml_steps._cli.ERROR_FILE_ENV
RUN_FILE_ENV = "BIODIV_MLFLOW_RUN_FILE"  # same name as biodiv_core.tracking.RUN_FILE_ENV
STEP_PARENT_ENV = "BIODIV_STEP_PARENT_PID"  # same name as azureml_steps._orphan.PARENT_ENV


class LocalStepLauncher(StepLauncher):
    """Steps as subprocesses on this machine; outputs in a local folder, inputs from the local data store."""

    # step outputs root (None: biodiv_core.settings.storage_root(), read at call time)
    storage_root: str | None = None
    # data store root (None: biodiv_core.settings.data_root(), i.e. BIODIV_DATA_ROOT)
    data_root: str | None = None

    def _storage_root(self) -> Path:
        return Path(self.storage_root).expanduser().resolve() if self.storage_root else settings.storage_root()

    def _data_root(self) -> Path:
        return Path(self.data_root).expanduser().resolve() if self.data_root else settings.data_root()

    def output_location(self, asset: str, site: str, species: str, run_id: str) -> str:
        warm.start()  # the first call of a run: the step server imports while the run gets going
        # Partition keys are slugs already; slugify again so a display name can never build a path.
        return str(self._storage_root() / asset / slugify(site, "site") / slugify(species) / run_id)

    def data_input(self, asset: str, version: int | None = None) -> tuple[str, int]:
        from biodiv_core.data import datastore

        root = self._data_root()
        resolved = datastore.resolve_version(root, asset, version)
        return str(root / asset / str(resolved)), resolved

    def run_step(self, context: dg.AssetExecutionContext, spec: StepSpec) -> Sequence[dg.MaterializeResult]:
        return run_subprocess(context, spec)


def step_env(spec: StepSpec) -> dict[str, str]:
    """Environment every step gets: local state, tracking store, correlation id and thread budget."""
    env = {
        "BIODIV_HOME": str(settings.biodiv_home()),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri(),
        "BIODIV_CORRELATION_ID": spec.correlation_id,
        "PYTHONUNBUFFERED": "1",
        STEP_PARENT_ENV: str(os.getpid()),  # the step exits when this process dies (azureml_steps/_orphan.py)
    }
    threads = spec.params.get("num_threads")
    if threads:
        # OpenMP busy-waiting on a shared 2-core machine is what makes LightGBM 25x slower (DESIGN 9).
        env.update(BIODIV_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.update(spec.env)
    return env


def run_subprocess(context: dg.AssetExecutionContext, spec: StepSpec) -> Sequence[dg.MaterializeResult]:
    for location in spec.outputs.values():
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        if context.retry_number > 0 and Path(location).exists():
            # Left by an earlier attempt of this run that failed after writing it (the path holds the run id,
            # and a failed step's output is never reported): without this the retry fails on "already exists".
            context.log.warning(f"removing {location}, written by failed attempt {context.retry_number - 1}")
            shutil.rmtree(location)
    command = warm.command(spec.module, spec.arguments())
    fd, error_file = tempfile.mkstemp(prefix=f"biodiv-{spec.step}-", suffix=".error.json")
    os.close(fd)
    fd, run_file = tempfile.mkstemp(prefix=f"biodiv-{spec.step}-", suffix=".mlflow-runs")
    os.close(fd)
    try:
        env = {**step_env(spec), ERROR_FILE_ENV: error_file, RUN_FILE_ENV: run_file}
        client = dg.PipesSubprocessClient(forward_stdio=True)
        try:
            invocation = client.run(context=context, command=command, env=env)
        except BaseException as exc:  # incl. run termination (DagsterExecutionInterruptedError)
            _fail_unfinished_runs(context, run_file)
            if not isinstance(exc, Exception):
                # The run was terminated; the client has sent the step SIGINT and waited for it. Dagster would
                # retry an interrupted step under a retry policy: a terminated run must stop instead.
                raise dg.Failure(
                    description=f"Step {spec.step} was stopped: the run was terminated ({type(exc).__name__}).",
                    allow_retries=False,
                ) from exc
            failure = _step_failure(spec, error_file)
            if failure is None:
                raise
            raise failure from exc
        return invocation.get_results(implicit_materializations=False)
    finally:
        Path(error_file).unlink(missing_ok=True)
        Path(run_file).unlink(missing_ok=True)


def _fail_unfinished_runs(context: dg.AssetExecutionContext, run_file: str) -> None:
    """A step that died without ending its MLflow runs (SIGKILL, OOM) leaves them RUNNING: mark them FAILED."""
    try:
        run_ids = [line for line in Path(run_file).read_text().split() if line]
        if run_ids:
            from biodiv_core.tracking import fail_unfinished_runs

            for run_id in fail_unfinished_runs(run_ids):
                context.log.warning(f"MLflow run {run_id} of the failed step was left RUNNING; marked FAILED")
    except Exception as exc:  # never hide the step's own failure behind a tracking-store problem
        context.log.warning(f"could not check the failed step's MLflow runs: {type(exc).__name__}: {exc}")


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
            # A full or read-only disk: the run's earlier outputs are retracted when it ends (retraction.py).
            STORAGE_ERROR_KEY: bool(error.get("storage_error")),
        },
        # Bad data or config fails the same way on every retry.
        allow_retries=not user_error,
    )
