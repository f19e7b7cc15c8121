"""`registered_model` and `batch_deployment`: register each partition's model, gate it, deploy it.

Both read upstream materialization metadata from the instance (model URI from deployable_model, ROC-AUC
from scores) and talk to the registry and endpoints only through the `deployment_backend` resource.
"""

import functools

import dagster as dg

from biodiv_core import naming
from biodiv_core.errors import BiodivError
from biodiv_dagster import mlflow_links
from biodiv_dagster.correlation import CORRELATION_TAG, correlation_id_from_tags
from biodiv_dagster.deployment import gate
from biodiv_dagster.deployment.backend import DeploymentBackend
from biodiv_dagster.deployment.rollback import deploy_or_roll_back
from biodiv_dagster.deployment.serial import deployment_lock
from biodiv_dagster.deployment.upstream import (
    STORAGE_ID_TAG,
    display_names,
    latest_record,
    matching_record,
    metadata_values,
    require,
    run_record,
)
from biodiv_dagster.partitions import site_species_partitions
from biodiv_dagster.retry import STEP_RETRY_POLICY

GROUP = "biodiv"
SERIAL_TAG = "biodiv/registration"
# Registration runs go ahead of queued training runs: in a backfill each model is deployed while the others
# train, instead of every registration queueing behind the last training run.
PRIORITY_TAG = "dagster/priority"
REGISTRATION_PRIORITY = "1"


def serial_tags(partition: str) -> dict[str, str]:
    """Tags of a daemon run that registers/deploys ``partition``: one such run per partition at a time (the limit
    per unique value in config/dagster.yaml), ahead of training runs. Other partitions' run alongside."""
    return {SERIAL_TAG: str(partition), PRIORITY_TAG: REGISTRATION_PRIORITY}


class QualityGate(dg.ConfigurableResource):
    """Deploy a new version only if its test ROC-AUC >= auc_floor and >= deployed ROC-AUC - auc_tolerance."""

    auc_floor: float = gate.DEFAULT_AUC_FLOOR
    auc_tolerance: float = gate.DEFAULT_AUC_TOLERANCE
    # Opt-in: also require test AUC - baseline AUC >= min_lift (None: no lift requirement).
    min_lift: float | None = None


def _correlation_id(context: dg.AssetExecutionContext, upstream: object) -> str:
    """The run's correlation id tag (set by the sensor), else the upstream event's, else the backfill/run id."""
    if context.run.tags.get(CORRELATION_TAG) or not upstream:
        return correlation_id_from_tags(context.run.tags, context.run.run_id)
    return str(upstream)


def _user_errors(fn):
    """Bad data/config/missing upstream: a clear failure in the UI, no traceback, no retry."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BiodivError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    return wrapper


@dg.asset(
    partitions_def=site_species_partitions,
    retry_policy=STEP_RETRY_POLICY,  # transient registry/endpoint errors; BiodivError is never retried
    deps=["deployable_model", "scores"],
    group_name=GROUP,
    kinds={"mlflow", "python"},
    owners=["team:mlops"],
    description="The partition's trained model registered in the model registry (a new version per training run), "
    "tagged with its test ROC-AUC, correlation id and partition.",
)
@_user_errors
def registered_model(context: dg.AssetExecutionContext, deployment_backend: DeploymentBackend) -> dg.MaterializeResult:
    partition = context.partition_key
    instance = context.instance
    storage_id = context.run.tags.get(STORAGE_ID_TAG)
    model_record = latest_record(instance, "deployable_model", partition, int(storage_id) if storage_id else None)
    model_meta = metadata_values(model_record.asset_materialization)
    model_uri = str(model_meta.get("model_uri") or require(model_meta, "model_path", "deployable_model", partition))
    correlation_id = _correlation_id(context, model_meta.get("correlation_id"))
    # The scores of the training run that made this model; else the newest with its correlation id.
    scores_record = run_record(instance, "scores", partition, model_record.run_id) or matching_record(
        instance, "scores", partition, model_meta.get("correlation_id")
    )
    scores_meta = metadata_values(scores_record.asset_materialization)
    roc_auc = float(require(scores_meta, "roc_auc", "scores", partition))

    site, species = display_names(instance, partition)
    name = naming.model_name(site, species)
    version = deployment_backend.register(
        model_uri,
        name,
        tags={
            "roc_auc": roc_auc,
            "accuracy": scores_meta.get("accuracy"),
            "correlation_id": correlation_id,
            "partition": str(partition),
            "site": site,
            "species": species,
            "mlflow_run_id": model_meta.get("mlflow_run_id"),
            "dagster_run_id": context.run.run_id,
        },
    )
    context.log.info(f"[{correlation_id}] registered {name} version {version} from {model_uri} (ROC-AUC {roc_auc:.4f})")
    metadata = {
        "model_name": name,
        "registered_version": version,
        "registry_model_uri": f"models:/{name}/{version}",
        "model_uri": model_uri,
        "roc_auc": roc_auc,
        "correlation_id": correlation_id,
        "deployable_model_storage_id": model_record.storage_id,
    }
    if scores_meta.get("lift") is not None:  # for the gate's optional min_lift
        metadata["lift"] = float(scores_meta["lift"])
    metadata.update(mlflow_links.run_link(model_meta))  # the train_to_deploy run that logged the model
    url = deployment_backend.version_url(name, version)
    if url:
        metadata[mlflow_links.MODEL_VERSION_KEY] = dg.MetadataValue.url(url)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=site_species_partitions,
    retry_policy=STEP_RETRY_POLICY,  # transient registry/endpoint errors; BiodivError is never retried
    deps=[registered_model],
    group_name=GROUP,
    kinds={"python"},
    owners=["team:mlops"],
    description="The partition's batch endpoint and the model version it serves. A quality gate decides whether "
    "the newly registered version replaces the deployed one; the decision and its reason are in the metadata.",
)
@_user_errors
def batch_deployment(
    context: dg.AssetExecutionContext, deployment_backend: DeploymentBackend, quality_gate: QualityGate
) -> dg.MaterializeResult:
    partition = context.partition_key
    with deployment_lock(partition):  # another run of this partition may be deploying right now (serial.py)
        return _gate_and_deploy(context, deployment_backend, quality_gate, partition)


def _version_number(version: object) -> int | None:
    try:
        return int(str(version))
    except ValueError:
        return None


def _gate_and_deploy(
    context: dg.AssetExecutionContext, deployment_backend: DeploymentBackend, quality_gate: QualityGate, partition: str
) -> dg.MaterializeResult:
    # This run's own registration (a concurrent run's may be the partition's latest), else the latest.
    record = run_record(context.instance, "registered_model", partition, context.run.run_id)
    registered = metadata_values(
        (record or latest_record(context.instance, "registered_model", partition)).asset_materialization
    )
    name = str(require(registered, "model_name", "registered_model", partition))
    candidate = str(require(registered, "registered_version", "registered_model", partition))
    roc_auc = registered.get("roc_auc")
    correlation_id = _correlation_id(context, registered.get("correlation_id"))

    current = deployment_backend.deployed_version(name)
    refused = deployment_backend.not_deployable(name, candidate)  # its deployment failed, or its run was retracted
    decision = (
        _newer_deployed(current, candidate)
        or (refused and gate.GateDecision(False, f"not deployed: version {candidate} is not deployable ({refused})"))
        or gate.decide(
            float(roc_auc) if roc_auc is not None else None,
            current.roc_auc if current else None,
            has_deployed=current is not None,
            floor=quality_gate.auc_floor,
            tolerance=quality_gate.auc_tolerance,
            lift=float(registered["lift"]) if registered.get("lift") is not None else None,
            min_lift=quality_gate.min_lift,
        )
    )
    site, species = display_names(context.instance, partition)
    endpoint_name = deployment_backend.endpoint_name(site, species)
    metadata: dict[str, object] = {
        "model_name": name,
        "candidate_version": candidate,
        "deployed": decision.deploy,
        "decision": "deployed" if decision.deploy else "kept previous",
        "reason": decision.reason,
        "endpoint_name": endpoint_name,
        "correlation_id": correlation_id,
    }
    if current is not None:
        metadata["previous_version"] = current.version
    if decision.deploy:
        # A failed deployment puts the endpoint back on what it served and tags the version (rollback.py).
        previous = current.version if current else None
        endpoint = deploy_or_roll_back(
            deployment_backend, name, candidate, endpoint_name, site, species, previous, log=context.log
        )
        metadata["deployed_version"] = endpoint.version
        metadata["endpoint_location"] = endpoint.location
    elif current is not None:
        metadata["deployed_version"] = current.version
    if metadata.get("deployed_version"):
        url = deployment_backend.version_url(name, str(metadata["deployed_version"]))
        if url:
            metadata[mlflow_links.MODEL_VERSION_KEY] = dg.MetadataValue.url(url)
    context.log.info(f"[{correlation_id}] {name} v{candidate}: {decision.reason}")
    return dg.MaterializeResult(metadata=metadata)


def _newer_deployed(current, candidate: str) -> gate.GateDecision | None:
    """Keep what is deployed when it is this version or a newer one: versions are numbered in registration order,
    and a run that registered earlier but reaches the gate later must not put its older model back."""
    if current is None:
        return None
    deployed, mine = _version_number(current.version), _version_number(candidate)
    if deployed is None or mine is None or deployed < mine:
        return None
    if deployed == mine:
        return gate.GateDecision(False, f"kept: version {candidate} is already deployed")
    return gate.GateDecision(False, f"not deployed: the newer version {current.version} is already deployed")


register_and_deploy_job = dg.define_asset_job(
    "register_and_deploy_job",
    selection=dg.AssetSelection.assets(registered_model, batch_deployment),
    partitions_def=site_species_partitions,
    description="Register a partition's newest deployable model and deploy it if it passes the quality gate.",
    # The sensor's requests set serial_tags(partition): one registration run per partition at a time
    # (tag_concurrency_limits in config/dagster.yaml), so a run does not sit in the deployment lock holding a slot.
    run_tags={PRIORITY_TAG: REGISTRATION_PRIORITY},
)
