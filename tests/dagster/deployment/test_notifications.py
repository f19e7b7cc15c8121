"""Failure notifications: off without a webhook; with one, a Slack-compatible JSON post per failed run."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from biodiv_dagster import notifications


@pytest.fixture
def webhook():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(
                (self.headers["Content-Type"], json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_off_by_default_and_on_with_a_webhook(monkeypatch):
    monkeypatch.delenv(notifications.WEBHOOK_ENV, raising=False)
    assert notifications._default_status() == dg.DefaultSensorStatus.STOPPED
    monkeypatch.setenv(notifications.WEBHOOK_ENV, "http://127.0.0.1:9/hook")
    assert notifications._default_status() == dg.DefaultSensorStatus.RUNNING


def test_a_failed_run_is_posted_to_the_webhook(webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv(notifications.WEBHOOK_ENV, url)
    monkeypatch.setenv("BIODIV_DAGSTER_UI_URL", "http://127.0.0.1:3000")

    @dg.op
    def breaks():
        raise dg.Failure(description="prepared_data: gold file missing")

    @dg.job
    def failing_job():
        breaks()

    with dg.instance_for_test() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name=notifications.failure_notification_sensor.name,
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        ).for_run_failure()
        notifications.failure_notification_sensor(context)

    [(content_type, body)] = received
    assert content_type == "application/json"
    assert body["text"].startswith(f"biodiv: failing_job failed (run {result.run_id[:8]})")
    assert body["text"].endswith(f"http://127.0.0.1:3000/runs/{result.run_id}")
