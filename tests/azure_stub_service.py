"""The AzureML control plane (ARM) as an azure-core HTTP transport: the real `MLClient` talks to it.

``MLClient(credential, subscription, group, workspace, transport=StubService())`` sends every request here
instead of the network, so what runs is azure-ai-ml's own code: path rewriting, resource-id resolution,
paging (``nextLink``), long-running-operation pollers (``Azure-AsyncOperation``) and error mapping (a 404
body becomes ``ResourceNotFoundError``). The stub keeps resources as the REST JSON it was sent and answers as the
service does, for the routes our code uses:

- ``environments``, ``models``, ``data``: ``GET/PUT .../<kind>/<name>/versions/<v>``, ``GET .../<kind>/<name>``
  (the container, with ``latestVersion``/``nextVersion``), ``GET .../<kind>/<name>/versions`` (paged, one per page);
- ``datastores/<name>`` (GET: every datastore is an Azure Blob one);
- ``batchEndpoints`` and ``batchEndpoints/<e>/deployments``: GET (paged lists), PUT as a long-running operation
  (201 + ``Azure-AsyncOperation``, InProgress once, then Succeeded).

Every request body is recorded and checked against the SDK's generated REST model of its API version
(`check_body`: every field one the model declares and not read-only, nested objects too, every value
deserializes). azure-ai-ml sends several API versions but has one generated model set (``arm_ml_service``).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpResponse, HttpTransport
from azure.core.utils import CaseInsensitiveDict

WORKSPACE = "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
VERSIONED = {"environments": "EnvironmentVersion", "models": "ModelVersion", "data": "DataVersionBase"}
CONTAINERS = {"environments": "EnvironmentContainer", "models": "ModelContainer", "data": "DataContainer"}
LOCATION = "westeurope"
DISCOVERY_KEYS = ("api", "catalog", "experimentation", "gallery", "history", "hyperdrive", "labeling",
                  "modelmanagement", "pipelines")  # fmt: skip
# What the service fills in when a version is created without them (azure-ai-ml reads them back).
SERVICE_DEFAULTS = {"environments": {"osType": "Linux"}, "models": {"flavors": {}}, "data": {}}


class StubCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("stub-token", 4_102_444_800)


@dataclass
class Recorded:
    method: str
    path: str  # below the workspace, e.g. "models/m/versions/1"
    api_version: str
    body: Any
    query: dict  # the other query parameters ($skip of a next page, listViewType...)


class _Response(HttpResponse):
    def __init__(self, request, status: int, body: Any = None, headers: dict | None = None):
        super().__init__(request, None)
        self.status_code = status
        self.reason = "OK" if status < 400 else "Error"
        self.content_type = "application/json"
        self.headers = CaseInsensitiveDict({"Content-Type": "application/json", **(headers or {})})
        self._body = json.dumps(body).encode() if body is not None else b""

    # Both azure-core response interfaces: pipeline.transport (body/text) and rest (content/json/read).
    def body(self) -> bytes:
        return self._body

    @property
    def content(self) -> bytes:
        return self._body

    def read(self) -> bytes:
        return self._body

    def json(self) -> Any:
        return json.loads(self._body) if self._body else None

    def iter_bytes(self, **kwargs: Any):
        yield self._body


def _model_fields(model_type: type) -> dict[str, Any]:
    model_type(**{})  # the generated base computes `_attr_to_rest_field` on first construction
    return {field._rest_name: field for field in model_type._attr_to_rest_field.values()}


def _concrete(model_type: type, body: dict) -> type:
    """The subclass a discriminator value selects (``DataVersionBase`` + ``dataType: uri_folder``...)."""
    for field in _model_fields(model_type).values():
        if field._is_discriminator and body.get(field._rest_name) in getattr(model_type, "__mapping__", {}):
            return model_type.__mapping__[body[field._rest_name]]
    return model_type


def _problems(model_type: type, body: Any, where: str) -> list[str]:
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import Model

    if not isinstance(body, dict):
        return [f"{where or 'body'} is {type(body).__name__}, not an object"]
    model_type = _concrete(model_type, body)
    fields = _model_fields(model_type)
    found = []
    for key, value in body.items():
        field = fields.get(key)
        if field is None:
            found.append(f"unknown field {where}{key}")
            continue
        if field._visibility == ["read"]:
            found.append(f"read-only field {where}{key} sent")
        nested = field._class_type
        if isinstance(value, dict) and isinstance(nested, type) and issubclass(nested, Model):
            found += _problems(nested, value, f"{where}{key}.")
    entity = model_type(body)
    for attribute in model_type._attr_to_rest_field:  # every value deserializes (enums, dates, numbers)
        try:
            getattr(entity, attribute)
        except Exception as exc:
            found.append(f"{where}{attribute}: {exc}")
    return found


def check_body(model_name: str, body: dict) -> None:
    """``body`` against the SDK's generated REST model (``arm_ml_service.models.<model_name>``): every field is one
    the model declares (not read-only), nested objects too, each value deserializes."""
    from azure.ai.ml._restclient.arm_ml_service import models

    problems = _problems(getattr(models, model_name), body, "")
    assert not problems, f"{model_name}: {problems}"


class StubService(HttpTransport):
    def __init__(self, subscription: str, group: str, workspace: str):
        self.prefix = WORKSPACE.format(sub=subscription, group=group, ws=workspace)
        self.resources: dict[str, dict] = {}  # path below the workspace -> REST JSON
        self.requests: list[Recorded] = []
        self._operations: dict[str, list[str]] = {}  # operation id -> statuses still to answer
        self.polls: list[str] = []  # long-running-operation status answers, in order
        self.run_details: dict[str, dict] = {}  # job name -> run history RunDetails JSON

    # HttpTransport
    def __enter__(self):
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request, **kwargs: Any):
        url = urlparse(request.url)
        query = parse_qs(url.query)
        api = (query.get("api-version") or [""])[0]
        body = json.loads(request.body) if request.body else None
        path = url.path
        if path.startswith("/operations/"):
            return self._operation(request, path.rsplit("/", 1)[-1])
        if path.endswith("/discovery"):  # the workspace's discoveryUrl: where run history lives
            base = f"https://{LOCATION}.api.azureml.ms"
            return _Response(request, 200, {key: base for key in DISCOVERY_KEYS} | {"studio": "https://ml.azure.com"})
        if path.startswith("/history/"):
            return self._run_history(request, path)
        if path.lower() == self.prefix.lower() and request.method == "GET":  # the SDK reads the region
            self.requests.append(Recorded("GET", "", api, None, {}))
            return _Response(request, 200, self._workspace())
        if not path.lower().startswith(self.prefix.lower() + "/"):
            return self._error(request, 404, f"stub: no workspace at {path}")
        path = path[len(self.prefix) + 1 :]
        others = {key: values[0] for key, values in query.items() if key != "api-version"}
        self.requests.append(Recorded(request.method, path, api, body, others))
        parts = path.split("/")
        handler = getattr(self, f"_{parts[0].lower()}", None)
        if handler is None:
            return self._error(request, 400, f"stub: {request.method} {path} is not emulated")
        return handler(request, parts, api, body, query)

    def paths(self, method: str | None = None) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests if method in (None, r.method)]

    # answers
    def _workspace(self) -> dict:
        name = self.prefix.rsplit("/", 1)[-1]
        return {
            "id": self.prefix,
            "name": name,
            "location": LOCATION,
            "kind": "Default",
            "properties": {"discoveryUrl": f"https://{LOCATION}.api.azureml.ms/discovery", "workspaceId": "stub-id"},
        }

    def _error(self, request, status: int, message: str, code: str = "UserError"):
        return _Response(request, status, {"error": {"code": code, "message": message}})

    def _resource(self, path: str, body: dict, api: str) -> dict:
        stored = copy.deepcopy(body)
        stored["id"] = f"{self.prefix}/{path}"
        stored["name"] = path.rsplit("/", 1)[-1]
        stored["type"] = "Microsoft.MachineLearningServices/workspaces/" + "/".join(path.split("/")[0::2])
        stored["systemData"] = {"createdBy": "stub", "createdAt": "2026-12-01T00:00:00Z"}
        self.resources[path.lower()] = stored
        return stored

    def _page(self, request, items: list[dict], query: dict):
        start = int((query.get("$skip") or ["0"])[0])
        page: dict[str, Any] = {"value": items[start : start + 1]}
        if start + 1 < len(items):  # one item per page: callers must follow nextLink
            parsed = urlparse(request.url)
            rest = {k: v[0] for k, v in query.items() if k != "$skip"}
            rest["$skip"] = str(start + 1)
            page["nextLink"] = f"{parsed.scheme}://{parsed.netloc}{parsed.path}?" + "&".join(
                f"{k}={v}" for k, v in rest.items()
            )
        return _Response(request, 200, page)

    def _get(self, request, path: str):
        found = self.resources.get(path.lower())
        if found is None:
            kind = path.split("/")[0]
            return self._error(request, 404, f"{kind} {path} not found in workspace")
        return _Response(request, 200, found)

    def _versioned(self, kind: str, request, parts, api, body, query):
        if len(parts) == 2 and request.method == "GET":  # the container
            return self._get(request, "/".join(parts))
        if len(parts) == 3 and request.method == "GET":  # versions, paged
            prefix = "/".join(parts).lower() + "/"
            items = [v for k, v in self.resources.items() if k.startswith(prefix)]
            if not items:
                return self._error(request, 404, f"{kind} container {parts[1]} not found")
            return self._page(request, items, query)
        if len(parts) == 4 and request.method == "GET":
            return self._get(request, "/".join(parts))
        if len(parts) == 4 and request.method == "PUT":
            check_body(VERSIONED[kind], body)
            path = "/".join(parts)
            created = path.lower() not in self.resources
            if not created and kind != "environments":
                return self._error(request, 409, f"{kind} {parts[1]}:{parts[3]} already exists")
            stored = self._resource(path, body, api)
            defaults = SERVICE_DEFAULTS.get(kind, {})
            stored["properties"] = {**copy.deepcopy(defaults), **stored.get("properties", {})}
            self._container(kind, parts[1], parts[3])
            return _Response(request, 201 if created else 200, stored)
        return self._error(request, 400, f"stub: {request.method} {'/'.join(parts)} is not emulated")

    def _container(self, kind: str, name: str, version: str) -> None:
        path = f"{kind}/{name}"
        container = self.resources.get(path.lower()) or self._resource(path, {"properties": {}}, "")
        versions = [k.rsplit("/", 1)[-1] for k in self.resources if k.startswith(path.lower() + "/versions/")]
        numbers = [int(v) for v in versions if v.isdigit()]
        container["properties"]["latestVersion"] = version
        container["properties"]["nextVersion"] = str(max(numbers, default=0) + 1)

    def _environments(self, request, parts, api, body, query):
        return self._versioned("environments", request, parts, api, body, query)

    def _models(self, request, parts, api, body, query):
        return self._versioned("models", request, parts, api, body, query)

    def _data(self, request, parts, api, body, query):
        return self._versioned("data", request, parts, api, body, query)

    def _datastores(self, request, parts, api, body, query):
        if request.method == "GET" and len(parts) == 2:
            name = parts[1]
            return _Response(
                request,
                200,
                {
                    "id": f"{self.prefix}/datastores/{name}",
                    "name": name,
                    "properties": {
                        "datastoreType": "AzureBlob",
                        "accountName": "stubaccount",
                        "containerName": f"azureml-{name}",
                        "endpoint": "core.windows.net",
                        "protocol": "https",
                        "credentials": {"credentialsType": "None"},
                        "isDefault": name == "workspaceblobstore",
                    },
                },
            )
        return self._error(request, 400, "stub: only datastore GET is emulated")

    def _batchendpoints(self, request, parts, api, body, query):
        path = "/".join(parts)
        if request.method == "GET" and len(parts) in (1, 3):  # endpoints, or an endpoint's deployments
            prefix = path.lower() + "/"
            items = [
                v for k, v in self.resources.items() if k.startswith(prefix) and k.count("/") == path.count("/") + 1
            ]
            return self._page(request, items, query)
        if request.method == "GET":
            return self._get(request, path)
        if request.method == "PUT" and len(parts) in (2, 4):
            model = "BatchEndpoint" if len(parts) == 2 else "BatchDeployment"
            check_body(model, body)
            if len(parts) == 4 and f"batchendpoints/{parts[1]}".lower() not in self.resources:
                return self._error(request, 404, f"batch endpoint {parts[1]} not found")
            if len(parts) == 2 and not re.fullmatch(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?", parts[1]):
                return self._error(request, 400, f"invalid batch endpoint name {parts[1]!r}", "ValidationError")
            stored = self._resource(path, body, api)
            stored.setdefault("properties", {})["provisioningState"] = "Succeeded"
            if len(parts) == 2:
                stored["properties"]["scoringUri"] = f"https://{parts[1]}.{LOCATION}.inference.ml.azure.com/jobs"
            operation = uuid.uuid4().hex
            self._operations[operation] = ["InProgress", "Succeeded"]
            answer = copy.deepcopy(stored)
            answer["properties"]["provisioningState"] = "Creating"
            status_url = f"https://management.azure.com/operations/{operation}?api-version={api}"
            return _Response(request, 201, answer, {"Azure-AsyncOperation": status_url, "Retry-After": "0"})
        return self._error(request, 400, f"stub: {request.method} {path} is not emulated")

    def seed_job(self, name: str, body: dict, status: str, error: tuple[str, str] | None = None) -> dict:
        """A job as the service keeps it after submission (``body``: the REST JobBase azure-ai-ml would send)."""
        check_body("JobBase", body)
        stored = self._resource(f"jobs/{name}", body, "")
        stored["properties"]["status"] = status
        stored["properties"]["services"] = {
            "Studio": {"jobServiceType": "Studio", "endpoint": f"https://ml.azure.com/runs/{name}?wsid={self.prefix}"}
        }
        details: dict[str, Any] = {"runId": name, "status": status}
        if error:
            details["error"] = {"error": {"code": error[0], "message": error[1]}}
        self.run_details[name] = details
        return stored

    def _jobs(self, request, parts, api, body, query):
        path = "/".join(parts)
        if request.method == "GET" and len(parts) == 2:
            return self._get(request, path)
        if request.method == "POST" and len(parts) == 3 and parts[2] == "cancel":
            job = self.resources.get(f"jobs/{parts[1]}".lower())
            if job is None:
                return self._error(request, 404, f"job {parts[1]} not found")
            job["properties"]["status"] = "Canceled"
            self.run_details[parts[1]]["status"] = "Canceled"
            operation = uuid.uuid4().hex
            self._operations[operation] = ["Succeeded"]
            location = f"https://management.azure.com/operations/{operation}?api-version={api}"
            return _Response(request, 202, None, {"Location": location, "Retry-After": "0"})
        return self._error(request, 400, f"stub: {request.method} {path} is not emulated")

    def _run_history(self, request, path: str):
        match = re.search(r"/runs/([^/]+)/details$", path)
        self.requests.append(Recorded(request.method, path, "", None, {}))
        if not match or match.group(1) not in self.run_details:
            return self._error(request, 404, f"run {path} not found")
        return _Response(request, 200, self.run_details[match.group(1)])

    def _operation(self, request, operation: str):
        statuses = self._operations.get(operation)
        if not statuses:
            return self._error(request, 404, f"operation {operation} not found")
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        self.polls.append(status)
        return _Response(request, 200, {"id": operation, "name": operation, "status": status})
