"""An AzureML job that failed on storage: told apart from its status, error and logs, reported as the local path does.

On the local path the step itself says it failed on a full or read-only disk (`azureml_steps._cli.storage_error`,
through ``$BIODIV_STEP_ERROR_FILE``): the step fails with one line, is not retried, and the run's finished outputs
are retracted when it ends (biodiv_dagster/retraction.py). An AzureML job has no error file; what it leaves is the
step's own error line (read from the Pipes log), the error AzureML records in run history (which may hold the tail
of the job's log), and, when the failure is AzureML's own, e.g. the upload of an output after the step ended, the
azure-core error of that upload. `storage_reason` reads those; `storage_failure` turns the job's failure into the
local path's failure: the same one line (``Step <step> failed: cannot write <where> (<reason>): ...``), the same
``storage_error`` metadata (so the same retraction), no retry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import dagster as dg

from biodiv_dagster.retraction import STORAGE_ERROR_KEY

STORAGE_REASON_KEY = "storage_reason"  # on the job failure: why it is a storage failure
# The step classified it itself: `azureml_steps._cli._user_error`'s line for a full or read-only disk.
_STEP_SAYS = re.compile(r"cannot write .*? \(([^()]+)\): free space there")
_ERRNO_REASONS = (
    (re.compile(r"No space left on device|\[Errno 28\]|\bENOSPC\b"), "No space left on device"),
    (re.compile(r"Read-only file system|\[Errno 30\]|\bEROFS\b"), "Read-only file system"),
    (re.compile(r"Disk quota exceeded|\[Errno 122\]|\bEDQUOT\b"), "Disk quota exceeded"),
)
# azure-core errors of an output upload (a blob already there, the datastore refusing the write, a full account).
_UPLOAD_ERROR = re.compile(r"\b(ResourceExistsError|HttpResponseError)\b:?\s*([^\n]*)")
_UPLOAD_CONTEXT = re.compile(r"upload|output", re.IGNORECASE)


def storage_reason(texts: Iterable[str | None]) -> str | None:
    """Why a failed job failed on storage (``No space left on device``, ``output upload failed: ...``), else None."""
    found = [text for text in texts if text]
    for text in found:
        said = _STEP_SAYS.search(text)
        if said:
            return said.group(1)
    for pattern, reason in _ERRNO_REASONS:
        if any(pattern.search(text) for text in found):
            return reason
    for text in found:
        upload = _UPLOAD_ERROR.search(text)
        if upload and _UPLOAD_CONTEXT.search(text):
            detail = upload.group(2).strip().rstrip(".")[:200]
            return f"output upload failed: {upload.group(1)}" + (f": {detail}" if detail else "")
    return None


def failure_reason(failure: dg.Failure) -> str | None:
    """The storage reason a job failure carries (set by `BiodivAzureMLClient`), else None."""
    value = (failure.metadata or {}).get(STORAGE_REASON_KEY)
    value = getattr(value, "value", value)
    return str(value) if value else None


def storage_failure(failure: dg.Failure, spec: Any) -> dg.Failure | None:
    """The job failure as the local path reports a full or read-only disk (one line, not retried, retracted)."""
    reason = failure_reason(failure)
    if reason is None:
        return None
    where = ", ".join(str(location) for location in spec.outputs.values()) or "the step's outputs"
    metadata = dict(failure.metadata or {})
    job = getattr(metadata.get("azureml_job"), "value", metadata.get("azureml_job"))
    message = (
        f"cannot write {where} ({reason}): free space there (the datastore, or the compute's disk its mounts cache "
        f"on), or give the job's identity write access to the datastore" + (f" (AzureML job {job})." if job else ".")
    )
    metadata.update(
        {
            "step": spec.step,
            "error_type": "StorageError",
            "message": message,
            "correlation_id": spec.correlation_id,
            # A full or read-only disk: the run's earlier outputs are retracted when it ends (retraction.py).
            STORAGE_ERROR_KEY: True,
        }
    )
    return dg.Failure(description=f"Step {spec.step} failed: {message}", metadata=metadata, allow_retries=False)
