"""A fake `azure.ai.ml.MLClient` that runs command jobs for real, in subprocesses, with no network.

What is real: every entity our code submits goes through azure-ai-ml's own validation and REST
serialization (`Command._validate`, `to_rest_job_object`, `Entity._to_rest_object`), and job objects
handed back are rebuilt from that REST body by azure-ai-ml (`Job._from_rest_object`), as the service's
answer would be. A job's command runs in a code snapshot built with azure-ai-ml's `.amlignore`
handling, with `${{inputs.x}}` / `${{outputs.x}}` replaced by local folders:

- ``azureml:<name>:<version>`` -> the folder registered for that data asset version,
- ``azureml://datastores/<ds>/paths/<p>`` -> ``<root>/datastores/<ds>/<p>`` (outputs are created, as a mount is,
  and refuse directory renames inside them as blobfuse does: ``fake_job_site/sitecustomize.py``),
- a local path -> itself (the SDK would upload it).

Models: the registry rewrites a short datastore path to the long ``azureml://subscriptions/...`` form (as the SDK
does before sending it); a model registered from ``azureml://jobs/<run>/outputs/artifacts/paths/<p>`` is copied from
the MLflow run ``<run>`` of the fake's tracking store (on AzureML a job's MLflow run id is the job name) to the
artifact datastore, and names the run in ``job_name``. ``models.download`` writes ``<dir>/<name>/<folder>/`` as the
SDK does. Batch deployments with a scoring script get their code folder snapshotted (the SDK uploads it) and need
an environment.

What is emulated: statuses (Starting, Queued, Running, Finalizing, then Completed / Failed / Canceled),
run-history errors (`jobs._runs_operations.get_run_details`), the MLflow tracking URI AzureML puts in
a job's environment, the studio link, versioning of models, and long-running-operation pollers.
Per-step behaviours (``client.jobs.behaviours[step] = ...``) script what real jobs do rarely:
"NotResponding", "hang" (Running until canceled), "transient" (Failed with a ServiceError),
"transient_once" (only the first job of the step), "output_full" / "output_read_only" (the job's writes into
its output mounts fail with ENOSPC / EROFS), "upload_conflict" (the command succeeds, the output upload fails with
an azure-core ResourceExistsError).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceResponseError,
)

STUDIO = "https://ml.azure.com/runs/{name}?wsid=/subscriptions/fake/resourcegroups/rg/workspaces/ws"
LOCATION = "westeurope"
WORKSPACE_ID = "/subscriptions/fake/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
LONG_DATASTORE_URI = "azureml://subscriptions/fake/resourcegroups/rg/workspaces/ws/datastores/{datastore}/paths/{path}"
DATASTORE_URI = re.compile(
    r"azureml://(?:subscriptions/[^/]+/resource[gG]roups/[^/]+/(?:providers/Microsoft\.MachineLearningServices/)?"
    r"workspaces/[^/]+/)?datastores/([^/]+)/paths/(.*)"
)
JOB_ARTIFACT_URI = re.compile(r"azureml://jobs/([^/]+)/outputs/artifacts/paths/(.+?)/?")
ARTIFACT_DATASTORE = "workspaceartifactstore"
FAKE_JOB_SITE = Path(__file__).parent / "fake_job_site"  # sitecustomize: no editable biodiv, blobfuse renames
# Behaviours whose job process finds its output mounts full / read-only (errno name for fake_job_site).
FULL_MOUNT_ERRNOS = {"output_full": "ENOSPC", "output_read_only": "EROFS"}
# What run history says when the upload of a job's output fails after its command ended.
UPLOAD_CONFLICT = (
    "Failed to upload outputs of the job: azure.core.exceptions.ResourceExistsError: The specified blob already "
    "exists. ErrorCode:BlobAlreadyExists"
)


class FakePoller:
    """What `begin_*` operations return: `.result()`, `.done()`, `.wait()`."""

    def __init__(self, result: Any = None):
        self._result = result

    def result(self, timeout: float | None = None) -> Any:
        return self._result

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None


class FailedPoller(FakePoller):
    """A long-running operation that ended in failure: `.result()` raises, as azure-core's poller does."""

    def __init__(self, error: Exception):
        super().__init__()
        self._error = error

    def result(self, timeout: float | None = None) -> Any:
        raise self._error


def _not_found(kind: str, name: str, version: Any = None) -> ResourceNotFoundError:
    label = f"{name}:{version}" if version is not None else name
    return ResourceNotFoundError(f"(UserError) {kind} {label} not found in workspace ws")


# --- jobs ---------------------------------------------------------------------------------------


@dataclass
class FakeJob:
    name: str
    rest: Any  # the REST body azure-ai-ml built from our entity
    step: str | None
    status: str = "Starting"
    error_code: str | None = None
    error_message: str | None = None
    process: subprocess.Popen | None = None
    cancel_requested: bool = False
    log_dir: Path | None = None
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)


class _RunDetailsOperations:
    """`jobs._runs_operations`: run history, where AzureML keeps a failed job's error."""

    def __init__(self, jobs: FakeJobOperations):
        self._jobs = jobs

    def get_run_details(self, name: str):
        from azure.ai.ml._restclient.runhistory.models import RootError, RunDetails, RunHistoryErrorResponse

        job = self._jobs._get_record(name)
        error = None
        if job.error_code:
            error = RunHistoryErrorResponse(error=RootError(code=job.error_code, message=job.error_message))
        return RunDetails(run_id=name, status=job.status, error=error)


class FakeJobOperations:
    def __init__(self, client: FakeMLClient):
        self._client = client
        self._jobs: dict[str, FakeJob] = {}
        self._lock = threading.Lock()
        self._runs_operations = _RunDetailsOperations(self)
        self.behaviours: dict[str, str] = {}  # step -> "NotResponding" | "hang" | "transient"
        self.created: list[str] = []  # names in submission order
        self.canceled: list[str] = []
        self._transient_seen: set[str | None] = set()
        self.flaky_gets = 0  # the next N `get` calls fail with a transient connection error

    # public API used by our code and by PipesAzureMLClient
    def create_or_update(self, job: Any, **kwargs: Any):
        from azure.ai.ml.entities import Command
        from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object

        if not isinstance(job, Command):
            raise TypeError(f"the fake runs command jobs only, got {type(job).__name__}")
        job._validate(raise_error=True)  # what JobOperations.create_or_update does before sending
        if not job.name:
            raise ValueError("fake: submit jobs with an explicit name")
        with self._lock:
            if job.name in self._jobs:
                raise ResourceExistsError(f"(UserError) A job with name {job.name} already exists")
            self._client.environments._resolve(job.environment)
            if not job.code or not Path(job.code).is_dir():
                raise ResourceNotFoundError(f"code folder {job.code} does not exist")
            if job.tags and any(value is None for value in job.tags.values()):
                raise ValueError("(UserError) tag values must not be null")
            rest = to_rest_job_object(job)
            record = FakeJob(name=job.name, rest=rest, step=(job.tags or {}).get("step"))
            self._jobs[job.name] = record
            self.created.append(job.name)
        record.thread = threading.Thread(target=self._execute, args=(record,), daemon=True)
        record.thread.start()
        return self._entity(record)

    def get(self, name: str):
        if self.flaky_gets > 0:
            self.flaky_gets -= 1
            raise ServiceResponseError("fake: connection reset by peer")
        return self._entity(self._get_record(name))

    def begin_cancel(self, name: str, **kwargs: Any) -> FakePoller:
        job = self._get_record(name)
        self.canceled.append(name)
        if job.status not in {"Completed", "Failed", "Canceled"}:
            job.cancel_requested = True
            job.status = "CancelRequested"
            if job.process is not None and job.process.poll() is None:
                job.process.terminate()
            if job.process is None:  # nothing running (queued, stuck): AzureML cancels at once
                job.status = "Canceled"
                job.done.set()
        return FakePoller()

    def list(self, parent_job_name: str | None = None, **kwargs: Any):
        if parent_job_name is not None:
            return []  # the fake's batch jobs run their driver in the job itself: no child runs
        return [self._entity(job) for job in self._jobs.values()]

    def download(self, name: str, download_path: str | os.PathLike = ".", all: bool = False, **kwargs: Any) -> None:
        """Logs to ``<download_path>/artifacts/``; a batch job's scoring output into ``<download_path>`` itself."""
        job = self._get_record(name)
        if job.status not in {"Completed", "Failed", "Canceled", "NotResponding"}:
            raise ValueError(f"(UserError) job {name} is {job.status}: download is allowed only in terminal states")
        folder = Path(self._client.root) / "jobs" / name
        for source, target in (
            (folder / "artifacts", Path(download_path) / "artifacts"),
            (folder / "score", Path(download_path)),
        ):
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)

    # helpers for tests
    def wait_all(self, timeout: float = 60) -> None:
        for job in list(self._jobs.values()):
            job.done.wait(timeout)

    def record(self, name: str) -> FakeJob:
        return self._get_record(name)

    def _get_record(self, name: str) -> FakeJob:
        try:
            return self._jobs[name]
        except KeyError:
            raise _not_found("Job", name) from None

    def _entity(self, job: FakeJob):
        from azure.ai.ml._restclient.arm_ml_service.models import JobService
        from azure.ai.ml.entities import Job

        rest = copy.deepcopy(job.rest)
        rest.properties.status = job.status
        rest.properties.services = {"Studio": JobService(endpoint=STUDIO.format(name=job.name))}
        rest.id = f"{WORKSPACE_ID}/jobs/{job.name}"
        return Job._from_rest_object(rest)

    # execution
    def _execute(self, job: FakeJob) -> None:
        try:
            self._run(job)
        except Exception as exc:  # a fake bug must show as a failed job, not a silent hang
            job.status, job.error_code, job.error_message = "Failed", "SystemError", f"fake: {exc!r}"
        finally:
            job.done.set()

    def _run(self, job: FakeJob) -> None:
        behaviour = self.behaviours.get(job.step or "")
        job.status = "Queued"
        time.sleep(0.05)
        if job.cancel_requested:
            return
        if behaviour == "NotResponding":
            job.status = "NotResponding"
            while not job.cancel_requested:
                time.sleep(0.05)
            return
        if behaviour == "hang":
            job.status = "Running"
            while not job.cancel_requested:
                time.sleep(0.05)
            return
        if behaviour == "transient" or (behaviour == "transient_once" and job.step not in self._transient_seen):
            self._transient_seen.add(job.step)
            job.status, job.error_code = "Failed", "ServiceError"
            job.error_message = "Compute node was preempted (low priority); the job can be resubmitted."
            return
        command, cwd, env = self._prepare(job)
        if behaviour in FULL_MOUNT_ERRNOS:  # the job's writes into its output mounts fail (fake_job_site)
            env["BIODIV_FAKE_FULL_MOUNTS"] = FULL_MOUNT_ERRNOS[behaviour]
        job.log_dir = Path(self._client.root) / "jobs" / job.name / "user_logs"
        job.log_dir.mkdir(parents=True, exist_ok=True)
        with open(job.log_dir / "std_log.txt", "wb") as log:
            job.status = "Running"
            job.process = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=log, stderr=log)
            code = job.process.wait()
        if job.cancel_requested:
            job.status = "Canceled"
            return
        job.status = "Finalizing"
        if code == 0 and behaviour == "upload_conflict":  # the step ended well; uploading its output did not
            job.error_code, job.error_message = "UserError", UPLOAD_CONFLICT
            job.status = "Failed"
            return
        if code == 0:
            job.status = "Completed"
            return
        tail = (job.log_dir / "std_log.txt").read_text(errors="replace").strip().splitlines()[-5:]
        job.error_code = "UserError"
        job.error_message = (
            f"Execution failed. User process 'python' exited with status code {code}. "
            f"Please check log file 'user_logs/std_log.txt' for more details. Error: {' '.join(tail)}"
        )
        job.status = "Failed"

    def _prepare(self, job: FakeJob) -> tuple[str, Path, dict[str, str]]:
        props = job.rest.properties
        command = props.command
        for name, spec in (props.inputs or {}).items():
            command = command.replace(f"${{{{inputs.{name}}}}}", str(self._client.resolve_input(spec.uri)))
        mounts = []
        for name, spec in (props.outputs or {}).items():
            folder = self._client.datastore_path(spec.uri)
            folder.mkdir(parents=True, exist_ok=True)
            mounts.append(str(folder))
            command = command.replace(f"${{{{outputs.{name}}}}}", str(folder))
        if "${{" in command:
            raise ValueError(f"unresolved placeholder in {command!r}")
        cwd = self._client.snapshot(props.code_id)
        home = Path(self._client.root) / "jobs" / job.name / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            # Set by AzureML in every job:
            "AZUREML_RUN_ID": job.name,
            "AZUREML_EXPERIMENT_NAME": props.experiment_name or "",
            "MLFLOW_TRACKING_URI": self._client.tracking_uri,
            # Outputs behave as blobfuse read-write mounts: no directory rename inside them (fake_job_site).
            "PYTHONPATH": str(FAKE_JOB_SITE),
            "BIODIV_FAKE_MOUNTS": "\n".join(mounts),
            **(props.environment_variables or {}),
        }
        return command, cwd, env


# --- assets -------------------------------------------------------------------------------------


class _VersionedStore:
    kind = "Asset"

    def __init__(self, client: FakeMLClient):
        self._client = client
        self._items: dict[tuple[str, str], Any] = {}

    def _put(self, entity: Any) -> Any:
        stored = copy.deepcopy(entity)
        self._items[(entity.name, str(entity.version))] = stored
        return copy.deepcopy(stored)

    def get(self, name: str, version: str | None = None, label: str | None = None, **kwargs: Any):
        if version is None:
            versions = self._versions(name)
            if not versions:
                raise _not_found(self.kind, name)
            version = versions[-1]
        try:
            return copy.deepcopy(self._items[(name, str(version))])
        except KeyError:
            raise _not_found(self.kind, name, version) from None

    def list(self, name: str | None = None, **kwargs: Any):
        return [copy.deepcopy(v) for (n, _), v in sorted(self._items.items()) if name is None or n == name]

    def _versions(self, name: str) -> list[str]:
        found = [v for (n, v) in self._items if n == name]
        return sorted(found, key=lambda v: (1, int(v)) if v.isdigit() else (0, v))


class FakeDataOperations(_VersionedStore):
    kind = "Data"

    def create_or_update(self, data: Any, **kwargs: Any):
        data._to_rest_object()
        if not data.version:
            raise ValueError("fake: register data with an explicit version")
        if not Path(data.path).exists():
            raise ResourceNotFoundError(f"(UserError) local path {data.path} does not exist")
        # The SDK uploads a local folder to the default datastore; the fake keeps a copy there.
        target = (
            Path(self._client.root)
            / "datastores"
            / "workspaceblobstore"
            / "LocalUpload"
            / data.name
            / str(data.version)
        )
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(data.path, target)
        stored = copy.deepcopy(data)
        stored.path = f"azureml://datastores/workspaceblobstore/paths/LocalUpload/{data.name}/{data.version}/"
        return self._put(stored)


class FakeEnvironmentOperations(_VersionedStore):
    kind = "Environment"

    def create_or_update(self, environment: Any, **kwargs: Any):
        environment._to_rest_object()
        if not environment.version:
            raise ValueError("fake: register environments with an explicit version")
        self.created = getattr(self, "created", 0) + 1
        return self._put(environment)

    def _resolve(self, reference: Any) -> None:
        match = re.fullmatch(r"(?:azureml:)?([^:@]+):([^:@]+)", str(reference or ""))
        if not match:
            raise ValueError(f"(UserError) environment reference {reference!r} is not name:version")
        self.get(match.group(1), match.group(2))


class FakeModelOperations(_VersionedStore):
    kind = "Model"

    def create_or_update(self, model: Any, **kwargs: Any):
        model._to_rest_object()
        stored = copy.deepcopy(model)
        path = str(model.path)
        job = JOB_ARTIFACT_URI.fullmatch(path)
        if job:
            stored.path, stored.job_name = self._copy_run_artifacts(job.group(1), job.group(2)), job.group(1)
        elif path.startswith("azureml://"):
            local = self._client.datastore_path(path)
            if not (local / "MLmodel").is_file():
                raise ResourceNotFoundError(f"(UserError) no MLmodel file under {path}")
            stored.path = self._client.long_uri(path)  # what resolve_short_datastore_url sends
        elif not Path(path).exists():
            raise ResourceNotFoundError(f"(UserError) model path {path} does not exist")
        if stored.version is None:  # the registry assigns the next integer version
            versions = [int(v) for v in self._versions(model.name) if v.isdigit()]
            stored.version = str(max(versions, default=0) + 1)
        return self._put(stored)

    def _copy_run_artifacts(self, run_id: str, artifact: str) -> str:
        """The run's artifact folder copied to the artifact datastore, as the service resolves a jobs URI."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self._client.tracking_uri)
        try:
            names = {Path(item.path).name for item in client.list_artifacts(run_id, artifact)}
        except MlflowException:
            names = set()
        if "MLmodel" not in names:
            raise ResourceNotFoundError(f"(UserError) job {run_id} has no MLflow model at artifacts/{artifact}")
        relative = f"ExperimentRun/dcid.{run_id}/{artifact.strip('/')}"
        target = Path(self._client.root) / "datastores" / ARTIFACT_DATASTORE / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            downloaded = client.download_artifacts(run_id, artifact, dst_path=tempfile.mkdtemp(dir=self._client.root))
            shutil.copytree(downloaded, target)
        return LONG_DATASTORE_URI.format(datastore=ARTIFACT_DATASTORE, path=relative)

    def download(self, name: str, version: str, download_path: str | os.PathLike = ".") -> None:
        """``<download_path>/<name>/<last folder of the model path>/`` (azure-ai-ml's ModelOperations.download)."""
        source = self._client.datastore_path(str(self.get(name, version).path))
        target = Path(download_path) / name / source.name
        shutil.copytree(source, target, dirs_exist_ok=True)


class FakeBatchEndpointOperations:
    """Endpoints are kept as REST bodies and handed back through azure-ai-ml's `_from_rest_object`."""

    def __init__(self, client: FakeMLClient):
        self._client = client
        self._items: dict[str, Any] = {}
        self.writes = 0
        self.deleted: list[str] = []

    def begin_create_or_update(self, endpoint: Any, **kwargs: Any) -> FakePoller:
        name = endpoint.name or ""
        if not re.fullmatch(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?", name) or not 3 <= len(name) <= 32:
            raise ValueError(f"(UserError) invalid batch endpoint name {name!r}")
        if endpoint.tags and any(value is None for value in endpoint.tags.values()):
            raise ValueError("(UserError) tag values must not be null")
        rest = endpoint._to_rest_batch_endpoint(location=LOCATION)
        default = rest.properties.defaults.deployment_name if rest.properties.defaults else None
        if default and (name, default) not in self._client.batch_deployments._items:
            raise ResourceNotFoundError(f"(UserError) default deployment {default} does not exist on {name}")
        rest.name = name
        rest.id = f"{WORKSPACE_ID}/batchEndpoints/{name}"
        rest.properties.scoring_uri = f"https://{name}.{LOCATION}.inference.ml.azure.com/jobs"
        self._items[name] = rest
        self.writes += 1
        return FakePoller(self.get(name))

    def begin_delete(self, name: str, **kwargs: Any) -> FakePoller:
        """Deletes the endpoint and its deployments (as the service does)."""
        if name not in self._items:
            raise _not_found("BatchEndpoint", name)
        del self._items[name]
        for key in [key for key in self._client.batch_deployments._items if key[0] == name]:
            del self._client.batch_deployments._items[key]
        self.deleted.append(name)
        return FakePoller()

    def get(self, name: str, **kwargs: Any):
        from azure.ai.ml.entities import BatchEndpoint

        try:
            return BatchEndpoint._from_rest_object(copy.deepcopy(self._items[name]))
        except KeyError:
            raise _not_found("BatchEndpoint", name) from None

    def list(self, **kwargs: Any):
        return [self.get(name) for name in self._items]

    def invoke(self, endpoint_name: str, *, deployment_name: str | None = None, inputs: dict | None = None, **kw: Any):
        """A batch job: the default deployment's scoring script run by tests/batch_driver.py as a command job
        (its settings: error_threshold, max_retries; one file per mini-batch), errors in ``logs/user/error``."""
        import uuid

        from azure.ai.ml import command

        endpoint = self.get(endpoint_name)
        deployment_name = deployment_name or endpoint.defaults.deployment_name
        rest = self._client.batch_deployments._items[(endpoint_name, deployment_name)].properties
        if rest.code_configuration is None:
            raise ValueError("fake: only scoring-script deployments are invoked")
        if set(inputs or {}) != {"input"}:
            raise ValueError("(UserError) a batch endpoint takes one input named 'input'")
        source = self._client.resolve_input(str(inputs["input"].path))
        model_name, _, version = str(rest.model.asset_id).removeprefix("azureml:").partition(":")
        model = self._client.datastore_path(str(self._client.models.get(model_name, version).path))
        name = f"batchjob-{uuid.uuid4()}"
        job_dir = Path(self._client.root) / "jobs" / name
        driver = (
            f"python {Path(__file__).parent / 'batch_driver.py'} --code . "
            f"--scoring-script {rest.code_configuration.scoring_script} --model-dir {model} --input {source} "
            f"--output {job_dir / 'score' / 'predictions.csv'} --log-dir {job_dir / 'artifacts'} "
            f"--mini-batch-size {rest.mini_batch_size} --error-threshold {rest.error_threshold} "
            f"--max-retries {rest.retry_settings.max_retries if rest.retry_settings else 0}"
        )
        (job_dir / "score").mkdir(parents=True, exist_ok=True)
        job = command(
            name=name,
            command=driver,
            code=str(self._client.code_snapshot(rest.code_configuration.code_id)),
            environment=rest.environment_id,
            compute=rest.compute,
            tags={"azureml.batchrun": "true", "endpoint": endpoint_name, "deployment": deployment_name},
        )
        return self._client.jobs.create_or_update(job)


class FakeBatchDeploymentOperations:
    def __init__(self, client: FakeMLClient):
        self._client = client
        self._items: dict[tuple[str, str], Any] = {}
        self.writes = 0
        self.provisioning_failures: list[str] = []  # the next deployments fail to provision with these messages

    def begin_create_or_update(self, deployment: Any, **kwargs: Any) -> FakePoller:
        if deployment.endpoint_name not in self._client.batch_endpoints._items:
            raise ResourceNotFoundError(f"(UserError) endpoint {deployment.endpoint_name} does not exist")
        deployment = copy.deepcopy(deployment)
        code = deployment.code_configuration
        if code is not None:  # the SDK uploads the code folder and sends the code asset's id
            if not deployment.environment:
                raise ValueError("(UserError) a batch deployment with a scoring script needs an environment")
            self._client.environments._resolve(deployment.environment)
            snapshot = self._client.snapshot(str(code.code))
            if not (snapshot / code.scoring_script).is_file():
                raise ResourceNotFoundError(f"(UserError) scoring script {code.scoring_script} is not in the code")
            code.code = f"{WORKSPACE_ID}/codes/{snapshot.name}/versions/1"
        rest = deployment._to_rest_object(location=LOCATION)
        match = re.fullmatch(r"(?:azureml:)?([^:@]+):([^:@]+)", str(rest.properties.model.asset_id))
        if not match:
            raise ValueError(f"(UserError) model reference {rest.properties.model.asset_id!r} is not name:version")
        self._client.models.get(match.group(1), match.group(2))
        if not rest.properties.compute:
            raise ValueError("(UserError) a batch deployment needs a compute cluster")
        rest.name = deployment.name
        rest.id = f"{WORKSPACE_ID}/batchEndpoints/{deployment.endpoint_name}/deployments/{deployment.name}"
        self._items[(deployment.endpoint_name, deployment.name)] = rest
        self.writes += 1
        if self.provisioning_failures:  # the deployment entity exists, its provisioning failed (the poller raises)
            rest.properties.provisioning_state = "Failed"
            return FailedPoller(HttpResponseError(self.provisioning_failures.pop(0)))
        return FakePoller(self.get(deployment.name, deployment.endpoint_name))

    def get(self, name: str, endpoint_name: str, **kwargs: Any):
        from azure.ai.ml.entities import BatchDeployment

        try:
            return BatchDeployment._from_rest_object(copy.deepcopy(self._items[(endpoint_name, name)]))
        except KeyError:
            raise _not_found("BatchDeployment", f"{endpoint_name}/{name}") from None

    def list(self, endpoint_name: str, **kwargs: Any):
        return [self.get(n, e) for (e, n) in self._items if e == endpoint_name]


class FakeMLClient:
    def __init__(self, root: str | Path, tracking_uri: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        self.jobs = FakeJobOperations(self)
        self.data = FakeDataOperations(self)
        self.environments = FakeEnvironmentOperations(self)
        self.models = FakeModelOperations(self)
        self.batch_endpoints = FakeBatchEndpointOperations(self)
        self.batch_deployments = FakeBatchDeploymentOperations(self)
        self._snapshots: dict[str, Path] = {}

    def create_or_update(self, entity: Any, **kwargs: Any):
        """MLClient.create_or_update dispatches on the entity type (PipesAzureMLClient calls it for jobs)."""
        from azure.ai.ml.entities import Data, Environment, Job, Model
        from azure.ai.ml.entities._builders import BaseNode

        if isinstance(entity, Job | BaseNode):
            return self.jobs.create_or_update(entity, **kwargs)
        for kind, operations in ((Data, self.data), (Environment, self.environments), (Model, self.models)):
            if isinstance(entity, kind):
                return operations.create_or_update(entity, **kwargs)
        raise TypeError(f"fake MLClient cannot create {type(entity).__name__}")

    def datastore_path(self, uri: str) -> Path:
        """The local folder of a datastore URI, short (``azureml://datastores/...``) or long form."""
        match = DATASTORE_URI.fullmatch(uri)
        if not match:
            raise ValueError(f"(UserError) {uri!r} is not an azureml://datastores/<name>/paths/<path> URI")
        return self.root / "datastores" / match.group(1) / match.group(2).strip("/")

    def long_uri(self, uri: str) -> str:
        match = DATASTORE_URI.fullmatch(uri)
        if not match:
            raise ValueError(f"(UserError) {uri!r} is not a datastore URI")
        return LONG_DATASTORE_URI.format(datastore=match.group(1), path=match.group(2))

    def code_snapshot(self, code_id: str) -> Path:
        """The snapshot a deployment's code asset id (``.../codes/<n>/versions/1``) stands for."""
        return self.root / "snapshots" / code_id.split("/codes/")[1].split("/")[0]

    def resolve_input(self, uri: str) -> Path:
        if uri.startswith("azureml://"):
            path = self.datastore_path(uri)
        elif uri.startswith("azureml:"):
            name, _, version = uri[len("azureml:") :].partition(":")
            path = self.datastore_path(self.data.get(name, version).path)
        else:
            path = Path(uri)
        if not path.exists():
            raise ResourceNotFoundError(f"(UserError) input {uri} does not exist")
        return path

    def snapshot(self, code: str) -> Path:
        """The code folder as AzureML uploads it: files not excluded by .amlignore (azure-ai-ml's own matcher)."""
        from azure.ai.ml._utils._asset_utils import get_ignore_file

        if code in self._snapshots:
            return self._snapshots[code]
        source = Path(code).resolve()
        ignore = get_ignore_file(source)
        target = self.root / "snapshots" / str(len(self._snapshots))
        for folder, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if not ignore.is_file_excluded(os.path.join(folder, d, "probe"))]
            for name in files:
                path = os.path.join(folder, name)
                if ignore.is_file_excluded(path):
                    continue
                dest = target / os.path.relpath(path, source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
        self._snapshots[code] = target
        return target
