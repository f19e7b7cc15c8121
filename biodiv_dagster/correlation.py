"""Correlation id: one id per run, shared by every run of a backfill (DESIGN section 8).

It is a run tag (``correlation_id``); runs launched without it (UI, schedules) fall back to the
backfill id when they belong to one, else to their own run id. Steps get it as ``--correlation-id``
and ``BIODIV_CORRELATION_ID``; MLflow runs and log lines carry it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

CORRELATION_TAG = "correlation_id"
BACKFILL_TAG = "dagster/backfill"


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def correlation_id_from_tags(tags: Mapping[str, str], run_id: str) -> str:
    """The run's correlation id: its tag, else its backfill's id, else the run id."""
    return tags.get(CORRELATION_TAG) or tags.get(BACKFILL_TAG) or run_id


def correlation_id(context) -> str:
    """Correlation id of the run an op/asset context belongs to."""
    return correlation_id_from_tags(context.run.tags, context.run.run_id)
