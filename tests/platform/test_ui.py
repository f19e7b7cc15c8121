"""The Dagster UI in a real browser: `biodiv ui` (dagster-webserver, dagster-daemon and the MLflow UI, as
`make ui` runs them), opened in headless Chromium, one partition materialized through the GraphQL API, then
registered and deployed by the registration sensor and mapped by the habitat sensor; the scores report is
opened in the UI and its `mlflow_run` link followed to the MLflow UI.

Run by `make test-ui` (and by `make test` when /usr/bin/chromium exists). Screenshots go to the test's tmp dir.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from biodiv_core import settings
from biodiv_dagster.cli import main as biodiv

pytestmark = pytest.mark.ui

CHROMIUM = "/usr/bin/chromium"
SIX_ASSETS = ["prepared_data", "best_parameters", "scores", "deployable_model", "registered_model", "batch_deployment"]
SITE, SPECIES = "yellowstone", "cygnus-buccinator"
PARTITION = f"{SITE}|{SPECIES}"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Services:
    """`biodiv ui` on free ports, in its own process group; its output kept for failure messages."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.port, self.mlflow_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mlflow_url = f"http://127.0.0.1:{self.mlflow_port}"
        self.logs = {"biodiv ui": tmp_path / "biodiv-ui.log"}
        command = [str(BIN / "python"), "-c", "import sys; from biodiv_dagster.cli import main; sys.exit(main())"]
        with open(self.logs["biodiv ui"], "wb") as log:
            self.processes = [
                subprocess.Popen(
                    [*command, "ui", "--port", str(self.port), "--mlflow-port", str(self.mlflow_port)],
                    cwd=settings.REPO_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped with its servers below
                )
            ]

    def tails(self) -> str:
        return "\n".join(f"--- {name}:\n{path.read_text(errors='replace')[-3000:]}" for name, path in self.logs.items())

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until(self, what: str, check, timeout: float, every: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                assert process.poll() is None, f"a Dagster process exited while waiting for {what}\n{self.tails()}"
            try:
                result = check()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                result = None
            if result:
                return result
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.tails()}")

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def services(tmp_path, isolated_state):
    from biodiv_dagster.instance import ensure_dagster_home

    data_root = tmp_path / "data"
    assert biodiv(["generate-data", "--root", str(data_root), "--rows", "1200", "--covariates", "6"]) == 0
    ensure_dagster_home()  # the project's dagster.yaml: telemetry off, run queue of 2
    assert biodiv(["sync", "--data-root", str(data_root)]) == 0
    env = {
        **os.environ,
        "BIODIV_DATA_ROOT": str(data_root),
        # Small, fast training for the one run this test launches.
        "BIODIV_MAX_EVALS": "3",
        "BIODIV_N_FOLDS": "3",
        "BIODIV_NUM_THREADS": "1",
    }
    running = Services(tmp_path, env)
    try:
        yield running
    finally:
        running.stop()


LOCATION_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""

LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""

RUN_STATUS = """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""

MATERIALIZATIONS = """query M($key: AssetKeyInput!, $partition: String!) { assetOrError(assetKey: $key) {
  ... on Asset { assetMaterializations(partitions: [$partition], limit: 1) { partition runId
  metadataEntries { label ... on TextMetadataEntry { text } ... on BoolMetadataEntry { boolValue }
  ... on UrlMetadataEntry { url } ... on MarkdownMetadataEntry { mdStr } } } } } }"""


def _location_loaded(services: Services):
    entries = services.graphql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
    state = {e["name"]: e["locationOrLoadError"] for e in entries}
    loaded = state.get("biodiv") or {}
    assert loaded.get("__typename") != "PythonError", f"code location failed to load: {loaded.get('message')}"
    return loaded.get("__typename") == "RepositoryLocation"


def _open(page, url: str, first_visit: bool = False):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url, wait_until="domcontentloaded")
    if first_visit:
        # A fresh instance greets with "Join the Dagster community" (DESIGN section 9): skip it.
        try:
            page.get_by_role("button", name="Skip").click(timeout=15_000)
        except PlaywrightTimeout:
            pass  # not shown: the UI remembers a dismissal per browser profile


def _materialization(services: Services, asset: str):
    data = services.graphql(MATERIALIZATIONS, {"key": {"path": [asset]}, "partition": PARTITION})
    events = data["assetOrError"].get("assetMaterializations") or []
    return events[0] if events else None


def test_asset_graph_partitions_and_a_materialization_in_the_browser(services, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # pages render slowly on a loaded 2-core machine; 5 s is Playwright's default

    services.wait_until("the webserver", lambda: urllib.request.urlopen(f"{services.url}/server_info", timeout=5), 180)
    services.wait_until("the biodiv code location", lambda: _location_loaded(services), 180)
    services.wait_until(
        "the MLflow UI", lambda: urllib.request.urlopen(f"{services.mlflow_url}/health", timeout=5), 180
    )
    printed = services.logs["biodiv ui"].read_text()
    assert f"Dagster UI:  {services.url}" in printed and f"MLflow UI:   {services.mlflow_url}/#/experiments/" in printed

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)

        # The asset graph shows every asset of the pipeline.
        _open(page, f"{services.url}/asset-groups", first_visit=True)
        for asset in SIX_ASSETS:
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "asset_graph.png"))

        # The partitions page of prepared_data lists the synced site and species keys.
        _open(page, f"{services.url}/assets/prepared_data?view=partitions")
        for key in (SITE, "everglades", SPECIES, "lynx-canadensis"):
            expect(page.get_by_text(key, exact=True).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "partitions.png"))

        # Launch the training job for one partition through the GraphQL API the UI itself uses.
        launched = services.graphql(
            LAUNCH,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": "biodiv",
                        "repositoryName": "__repository__",
                        "jobName": "train_models",
                    },
                    "runConfigData": {},
                    "executionMetadata": {
                        "tags": [
                            {"key": "dagster/partition", "value": PARTITION},
                            {"key": "dagster/partition/site", "value": SITE},
                            {"key": "dagster/partition/species", "value": SPECIES},
                        ]
                    },
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def finished():
            status = services.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
            return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

        assert services.wait_until(f"run {run_id}", finished, timeout=900, every=5) == "SUCCESS", services.tails()

        # The registration sensor (running in the daemon) registers and deploys the new model.
        deployment = services.wait_until(
            "batch_deployment of the partition", lambda: _materialization(services, "batch_deployment"), 300, 5
        )
        entries = {e["label"]: e.get("text", e.get("boolValue")) for e in deployment["metadataEntries"]}
        assert entries["endpoint_name"].startswith("b-yellowst")
        assert entries["reason"].startswith("deployed" if entries["deployed"] else "not deployed")
        if entries["deployed"]:
            assert (settings.endpoints_dir() / f"{entries['endpoint_name']}.json").is_file()

        _open(page, f"{services.url}/runs/{run_id}")
        expect(page.get_by_text("Success").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "run.png"))
        # The deployment's partition shows the gate's decision in its metadata.
        _open(page, f"{services.url}/assets/batch_deployment?view=partitions")
        page.get_by_text(SITE, exact=True).first.click()
        page.get_by_text(SPECIES, exact=True).first.click()
        expect(page.get_by_text(entries["reason"]).first).to_be_visible()
        expect(page.get_by_text(entries["endpoint_name"]).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "batch_deployment.png"))

        # The scores partition: one report entry, one click shows it with its plots.
        scores = {e["label"]: e for e in _materialization(services, "scores")["metadataEntries"]}
        assert "data:image/png;base64," in scores["report"]["mdStr"]
        assert not {"metrics_json", "confusion_matrix_image"} & set(scores)
        _open(page, f"{services.url}/assets/scores?view=partitions")
        page.get_by_text(SITE, exact=True).first.click()
        page.get_by_text(SPECIES, exact=True).first.click()
        page.get_by_text("[Show Markdown]").first.click()
        expect(page.get_by_text("held-out test set").first).to_be_visible()
        expect(page.locator("img[src^='data:image/png']").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "scores_report.png"), full_page=True)

        # Its mlflow_run link opens the run in the MLflow UI, tagged with its site and species.
        link = scores["mlflow_run"]["url"]
        assert link.startswith(f"{services.mlflow_url}/#/experiments/")
        _open(page, link)
        expect(page.get_by_text(f"score {SITE}/Cygnus buccinator").first).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Cygnus buccinator").first).to_be_visible()
        expect(page.get_by_text(PARTITION).first).to_be_visible()
        expect(page.get_by_text("Evaluation runs")).to_have_count(0)  # the classic ML view, not the GenAI one
        page.screenshot(path=str(tmp_path / "mlflow_run.png"), full_page=True)
        browser.close()

    # The habitat sensor maps the deployed model.
    if entries["deployed"]:
        habitat = services.wait_until(
            "habitat_suitability of the partition", lambda: _materialization(services, "habitat_suitability"), 300, 5
        )
        assert {e["label"] for e in habitat["metadataEntries"]} >= {"map", "rows", "model_version"}
    for name in ("asset_graph", "partitions", "run", "batch_deployment", "scores_report", "mlflow_run"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
