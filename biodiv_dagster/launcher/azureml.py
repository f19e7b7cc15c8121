"""The AzureML step launcher: each step is an `azure.ai.ml.command` job run through Dagster Pipes.

- code: the repository root (`.amlignore` keeps tests, data and local state out of the snapshot);
- environment: `azureml_steps/environment.yml` registered with a content-hash version (`azure_env`);
- inputs: data assets pinned to an explicit version (`azure_data`), upstream outputs as datastore URIs;
- outputs: ``azureml://datastores/<ds>/paths/<asset>/<site>/<species>/<run_id>/`` (DESIGN section 5).
  The job mounts the *parent* folder read-write and the step writes ``<mount>/<run_id>`` in place, its
  marker file last (`OutputCommit.MARKER`: blobfuse cannot rename a directory); downstream steps and
  `canonical_results` refuse a folder without the marker;
- Pipes: context and messages through a Blob container (`BiodivAzureMLClient`), keyed by job name.

Settings come from the environment (`AzureMLSettings.from_env`), the workspace client from
`azure_settings.make_ml_client` (tests replace it with a fake).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg

from biodiv_core.atomic import OutputCommit
from biodiv_core.naming import slugify
from biodiv_core.settings import REPO_ROOT
from biodiv_dagster.azure_settings import AzureMLSettings
from biodiv_dagster.launcher.base import StepLauncher, with_metadata
from biodiv_dagster.launcher.spec import StepSpec
from biodiv_dagster.partitions import split_partition_key

DATA_ASSET_PREFIX = "azureml:"


def datastore_uri(datastore: str, *parts: str) -> str:
    path = "/".join(part.strip("/") for part in parts if part)
    return f"azureml://datastores/{datastore}/paths/{path}/"


class AzureMLStepLauncher(StepLauncher):
    """Steps as AzureML command jobs; settings from the environment (`AzureMLSettings.from_env`)."""

    def azure_settings(self) -> AzureMLSettings:
        return AzureMLSettings.from_env()

    def output_location(self, asset: str, site: str, species: str, run_id: str) -> str:
        settings = self.azure_settings()
        return datastore_uri(settings.datastore, asset, slugify(site, "site"), slugify(species), run_id)

    def data_input(self, asset: str, version: int | None = None) -> tuple[str, int]:
        from biodiv_dagster.azure_data import resolve_data_version

        resolved = resolve_data_version(self.azure_settings().ml_client(), asset, version)
        return f"{DATA_ASSET_PREFIX}{asset}:{resolved}", resolved

    def run_step(self, context: dg.AssetExecutionContext, spec: StepSpec) -> Sequence[dg.MaterializeResult]:
        return run_job(self.azure_settings(), context, spec)

    def output_commit(self) -> OutputCommit:
        return OutputCommit.MARKER  # outputs are blobfuse read-write mounts: no directory rename there


def job_name(run_id: str, step: str, partition: str | None, retry_number: int) -> str:
    """Deterministic job name for one attempt of a step in a run (AzureML job names are workspace-unique).

    A restarted step computes the same name and reattaches; a retry (new attempt) gets a new one.
    """
    digest = hashlib.sha256(f"{run_id}|{step}|{partition or ''}".encode()).hexdigest()[:10]
    return f"biodiv-{step.replace('_', '-')}-{run_id[:8]}-{digest}-a{retry_number}"


def job_tags(context: dg.AssetExecutionContext, spec: Any, partition: str | None) -> dict[str, str]:
    tags: dict[str, Any] = {
        "correlation_id": spec.correlation_id,
        "dagster_run_id": context.run_id,
        "step": spec.step,
        "partition": partition,
        "retry_number": context.retry_number,
    }
    if partition and "|" in partition:
        tags["site"], tags["species"] = split_partition_key(partition)
    # The service rejects null tag values: drop them, stringify the rest.
    return {key: str(value) for key, value in tags.items() if value is not None and str(value) != ""}


def _input_type(location: str) -> str:
    from azure.ai.ml.constants import AssetTypes

    if location.startswith(DATA_ASSET_PREFIX) and not location.startswith("azureml://"):
        return AssetTypes.URI_FOLDER  # a registered data asset (our data assets are folders)
    if "://" in location:
        return (
            AssetTypes.URI_FILE
            if PurePosixPath(location.rstrip("/")).suffix and not location.endswith("/")
            else (AssetTypes.URI_FOLDER)
        )
    return AssetTypes.URI_FILE if Path(location).is_file() else AssetTypes.URI_FOLDER


def _identifier(option: str) -> str:
    return option.replace("-", "_")


def build_command(
    spec: Any,
    settings: AzureMLSettings,
    *,
    name: str,
    environment: str,
    tags: Mapping[str, str],
    display_name: str,
    code: str | Path = REPO_ROOT,
):
    """The command job of one step (not submitted)."""
    from azure.ai.ml import Input, Output, command
    from azure.ai.ml.constants import InputOutputModes

    inputs, input_args = {}, {}
    for option, location in spec.inputs.items():
        key = _identifier(option)
        inputs[key] = Input(type=_input_type(location), path=location)
        input_args[option] = f"${{{{inputs.{key}}}}}"
    outputs, output_args = {}, {}
    for option, location in spec.outputs.items():
        key = _identifier(option)
        parent, leaf = location.rstrip("/").rsplit("/", 1)
        outputs[key] = Output(type="uri_folder", path=parent + "/", mode=InputOutputModes.RW_MOUNT)
        output_args[option] = f"${{{{outputs.{key}}}}}/{leaf}"
    arguments = spec.arguments(inputs=input_args, outputs=output_args)
    command_line = " ".join(["python", "-m", spec.module, *(shlex.quote(arg) for arg in arguments)])
    env = {
        **job_env(spec),
        **settings.job_channel_env(),
        **settings.job_identity_env(),  # AZURE_CLIENT_ID of a user-assigned job identity, when configured
        "BIODIV_PIPES_MESSAGE_INTERVAL": str(settings.message_interval_seconds),
    }
    return command(
        name=name,
        display_name=display_name,
        experiment_name=settings.experiment_name,
        command=command_line,
        code=str(code),
        environment=environment,
        compute=settings.compute,
        inputs=inputs,
        outputs=outputs,
        tags=dict(tags),
        environment_variables=env,
    )


def job_env(spec: Any) -> dict[str, str]:
    """Step environment in the job; no BIODIV_HOME / MLFLOW_TRACKING_URI (AzureML sets the workspace tracking URI)."""
    env = {"BIODIV_CORRELATION_ID": spec.correlation_id, "PYTHONUNBUFFERED": "1"}
    threads = spec.params.get("num_threads")
    if threads:
        env.update(BIODIV_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.update(getattr(spec, "env", None) or {})
    return env


def _partition(context: dg.AssetExecutionContext) -> str | None:
    return str(context.partition_key) if context.has_partition_key else None


def run_job(
    settings: AzureMLSettings, context: dg.AssetExecutionContext, spec: StepSpec
) -> Sequence[dg.MaterializeResult]:
    from biodiv_dagster.azure_env import ensure_environment
    from biodiv_dagster.launcher.azureml_client import (
        BiodivAzureMLClient,
        KeyedContextInjector,
        KeyedMessageReader,
    )
    from biodiv_dagster.launcher.azureml_failures import storage_failure
    from biodiv_dagster.launcher.azureml_insights import track

    ml_client = settings.ml_client()
    blob_client = settings.blob_service_client()
    ensure_container(blob_client, settings.pipes_container)

    partition = _partition(context)
    name = job_name(context.run_id, spec.step, partition, context.retry_number)
    environment = ensure_environment(ml_client, settings, log=context.log)
    display = f"{spec.step} {partition.replace('|', '/')}" if partition else spec.step
    job = build_command(
        spec,
        settings,
        name=name,
        environment=environment,
        tags=job_tags(context, spec, partition),
        display_name=display,
    )
    client = BiodivAzureMLClient(
        ml_client,
        KeyedContextInjector(container=settings.pipes_container, client=blob_client, key_prefix=name),
        KeyedMessageReader(
            container=settings.pipes_container,
            client=blob_client,
            key_prefix=name,
            interval=min(settings.message_interval_seconds, settings.poll_interval_seconds),
        ),
        poll_interval_seconds=settings.poll_interval_seconds,
        stuck_timeout_seconds=settings.stuck_timeout_seconds,
        max_job_retries=settings.max_job_retries,
        retry_delay_seconds=settings.retry_delay_seconds,
    )
    dims = {"job_name": name, "partition": partition, "step": spec.step, "dagster_run_id": context.run_id}
    track(f"azureml step {spec.step} starting", spec.correlation_id, **dims)
    try:
        invocation = client.run(context=context, command=job)
    except dg.Failure as failure:
        track(f"azureml step {spec.step} failed: {failure}", spec.correlation_id, **dims)
        storage = storage_failure(failure, spec)  # the local path's one line, metadata and retraction
        if storage is not None:
            raise storage from failure
        raise
    except BaseException as exc:
        track(f"azureml step {spec.step} failed: {exc}", spec.correlation_id, **dims)
        raise
    track(f"azureml step {spec.step} completed", spec.correlation_id, **dims)
    job_metadata = invocation.metadata
    results = invocation.get_results(implicit_materializations=False)
    return [canonical_paths(result, spec, job_metadata) for result in results]


def ensure_container(blob_client: Any, container: str) -> None:
    from azure.core.exceptions import ResourceExistsError

    try:
        blob_client.create_container(container)
    except ResourceExistsError:
        pass


def canonical_paths(result: dg.MaterializeResult, spec: Any, extra: Mapping[str, Any]) -> dg.MaterializeResult:
    """Replace the job-side mount path in every text/path value (model_uri, model_path...) by the datastore URI."""
    key = result.asset_key.to_user_string() if result.asset_key else None
    option = next((opt for opt, asset in spec.asset_keys.items() if asset == key), None)
    metadata = dict(result.metadata or {})
    seen = metadata.get("path")
    seen_path = str(seen.value if isinstance(seen, dg.MetadataValue) else seen or "").rstrip("/")
    if option is not None and seen_path:
        location = spec.outputs[option].rstrip("/")
        for field, value in list(metadata.items()):
            metadata[field] = _relocate(value, seen_path, location)
    metadata.update(extra)
    return with_metadata(result, metadata)


def _relocate(value: Any, seen: str, location: str) -> Any:
    raw = value.value if isinstance(value, dg.MetadataValue) else value
    if not isinstance(raw, str):
        return value
    for prefix in (seen, "file://" + seen):
        if raw == prefix or raw.startswith(prefix + "/"):
            moved = location + raw[len(prefix) :]
            if isinstance(value, dg.PathMetadataValue):
                return dg.MetadataValue.path(moved)
            if isinstance(value, dg.UrlMetadataValue):
                return dg.MetadataValue.url(moved)
            return dg.MetadataValue.text(moved) if isinstance(value, dg.MetadataValue) else moved
    return value
