"""A registered version that must not be served: its deployment failed, or its training run was retracted.

Expected behaviour, on every backend (`DeploymentBackend.withdraw`):
- the version stays in the registry (its history is kept) but is tagged ``deployable=false`` with the reason; the
  quality gate never deploys it and no rollback goes back to it;
- the endpoint keeps (or gets back) the version it served before: the newest other version that was deployed and
  is still deployable; when there is none, the endpoint is taken down (local: the ``deployed`` alias and the
  endpoint record removed; AzureML: the batch endpoint deleted) rather than serve that version;
- one line says what happened (`withdrawn_line`): in the failure of `batch_deployment`, in the event log of a
  retracted run, and on the terminal of `biodiv run`/`main`.

A deployment that fails transiently (HTTP 5xx/timeouts, "database is locked") is rolled back the same way but not
tagged: Dagster's retry policy deploys it again.
"""

from __future__ import annotations

import logging

import dagster as dg

from biodiv_dagster.deployment.backend import DeploymentBackend, EndpointInfo
from biodiv_dagster.deployment.upstream import display_names, metadata_values
from biodiv_dagster.retraction import SCAN_WINDOW, retract_if_storage_failure, storage_failure

logger = logging.getLogger(__name__)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def transient(exc: BaseException) -> bool:
    """A failure a retry may not meet again (not the version's fault)."""
    from biodiv_dagster.launcher.azureml_client import is_transient_http_error

    if is_transient_http_error(exc) or isinstance(exc, TimeoutError | ConnectionError):
        return True
    return "database is locked" in str(exc)  # SQLite (MLflow's store, the instance) busy past its timeout


def withdrawn_line(name: str, version: str, endpoint_name: str, served: str | None, marked: bool = True) -> str:
    what = f"{name} version {version} is marked not deployable" if marked else f"{name} version {version} is not served"
    if served is None:
        return f"{what}; endpoint {endpoint_name} serves no version now (none deployed before is deployable)."
    return f"{what}; endpoint {endpoint_name} serves version {served}."


def deploy_or_roll_back(
    backend: DeploymentBackend,
    name: str,
    version: str,
    endpoint_name: str,
    site: str,
    species: str,
    previous: str | None,
    log=logger,
) -> EndpointInfo:
    """``backend.deploy``; if it fails, the endpoint is put back on ``previous`` and the version is withdrawn."""
    try:
        return backend.deploy(name, version, endpoint_name, site, species)
    except Exception as exc:
        cause = _one_line(exc)
        retry = transient(exc)
        reason = f"deployment to {endpoint_name} failed: {cause}"
        try:
            if retry:
                served = backend.restore(name, version, endpoint_name, site, species, previous=previous)
            else:
                served = backend.withdraw(name, version, reason, endpoint_name, site, species, previous=previous)
        except Exception as undo:
            raise dg.Failure(
                description=f"{name} version {version} could not be deployed ({cause}), and putting endpoint "
                f"{endpoint_name} back failed too ({_one_line(undo)}): check what it serves before scoring.",
                allow_retries=False,
            ) from exc
        line = withdrawn_line(name, version, endpoint_name, served, marked=not retry)
        log.warning(f"{name} version {version} could not be deployed ({cause}): {line}")
        if retry:
            raise
        raise dg.Failure(
            description=f"{name} version {version} could not be deployed ({cause}): {line}",
            metadata={"model_name": name, "candidate_version": version, "served_version": served or ""},
            allow_retries=False,
        ) from exc


def withdraw_retracted_models(
    instance: dg.DagsterInstance, run_id: str, reason: str, backend: DeploymentBackend | None = None
) -> list[str]:
    """Withdraw every version registered from a deployable_model of the retracted run ``run_id``; one line each."""
    run = instance.get_run_by_id(run_id)
    partition = run.tags.get("dagster/partition") if run is not None else None
    # The run's own partition when it has one: in a backfill the run's event may be far down the asset's history.
    models_filter = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("deployable_model"), asset_partitions=[partition] if partition else None
    )
    run_models = {
        record.storage_id: str(record.partition_key)
        for record in instance.fetch_materializations(models_filter, limit=SCAN_WINDOW).records
        if record.run_id == run_id and record.partition_key
    }
    if not run_models:
        return []
    if backend is None:
        from biodiv_dagster.backends import deployment_backend_from_env

        backend = deployment_backend_from_env()
    lines, seen = [], set()
    partitions = sorted(set(run_models.values()))
    registered = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("registered_model"), asset_partitions=partitions), limit=SCAN_WINDOW
    ).records
    for record in registered:
        metadata = metadata_values(record.asset_materialization)
        partition = run_models.get(int(metadata.get("deployable_model_storage_id") or -1))
        key = (metadata.get("model_name"), metadata.get("registered_version"))
        if partition is None or None in key or key in seen:
            continue
        seen.add(key)
        name, version = str(key[0]), str(key[1])
        site, species = display_names(instance, partition)
        endpoint_name = backend.endpoint_name(site, species)
        why = f"its training run {run_id} was retracted ({reason})"
        served = backend.withdraw(name, version, why, endpoint_name, site, species)
        lines.append(f"{withdrawn_line(name, version, endpoint_name, served)} Reason: {why}.")
    return lines


def retract_and_withdraw(instance: dg.DagsterInstance, run_id: str, log=logger) -> list[str]:
    """`retract_if_storage_failure`, then the registry and endpoints (`withdraw_retracted_models`). Never raises."""
    retracted = retract_if_storage_failure(instance, run_id)
    if retracted:
        log.warning(f"run {run_id} failed on storage: retracted {retracted}")
    if "deployable_model" not in retracted:
        return []
    try:
        reason = storage_failure(instance, run_id) or "failed on storage"
        lines = withdraw_retracted_models(instance, run_id, reason)
    except Exception as exc:  # the run's own failure is what the user must see
        log.warning(f"could not withdraw the models of retracted run {run_id}: {_one_line(exc)}")
        return []
    run = instance.get_run_by_id(run_id)
    for line in lines:
        log.warning(line)
        if run is not None:
            instance.report_engine_event(line, run)
    return lines


@dg.run_failure_sensor(
    name="storage_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
    description="Retracts the outputs of a run that failed on a full or read-only disk (biodiv_dagster/retraction.py) "
    "and withdraws any model version registered from them (deployment/rollback.py).",
)
def storage_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    retract_and_withdraw(context.instance, context.dagster_run.run_id, log=context.log)
