"""Optional App Insights telemetry of AzureML step jobs (DESIGN section 8).

With APPLICATIONINSIGHTS_CONNECTION_STRING set, log records of the ``biodiv.azureml`` logger go to
Application Insights through azure-monitor-opentelemetry (installed with azure-ai-ml), each with the
run's correlation id, job name and partition as custom dimensions. Without it nothing is imported,
configured or sent, and nothing fails.
"""

from __future__ import annotations

import logging
import os
import threading

LOGGER_NAME = "biodiv.azureml"
ENV_VAR = "APPLICATIONINSIGHTS_CONNECTION_STRING"

logger = logging.getLogger(LOGGER_NAME)
_configured: set[str] = set()
_lock = threading.Lock()


def enabled() -> bool:
    return bool(os.environ.get(ENV_VAR))


def _configure() -> None:
    connection_string = os.environ[ENV_VAR]
    with _lock:
        if connection_string in _configured:
            return
        from azure.monitor.opentelemetry import configure_azure_monitor

        # Only our logger: Dagster's and the SDKs' records stay local.
        configure_azure_monitor(connection_string=connection_string, logger_name=LOGGER_NAME)
        logger.setLevel(logging.INFO)
        _configured.add(connection_string)


def track(message: str, correlation_id: str, **dimensions: object) -> bool:
    """Send one event line with the correlation id; returns False (and does nothing) when App Insights is off."""
    if not enabled():
        return False
    try:
        _configure()
    except Exception as exc:  # telemetry must never fail a step
        logging.getLogger(__name__).warning(f"App Insights disabled: {exc}")
        return False
    extra = {"correlation_id": correlation_id, **{k: str(v) for k, v in dimensions.items() if v is not None}}
    logger.info(message, extra=extra)
    return True
