"""MLflow tracking: where runs go, one run per stage with our tags, FAILED when the stage raises.

The store is ``settings.mlflow_tracking_uri()`` (SQLite under BIODIV_HOME unless MLFLOW_TRACKING_URI is
set). Experiments we create get an artifact location under ``settings.mlflow_artifact_root()``: without
it MLflow writes ``./mlruns`` into whatever the current directory is. mlflow is imported inside the
functions because it costs seconds to import and most callers of biodiv_core never track.
"""

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping

from biodiv_core import settings
from biodiv_core.atomic import file_lock

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "biodiv"
EXPERIMENT_ENV = "BIODIV_MLFLOW_EXPERIMENT"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
RUN_FILE_ENV = "BIODIV_MLFLOW_RUN_FILE"  # where a step lists the MLflow runs it started (see _note_run)
# MLflow 3's UI opens an experiment in its GenAI view unless the experiment says it holds classic ML runs
# (values of the tag: mlflow/server/js, enum of "mlflow.experimentKind").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def experiment_name() -> str:
    return os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def ensure_experiment(name: str | None = None) -> str:
    """Id of experiment ``name``, created with our artifact root if it does not exist yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = name or experiment_name()
    uri = settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    with _sqlite_store_lock(uri):
        existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND_TAG) is None:  # made before the tag existed
            mlflow.MlflowClient(uri).set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return existing.experiment_id
    root = settings.mlflow_artifact_root()
    root.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow.create_experiment(
            name, artifact_location=(root / name).as_uri(), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except MlflowException:
        # Another process created it between our lookup and create.
        existing = mlflow.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


@contextlib.contextmanager
def _sqlite_store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store while MLflow first opens it.

    MLflow creates a new store's tables on first use without any lock: two steps of a parallel backfill
    starting on a fresh BIODIV_HOME both run CREATE TABLE and one fails ("table latest_metrics already
    exists"; seen in benchmarks/backfill.py). Later opens find the tables and pass straight through.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    with file_lock(uri[len("sqlite:///") :] + ".lock"):
        yield


def run_tags(**tags) -> dict[str, str]:
    """String tags without None values (tracking servers reject null tag values)."""
    return {k: str(v) for k, v in tags.items() if v is not None and str(v) != ""}


@contextlib.contextmanager
def tracked_run(
    step: str,
    *,
    correlation_id: str | None = None,
    site: str | None = None,
    species: str | None = None,
    partition: str | None = None,
    dagster_run_id: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> Iterator[object]:
    """Start an MLflow run tagged with step, correlation_id, site, species, partition and the Dagster run id;
    end it FAILED on exception. Named ``<step> <site>/<species>``.

    The steps of one materialization are grouped by their tags, not by a parent run: each step is its own
    process (an AzureML job that resumes the job's own run), so no step can own the others' runs. In the
    MLflow UI, filter ``tags.partition = 'yellowstone|lynx-canadensis'`` or ``tags.dagster_run_id = '...'``
    (a run's steps), or group the runs table by the ``correlation_id`` tag (a backfill).
    Under an AzureML job (MLFLOW_RUN_ID set) the job's own run is resumed instead of creating one.
    Yields the ``mlflow.ActiveRun``.
    """
    import mlflow

    all_tags = run_tags(
        step=step,
        correlation_id=correlation_id,
        site=site,
        species=species,
        partition=partition,
        dagster_run_id=dagster_run_id,
        **(tags or {}),
    )
    if os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri())
        run = mlflow.start_run()
        mlflow.set_tags(all_tags)
    else:
        experiment_id = ensure_experiment(experiment)
        name = run_name or run_display_name(step, site, species)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=all_tags)
    try:
        _note_run(run.info.run_id)
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def run_display_name(step: str, site: str | None, species: str | None) -> str:
    """``score yellowstone/Lynx canadensis``: what the MLflow runs list shows."""
    where = "/".join(p for p in (site, species) if p)
    return f"{step} {where}" if where else step


def step_run(args) -> contextlib.AbstractContextManager:
    """The MLflow run of one step (a `biodiv_core.step_args.StepArgs`): tagged with its partition, correlation id
    and Dagster run."""
    return tracked_run(
        args.step, correlation_id=args.correlation_id, dagster_run_id=args.dagster_run_id, **args.context()
    )


def _note_run(run_id: str) -> None:
    """Append the run id to ``$BIODIV_MLFLOW_RUN_FILE`` (set by the local launcher).

    A step killed with SIGKILL (OOM killer, a hard stop) cannot end its own run; the launcher reads this
    file after the process died and marks runs still RUNNING as FAILED.
    """
    target = os.environ.get(RUN_FILE_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(run_id + "\n")


def fail_unfinished_runs(run_ids: list[str]) -> list[str]:
    """Mark those of ``run_ids`` still RUNNING as FAILED (their process is gone); return the ids changed."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri())
    changed = []
    for run_id in run_ids:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="FAILED")
            changed.append(run_id)
    return changed


def _param_value(value) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."


def log_params(params: Mapping[str, object], prefix: str = "") -> None:
    import mlflow

    mlflow.log_params({f"{prefix}{k}": _param_value(v) for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_trial(record: Mapping[str, object]) -> None:
    """One tuning trial as metrics at step=trial (one run, a CV-AUC curve over trials)."""
    log_metrics(
        {
            "cv_auc": record["auc"],
            "cv_auc_std": record["auc_std"],
            "trial_num_boost_round": record["num_boost_round"],
        },
        step=int(record["trial"]),
    )


def log_artifacts(local_dir: str | os.PathLike, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifacts(os.fspath(local_dir), artifact_path=artifact_path)


def log_artifact(local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(os.fspath(local_path), artifact_path=artifact_path)


if __name__ == "__main__":  # `python -m biodiv_core.tracking`: create the store ahead of the steps (preflight)
    ensure_experiment()
