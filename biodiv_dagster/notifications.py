"""Failure notifications (optional): a run-failure sensor posting to a chat webhook when one is configured.

``BIODIV_FAILURE_WEBHOOK_URL`` set (where the daemon runs): the sensor starts running and posts one
Slack-compatible JSON message (``{"text": ...}``; Teams and Mattermost incoming webhooks take it too) per
failed run, with a link to the run when ``BIODIV_DAGSTER_UI_URL`` is set (`biodiv ui` sets it). Unset: the
sensor starts stopped and posts nothing. A webhook that fails is logged, never retried
in a loop: the run's failure is in Dagster either way.
"""

import json
import os
import urllib.request

import dagster as dg

WEBHOOK_ENV = "BIODIV_FAILURE_WEBHOOK_URL"
TIMEOUT_SECONDS = 10


def failure_text(job: str, run_id: str, partition: str | None, message: str, ui_url: str | None = None) -> str:
    where = f" for {partition}" if partition else ""
    link = f"\n{ui_url.rstrip('/')}/runs/{run_id}" if ui_url else ""
    return f"biodiv: {job}{where} failed (run {run_id[:8]}): {message.strip()[:500]}{link}"


def post(url: str, text: str) -> int:
    """POST ``{"text": text}`` as JSON; returns the HTTP status."""
    request = urllib.request.Request(
        url, data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return response.status


def _default_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if os.environ.get(WEBHOOK_ENV) else dg.DefaultSensorStatus.STOPPED


@dg.run_failure_sensor(
    default_status=_default_status(),
    description=f"Posts each failed run to the chat webhook in ${WEBHOOK_ENV} (off when it is unset).",
)
def failure_notification_sensor(context: dg.RunFailureSensorContext):
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return
    run = context.dagster_run
    text = failure_text(
        run.job_name,
        run.run_id,
        run.tags.get("dagster/partition"),
        context.failure_event.message or "see the run's logs",
        os.environ.get("BIODIV_DAGSTER_UI_URL"),
    )
    try:
        post(url, text)
    except OSError as exc:
        context.log.warning(f"could not post the failure of run {run.run_id} to the webhook: {exc}")


def notification_definitions() -> dg.Definitions:
    return dg.Definitions(sensors=[failure_notification_sensor])
