"""Materialize partitions through Dagster in this process (no daemon) and register/deploy the results.

What `biodiv run` and `biodiv main` do: the same definitions, launcher and instance as the UI, so
every run, materialization and asset check they make is there to look at in `biodiv ui` afterwards.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any

import dagster as dg

from biodiv_core import settings
from biodiv_core.errors import BiodivError
from biodiv_core.evaluation.outputs import QUALITY_SCORE_KEYS
from biodiv_dagster.correlation import CORRELATION_TAG, new_correlation_id
from biodiv_dagster.deployment.rollback import retract_and_withdraw
from biodiv_dagster.partitions import partition_key
from biodiv_dagster.retraction import usable_records
from biodiv_dagster.training.orphans import launcher_tag

TRAIN_JOB = "train_models"
REGISTER_JOB = "register_and_deploy_job"


# Run config that keeps in-process runs from printing Dagster events on the terminal, errors included: they are all
# in the instance (the UI shows each failure with its stack trace), and the CLI prints the failure's one line.
QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}


class RunFailedError(BiodivError):
    """A Dagster run of ours failed; the message is the failing step's own error."""


@dataclass
class PartitionOutcome:
    site: str
    species: str
    partition: str
    correlation_id: str
    run_id: str
    summary: dict[str, Any]


def _defs():
    from biodiv_dagster.definitions import defs

    return defs


# What registering a model and mapping it import in this process: MLflow and its SQL stores (~2.4 s on this
# machine), and the map's model loading, scoring and plotting (LightGBM, scikit-learn, matplotlib, rasterio: 2-4 s).
AFTER_TRAINING_IMPORTS = (
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.pyfunc",
    "lightgbm",
    "matplotlib.pyplot",
    "rasterio",
    "biodiv_core.serving.habitat",
    "biodiv_core.serving.batch_scoring",
)
# Imported by the caller before the thread starts: the Dagster instance's storage, which the caller opens next, and
# MLflow's SQL stores both import SQLAlchemy and alembic, and two threads importing alembic's circular modules at
# once can leave one with a partially initialized module: under a profiler, which shifts the timing, `biodiv run` on a
# fresh home died of "cannot import name '_ProxyTransaction' from partially initialized module
# 'alembic.runtime.migration'" while it opened the instance.
# SQLAlchemy's ORM too: importing it registers inspection hooks that the instance's queries call at once, so with the
# ORM half-imported by the thread, a query in this one failed on "partially initialized module 'sqlalchemy.orm.exc'".
IMPORTED_BEFORE_THE_THREAD = ("biodiv_dagster.instance_storage", "sqlalchemy.orm", "sqlalchemy.ext.mutable")
_importing: list[threading.Thread] = []  # the one background import of this process


def import_in_background(names=AFTER_TRAINING_IMPORTS) -> threading.Thread:
    """Import ``names`` in a thread, once per process: while the training run's steps work, this process mostly
    waits for them, so what the registration and map runs import afterwards comes off the wall of `biodiv run`."""
    if _importing:
        return _importing[0]
    for name in IMPORTED_BEFORE_THE_THREAD:
        importlib.import_module(name)

    def work() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # the run that needs it imports (and reports) it again
                continue

    thread = threading.Thread(target=work, name="biodiv-import", daemon=True)
    thread.start()
    _importing.append(thread)
    return thread


def background_imports_done() -> None:
    """Wait for the background import, before this thread imports the same libraries (`_execute`, a retraction): two
    threads importing one package at once is what `IMPORTED_BEFORE_THE_THREAD` avoids for the instance. It has
    usually finished long before, while the training run worked."""
    if _importing:
        _importing[0].join()


def check_inputs(site: str, species: str, data_root=None) -> None:
    """Fail fast, before any run or partition exists, on names or data that cannot work (clear BiodivError)."""
    from biodiv_core.data import datastore
    from biodiv_core.naming import features_asset_name, validate_name

    validate_name(site, "site")
    validate_name(species, "species")
    root = data_root or settings.data_root()
    datastore.resolve_version(root, features_asset_name(site))
    datastore.species_file(root, site, species)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure's message (for a step, its own error text), or the run failure."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            # A user-code error wraps the real one: show the innermost cause (e.g. the dg.Failure text).
            while error.cause is not None and "Error occurred while executing" in error.message:
                error = error.cause
            user_message = event.step_failure_data.user_failure_data
            text = user_message.description if user_message and user_message.description else error.message
            return f"{event.step_key}: {text.strip()}"
    for event in result.all_events:
        if event.is_failure and event.message:
            return event.message
    return f"run {result.run_id} failed"


def train_partition(
    instance: dg.DagsterInstance,
    site: str,
    species: str,
    *,
    correlation_id: str | None = None,
    quiet: bool = False,
    **settings: Any,
) -> dg.ExecuteInProcessResult:
    """Add the (site, species) partition and materialize its training assets; RunFailedError on failure.

    ``settings``: RunSettings fields for this run (None keeps config/run.yml / the environment).
    """
    from biodiv_dagster.training.config import training_run_config
    from biodiv_dagster.training.sync import add_partition

    site_slug, species_slug = add_partition(instance, site, species)
    key = str(partition_key(site_slug, species_slug))
    result = (
        _defs()
        .resolve_job_def(TRAIN_JOB)
        .execute_in_process(
            instance=instance,
            partition_key=key,
            run_config=_quiet(training_run_config(**settings), quiet),
            tags={CORRELATION_TAG: correlation_id or new_correlation_id(), **launcher_tag()},
            raise_on_error=False,
        )
    )
    if not result.success:
        # A full or read-only disk: the steps that finished before it must not stay the partition's latest.
        background_imports_done()  # the retraction imports MLflow here
        retract_and_withdraw(instance, result.run_id)
        raise RunFailedError(f"Training {site} x {species} failed in {failure_message(result)}")
    return result


def _quiet(run_config: dg.RunConfig | None, quiet: bool) -> dg.RunConfig | None:
    if not quiet:
        return run_config
    run_config = run_config or dg.RunConfig()
    return dg.RunConfig(ops=run_config.ops, resources=run_config.resources, loggers=QUIET_LOGGERS)


def register_new_models(
    instance: dg.DagsterInstance, after_storage_id: int | None, partitions=None, quiet: bool = False
) -> list[str]:
    """Run the registration sensor's requests for deployable_model events after ``after_storage_id`` in process.

    ``partitions`` limits it to those partition keys. Returns the run ids of the register-and-deploy runs.
    """
    from biodiv_dagster.deployment.sensor import registration_run_requests

    return _run_requests(instance, REGISTER_JOB, registration_run_requests, after_storage_id, partitions, quiet)


def map_new_deployments(
    instance: dg.DagsterInstance, after_storage_id: int | None, partitions=None, quiet: bool = False
) -> list[str]:
    """Make the habitat map of each deployment after ``after_storage_id`` (the habitat sensor's requests), in
    process; nothing with a step launcher other than the local one (the map reads the site's data locally)."""
    from biodiv_dagster.backends import step_launcher_from_env
    from biodiv_dagster.habitat_automation import HABITAT_JOB, habitat_run_requests
    from biodiv_dagster.launcher.local import LocalStepLauncher

    if not isinstance(step_launcher_from_env(), LocalStepLauncher):
        return []
    return _run_requests(instance, HABITAT_JOB, habitat_run_requests, after_storage_id, partitions, quiet)


def _run_requests(instance, job: str, requests_after, after_storage_id, partitions, quiet: bool) -> list[str]:
    """Execute in process every run a sensor (``requests_after(instance, cursor)``) would request."""
    cursor = str(after_storage_id) if after_storage_id is not None else None
    run_ids = []
    while True:
        requests, next_cursor = requests_after(instance, cursor)
        for request in requests:
            if partitions is not None and request.partition_key not in partitions:
                continue
            run_id = (
                _register(instance, request, quiet) if job == REGISTER_JOB else _execute(instance, job, request, quiet)
            )
            if run_id:
                run_ids.append(run_id)
        if not requests or next_cursor == cursor:
            return run_ids
        cursor = next_cursor


def _execute(instance: dg.DagsterInstance, job: str, request: dg.RunRequest, quiet: bool) -> str:
    """Execute one requested run (registration, map) in process: its assets import MLflow, LightGBM and rasterio,
    so the background import is waited for first (and the retraction below imports MLflow too)."""
    background_imports_done()
    result = (
        _defs()
        .resolve_job_def(job)
        .execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags={**request.tags, **launcher_tag()},
            run_config=_quiet(None, quiet),
            raise_on_error=False,
        )
    )
    if not result.success:
        retract_and_withdraw(instance, result.run_id)
        raise RunFailedError(f"{job} for {request.partition_key} failed in {failure_message(result)}")
    return result.run_id


def register_model(instance: dg.DagsterInstance, record: dg.EventLogRecord, quiet: bool = False) -> str | None:
    """Register (and gate, deploy) exactly the model of the deployable_model event ``record``; its run id."""
    from biodiv_dagster.deployment.sensor import registration_request

    run = instance.get_run_by_id(record.run_id) if record.run_id else None
    return _register(instance, registration_request(record, run), quiet)


def _register(instance: dg.DagsterInstance, request: dg.RunRequest, quiet: bool) -> str | None:
    """Execute one registration request in process, unless a run registers that model already (then wait for it).

    The check and the run are one step under the partition's registration lock, so two `biodiv run`s of one
    partition, or `biodiv run` and `biodiv main`, never register or deploy the same model twice.
    """
    from biodiv_dagster.deployment.sensor import registration_run
    from biodiv_dagster.deployment.serial import registration_lock
    from biodiv_dagster.deployment.upstream import STORAGE_ID_TAG

    with registration_lock(str(request.partition_key)):
        existing = registration_run(instance, int(request.tags[STORAGE_ID_TAG]))
        if existing is None:
            return _execute(instance, REGISTER_JOB, request, quiet)
    return _wait_for(instance, existing.run_id)  # e.g. queued by the UI's registration sensor


def _wait_for(instance: dg.DagsterInstance, run_id: str, timeout_seconds: float = 600.0) -> str | None:
    import time

    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return run_id if run is not None and run.is_success else None
        time.sleep(1.0)
    return None


def latest_storage_id(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> int | None:
    records_filter = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None
    )
    records = usable_records(instance, records_filter, limit=1)
    return records[0].storage_id if records else None


def _latest_metadata(
    instance: dg.DagsterInstance, asset: str, partition: str, run_ids: tuple[str | None, ...] | None = None
) -> dict[str, Any]:
    """The metadata of the latest materialization of ``asset`` for ``partition`` (of one of ``run_ids`` if given)."""
    from biodiv_dagster.deployment.upstream import metadata_values, run_records

    if run_ids is not None:
        newest = run_records(instance, asset, partition, run_ids)  # one read for all of them
        records = [newest[run_id] for run_id in run_ids if run_id in newest]
    else:
        records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition])
        records = usable_records(instance, records_filter, limit=1)
    if not records or records[0].asset_materialization is None:
        return {}
    return metadata_values(records[0].asset_materialization)


def partition_summary(
    instance: dg.DagsterInstance, partition: str, run_ids: tuple[str | None, ...] | None = None
) -> dict[str, Any]:
    """What the latest materializations of a partition say (the `biodiv run --json` object).

    ``run_ids``: only what those runs made (`biodiv run`: its training, registration and map runs), so a run of the
    same partition going on at the same time cannot lend it its model.
    """
    prepared = _latest_metadata(instance, "prepared_data", partition, run_ids)
    best = _latest_metadata(instance, "best_parameters", partition, run_ids)
    scored = _latest_metadata(instance, "scores", partition, run_ids)
    model = _latest_metadata(instance, "deployable_model", partition, run_ids)
    registered = _latest_metadata(instance, "registered_model", partition, run_ids)
    deployment = _latest_metadata(instance, "batch_deployment", partition, run_ids)
    habitat = _latest_metadata(instance, "habitat_suitability", partition, run_ids)
    return {
        "site": prepared.get("site"),
        "species": prepared.get("species"),
        "partition": partition,
        "rows": prepared.get("rows"),
        "n_present": prepared.get("n_present"),
        "n_absent": prepared.get("n_absent"),
        # Presence-only species: the background points among n_absent (0 with real absences) and what AUC means.
        "background_points": int(prepared.get("background_points") or 0),
        "auc_caveat": prepared.get("auc_caveat"),
        "roc_auc": scored.get("roc_auc"),
        "accuracy": scored.get("accuracy"),
        # docs/model-quality.md: spatial vs random CV, threshold metrics, baseline, explanations
        **{key: scored.get(key) for key in (*QUALITY_SCORE_KEYS, "top_features")},
        "best_cv_auc": best.get("best_cv_auc"),
        "best_parameters": best.get("best_parameters"),
        "model_uri": model.get("model_uri"),
        "model_name": registered.get("model_name"),
        "registered_version": registered.get("registered_version"),
        "deployed": bool(deployment.get("deployed", False)),
        "deployed_version": deployment.get("deployed_version"),
        "deployment_decision": deployment.get("reason"),
        "endpoint": deployment.get("endpoint_name"),
        "endpoint_location": deployment.get("endpoint_location"),
        # The surface of the latest habitat map (None without covariate rasters or before a map is made).
        "suitability_raster": habitat.get("suitability_raster"),
        # Where the map extrapolates (MESS < 0): share of the site's points, and of the surface's cells.
        "extrapolated_share": habitat.get("extrapolated_share"),
        "surface_extrapolated_share": habitat.get("surface_extrapolated_share"),
        "correlation_id": model.get("correlation_id") or prepared.get("correlation_id"),
    }


def run_partition(
    instance: dg.DagsterInstance,
    site: str,
    species: str,
    *,
    quiet: bool = False,
    **settings: Any,
) -> PartitionOutcome:
    """Train one partition through Dagster, then register and (past the gate) deploy its model and map it."""
    from biodiv_core.naming import slugify
    from biodiv_dagster.deployment.upstream import run_record

    check_inputs(site, species)
    import_in_background()
    key = str(partition_key(slugify(site, "site"), slugify(species)))
    before_deployment = latest_storage_id(instance, "batch_deployment")
    correlation_id = new_correlation_id()
    result = train_partition(
        instance,
        site,
        species,
        correlation_id=correlation_id,
        quiet=quiet,
        **settings,
    )
    model = run_record(instance, "deployable_model", key, result.run_id)
    registration = register_model(instance, model, quiet=quiet) if model is not None else None
    maps = map_new_deployments(instance, before_deployment, partitions={key}, quiet=quiet)
    summary = partition_summary(instance, key, run_ids=(result.run_id, registration, *reversed(maps)))
    summary["correlation_id"] = correlation_id
    return PartitionOutcome(site, species, key, correlation_id, result.run_id, summary)
