"""Invoke an AzureML batch endpoint and report what its job could not score: no silent batch failures.

A batch job ends Completed even when some mini-batches failed, as long as no more than the deployment's
``error_threshold`` did (default 0: one bad file fails the job). Either way the caller learns which files failed:
the scoring script (`azureml_steps/batch_scoring.py`) raises for a file it cannot score with the line
``failed file "<path>": <reason>`` (`biodiv_core.serving.batch_scoring.failed_file_line`), which the batch driver
writes to the job's logs (``logs/user/error/...``);
`batch_job_report` downloads the logs of the job and of its child runs (``jobs.list(parent_job_name=...)``,
``jobs.download(all=True)``, what azure-ai-ml exposes) and collects those lines. One file per mini-batch
(``MINI_BATCH_SIZE``), so failed mini-batches = failed files.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biodiv_core.serving.batch_scoring import failed_files_in
from biodiv_dagster.launcher.azureml_client import TERMINAL_STATES, job_status

PREDICTIONS_FILE = "predictions.csv"  # the deployments' output_file_name (deployment.azureml.OUTPUT_FILE_NAME)


@dataclass(frozen=True)
class BatchJobReport:
    job_name: str
    status: str
    failed_files: tuple[str, ...]
    studio_url: str | None = None

    @property
    def failed_mini_batches(self) -> int:
        return len(self.failed_files)

    def summary(self) -> dict[str, Any]:
        return {
            "batch_job": self.job_name,
            "status": self.status,
            "failed_mini_batches": self.failed_mini_batches,
            "failed_files": list(self.failed_files),
            "studio_url": self.studio_url,
        }

    def failure_line(self) -> str | None:
        """One line naming every failed file, or None when the job scored everything."""
        if self.status == "Completed" and not self.failed_files:
            return None
        files = ", ".join(self.failed_files) or "no file named in the logs"
        where = f" (logs: {self.studio_url})" if self.studio_url else ""
        return (
            f"batch job {self.job_name} ended {self.status} with {self.failed_mini_batches} failed mini-batch(es): "
            f"{files}{where}; fix those files (see `biodiv batch-score --help` for the columns) and invoke again."
        )


def wait_for_job(ml_client: Any, name: str, poll_seconds: float, timeout_seconds: float | None) -> Any:
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        job = ml_client.jobs.get(name)
        if job_status(job) in TERMINAL_STATES:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"batch job {name} still {job_status(job)} after {timeout_seconds:.0f}s")
        time.sleep(poll_seconds)


def batch_job_report(ml_client: Any, job: Any, download_to: Path | None = None) -> BatchJobReport:
    """What a finished batch job could not score, from its logs and its child runs' logs."""
    folder = Path(download_to or tempfile.mkdtemp(prefix="biodiv-batch-logs-"))
    names = [job.name, *(child.name for child in ml_client.jobs.list(parent_job_name=job.name))]
    for name in names:
        ml_client.jobs.download(name, download_path=str(folder / name), all=True)
    studio = (getattr(job, "services", None) or {}).get("Studio")
    return BatchJobReport(
        job_name=job.name,
        status=job_status(job),
        failed_files=failed_files_in(folder),
        studio_url=getattr(studio, "endpoint", None),
    )


def invoke_and_report(
    ml_client: Any,
    endpoint_name: str,
    input_path: str,
    output: str | Path,
    *,
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
) -> BatchJobReport:
    """Invoke ``endpoint_name`` on ``input_path`` (a folder: local, uploaded by the SDK, or a datastore URI), wait,
    copy the predictions to ``output`` when there are any, and report the failed mini-batches."""
    import shutil

    from azure.ai.ml import Input
    from azure.ai.ml.constants import AssetTypes

    started = ml_client.batch_endpoints.invoke(
        endpoint_name=endpoint_name, inputs={"input": Input(type=AssetTypes.URI_FOLDER, path=str(input_path))}
    )
    job = wait_for_job(ml_client, started.name, poll_seconds, timeout_seconds)
    with tempfile.TemporaryDirectory(prefix="biodiv-batch-job-") as scratch:
        report = batch_job_report(ml_client, job, Path(scratch))
        predictions = sorted(Path(scratch, job.name).rglob(PREDICTIONS_FILE))
        if predictions:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(predictions[0], output)
    return report
