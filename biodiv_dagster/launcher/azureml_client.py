"""`PipesAzureMLClient` with what the stock client lacks (DESIGN section 5).

The stock client (dagster-azure 0.29) polls forever on NotResponding/Paused, submits a second job
when a step is restarted, raises a bare "Failed" without a reason, and names its Blob keys at random
so a restarted process cannot find the messages of a job it did not submit. Here:

- job names and Blob keys are deterministic per run + step + retry (`azureml_names.job_name`), so a
  restarted step finds its job with `jobs.get` and reads the messages that job already wrote;
- NotResponding/Paused for longer than `stuck_timeout_seconds` cancels the job and fails the step;
- a failed job raises `dg.Failure` with AzureML's error, the step's own error message (from the
  Pipes log) and the studio link; failures AzureML classes as transient become `dg.RetryRequested`;
  one on storage (full or read-only disk, a refused output upload: `azureml_failures`) is marked so, never retried;
- an interrupted Dagster run cancels the job and re-raises (the stock client swallows the interrupt);
- transient HTTP errors of the control-plane calls are retried with exponential backoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.pipes.client import PipesClientCompletedInvocation, PipesParams
from dagster._core.pipes.utils import open_pipes_session
from dagster_azure.pipes import (
    PipesAzureBlobStorageContextInjector,
    PipesAzureBlobStorageMessageReader,
    PipesAzureMLClient,
)
from dagster_pipes import PipesBlobStoreMessageWriter, PipesContextData

from biodiv_dagster.launcher.azureml_failures import STORAGE_REASON_KEY, storage_reason

COMPLETED = "Completed"
FAILED_STATES = frozenset({"Failed", "Canceled"})
STUCK_STATES = frozenset({"NotResponding", "Paused"})
TERMINAL_STATES = FAILED_STATES | {COMPLETED}
# RootError codes AzureML uses for failures that are not the step's fault (retrying may succeed).
TRANSIENT_ERROR_CODES = frozenset({"ServiceError", "TransientError", "RequestThrottled"})
_TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


def is_transient_http_error(exc: BaseException) -> bool:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and getattr(exc, "status_code", None) in _TRANSIENT_HTTP


def call_with_retry(
    fn: Callable[..., T], *args: Any, attempts: int = 5, base_delay: float = 1.0, log=None, **kwargs: Any
) -> T:
    """Call ``fn``, retrying transient HTTP errors (connection, 408/429/5xx) with exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient_http_error(exc) or attempt == attempts - 1:
                raise
            delay = base_delay * 2**attempt
            if log is not None:
                log.warning(f"[azureml] transient error ({type(exc).__name__}: {exc}); retrying in {delay:.1f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")


class KeyedContextInjector(PipesAzureBlobStorageContextInjector):
    """Context blob at a fixed key, overwritten on reattach, deleted when the session ends."""

    def __init__(self, *, container: str, client: Any, key_prefix: str):
        super().__init__(container=container, client=client)
        self.key_prefix = key_prefix

    @contextmanager
    def inject_context(self, context: PipesContextData) -> Iterator[PipesParams]:
        key = f"{self.key_prefix}/context.json"
        with self.client.get_blob_client(self.bucket, key) as blob_client:
            blob_client.upload_blob(json.dumps(context).encode("utf-8"), overwrite=True)
            try:
                yield {"bucket": self.bucket, "key": key}
            finally:
                blob_client.delete_blob()


class KeyedMessageReader(PipesAzureBlobStorageMessageReader):
    """Messages under a fixed prefix; remembers the step's last error line and exception for the failure."""

    def __init__(self, *, container: str, client: Any, key_prefix: str, interval: float = 10):
        super().__init__(container=container, client=client, interval=interval)
        self.key_prefix = key_prefix
        self.last_error: str | None = None

    @contextmanager
    def get_params(self) -> Iterator[PipesParams]:
        yield {
            "bucket": self.bucket,
            "key_prefix": f"{self.key_prefix}/messages",
            PipesBlobStoreMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: self.include_stdio_in_messages,
        }

    def download_messages(self, cursor: int | None, params: PipesParams) -> tuple[int, str] | None:
        # The stock reader takes one chunk per poll (1 s apart) and gives up 10 s after the job ends: a
        # process reattaching to a job that already wrote hundreds of chunks would lose most of them.
        # Read every chunk already there in one go instead.
        chunks = []
        while len(chunks) < 1000:
            chunk = self.download_messages_chunk(self.counter, params)
            if not chunk:
                break
            chunks.append(chunk.rstrip("\n"))
            self.counter += 1
        return (self.counter, "\n".join(chunks)) if chunks else None

    def download_messages_chunk(self, index: int, params: PipesParams) -> str | None:
        chunk = super().download_messages_chunk(index, params)
        if chunk:
            self._remember_errors(chunk)
        return chunk

    def _remember_errors(self, chunk: str) -> None:
        for line in chunk.splitlines():
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            params = message.get("params") or {}
            if message.get("method") == "log" and str(params.get("level", "")).upper() == "ERROR":
                self.last_error = params.get("message")
            elif message.get("method") == "closed" and params.get("exception"):
                exc = params["exception"]
                self.last_error = self.last_error or f"{exc.get('name')}: {exc.get('message')}"


class JobStuckError(Exception):
    pass


class BiodivAzureMLClient(PipesAzureMLClient):
    """Runs one named command job to a terminal state; see the module docstring for what it adds."""

    def __init__(
        self,
        client: Any,
        context_injector: KeyedContextInjector,
        message_reader: KeyedMessageReader,
        *,
        poll_interval_seconds: float = 10,
        stuck_timeout_seconds: float = 1800,
        cancel_timeout_seconds: float = 300,
        max_job_retries: int = 2,
        retry_delay_seconds: float = 60,
    ):
        super().__init__(client, context_injector, message_reader, poll_interval_seconds, forward_termination=True)
        self.stuck_timeout_seconds = stuck_timeout_seconds
        self.cancel_timeout_seconds = cancel_timeout_seconds
        self.max_job_retries = max_job_retries
        self.retry_delay_seconds = retry_delay_seconds

    def run(  # ty: ignore[invalid-method-override]
        self, *, context: dg.AssetExecutionContext, command: Any, extras: dict | None = None
    ) -> PipesClientCompletedInvocation:
        if not command.name:
            raise ValueError("The command job needs a deterministic name so a restarted step can reattach to it.")
        with open_pipes_session(
            context=context,
            extras=extras,
            context_injector=self.context_injector,
            message_reader=self.message_reader,
        ) as pipes_session:
            command.environment_variables = {
                **(command.environment_variables or {}),
                **pipes_session.get_bootstrap_env_vars(),
            }
            job = self._submit_or_reattach(context, command)
            try:
                job = self._wait(context, job.name)
            except (DagsterExecutionInterruptedError, KeyboardInterrupt):
                context.log.info(f"[azureml] run interrupted: canceling job {job.name}")
                self._cancel(context, job.name)
                raise
            except JobStuckError as exc:
                self._cancel(context, job.name)
                stuck = exc
            else:
                stuck = None
        # The session is closed: every message the job wrote has been read (and its error remembered).
        if stuck is not None:
            raise dg.Failure(
                description=f"AzureML job {job.name} {stuck}. Canceled it. Job: {job.studio_url or 'n/a'}",
                metadata=_job_metadata(job),
            )
        if job_status(job) != COMPLETED:
            self._raise_failure(context, job)
        return PipesClientCompletedInvocation(pipes_session, metadata=_job_metadata(job))

    # --- submission -------------------------------------------------------------------------------

    def _get_job(self, name: str, context=None):
        return call_with_retry(self.client.jobs.get, name, log=context.log if context else None)

    def _find_job(self, name: str, context):
        try:
            return self._get_job(name, context)
        except ResourceNotFoundError:
            return None

    def _submit_or_reattach(self, context, command):
        existing = self._find_job(command.name, context)
        if existing is not None:
            context.log.info(
                f"[azureml] reattaching to job {existing.name} (status {job_status(existing)}) submitted earlier "
                "for this run and step; not submitting again"
            )
            return existing
        # Creating is retried only after checking the job does not exist: a lost response to a
        # successful create must not turn into a second job.
        for attempt in range(5):
            try:
                job = self.client.create_or_update(command)
            except Exception as exc:
                if not is_transient_http_error(exc) or attempt == 4:
                    raise
                time.sleep(2**attempt)
                existing = self._find_job(command.name, context)
                if existing is not None:
                    return existing
                continue
            context.log.info(f"[azureml] submitted job {job.name}: {job.studio_url or ''}")
            return job
        raise AssertionError("unreachable")

    # --- waiting --------------------------------------------------------------------------------

    def _wait(self, context, name: str):
        last_status = None
        stuck_since: float | None = None
        while True:
            job = self._get_job(name, context)
            status = job_status(job)
            if status != last_status:
                context.log.info(f"[azureml] job {name} is {status}")
                last_status = status
            if status in TERMINAL_STATES:
                return job
            if status in STUCK_STATES:
                stuck_since = stuck_since if stuck_since is not None else time.monotonic()
                if time.monotonic() - stuck_since > self.stuck_timeout_seconds:
                    raise JobStuckError(f"stayed {status} for more than {self.stuck_timeout_seconds:g}s")
            else:
                stuck_since = None
            time.sleep(self.poll_interval_seconds)

    def _cancel(self, context, name: str) -> None:
        try:
            call_with_retry(self.client.jobs.begin_cancel, name, log=context.log)
        except Exception as exc:  # the job may have finished meanwhile; say so and move on
            context.log.warning(f"[azureml] could not cancel job {name}: {exc}")
            return
        deadline = time.monotonic() + self.cancel_timeout_seconds
        while time.monotonic() < deadline:
            if job_status(self._get_job(name, context)) in TERMINAL_STATES:
                context.log.info(f"[azureml] job {name} canceled")
                return
            time.sleep(self.poll_interval_seconds)
        context.log.warning(f"[azureml] job {name} not terminal {self.cancel_timeout_seconds:g}s after cancel")

    # --- failures -------------------------------------------------------------------------------

    def _raise_failure(self, context, job) -> None:
        code, reason = failure_reason(self.client, job.name)
        step_error = self.message_reader.last_error
        parts = [f"AzureML job {job.name} ended {job_status(job)}"]
        if step_error:
            parts.append(f"step error: {step_error}")
        if reason:
            parts.append(f"AzureML: {reason}")
        parts.append(f"Job: {job.studio_url or 'n/a'}")
        metadata = _job_metadata(job)
        # A full or read-only disk, or a refused output upload, fails the same way on every retry (as locally).
        storage = storage_reason([step_error, reason]) if job_status(job) == "Failed" else None
        if storage is not None:
            metadata[STORAGE_REASON_KEY] = storage
        # A step's own error (bad data, config: AzureML says UserError) fails the same way on every retry.
        failure = dg.Failure(
            description=". ".join(parts), metadata=metadata, allow_retries=code != "UserError" and storage is None
        )
        if (
            job_status(job) == "Failed"
            and code in TRANSIENT_ERROR_CODES
            and storage is None
            and self.max_job_retries > 0
        ):
            context.log.warning(f"[azureml] {failure.description}: transient, asking Dagster to retry")
            raise dg.RetryRequested(
                max_retries=self.max_job_retries, seconds_to_wait=self.retry_delay_seconds
            ) from failure
        raise failure


def job_status(job: Any) -> str:
    """The status as plain text (azure-ai-ml hands back a str enum that prints as JobStatus.FAILED)."""
    status = job.status
    return str(getattr(status, "value", status))


def failure_reason(ml_client: Any, name: str) -> tuple[str | None, str | None]:
    """(error code, message) AzureML recorded for a job, from run history (what `jobs.stream` prints)."""
    try:
        # Private in azure-ai-ml 1.35 but the only way to the run's error besides streaming its logs.
        details = ml_client.jobs._runs_operations.get_run_details(name)
        error = details.error.error if details.error is not None else None
    except Exception:
        return None, None
    if error is None:
        return None, None
    return error.code, error.message


def _job_metadata(job) -> dict[str, Any]:
    metadata: dict[str, Any] = {"azureml_job": job.name}
    if job.studio_url:
        metadata["azureml_studio_url"] = dg.MetadataValue.url(job.studio_url)
    return metadata
