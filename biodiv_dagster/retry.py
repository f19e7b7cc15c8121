"""Retry policy of the platform's assets: transient failures are retried with backoff, data errors never.

Transient: a step process that crashed or was killed (OOM, SIGKILL), an I/O error, an HTTP 5xx or a
timeout from a tracking server or registry, "database is locked". Each such exception reaches Dagster
as-is (or as ``dg.Failure(allow_retries=True)`` for a step that exited 1) and this policy re-runs the
step after ``delay`` seconds, doubling each time, with jitter so retried partitions do not stampede.

Not retried: bad data, config or names (``BiodivError``) fail the same way every time; the assets turn
them into ``dg.Failure(allow_retries=False)``, which Dagster does not retry whatever the policy.
AzureML jobs have their own resubmission (``dg.RetryRequested`` for failures AzureML classes transient).

Tune with ``BIODIV_STEP_MAX_RETRIES`` (default 2) and ``BIODIV_STEP_RETRY_DELAY_SECONDS`` (default 2),
read when the definitions load.
"""

from __future__ import annotations

import os

import dagster as dg

MAX_RETRIES_ENV = "BIODIV_STEP_MAX_RETRIES"
DELAY_ENV = "BIODIV_STEP_RETRY_DELAY_SECONDS"


def step_retry_policy() -> dg.RetryPolicy:
    return dg.RetryPolicy(
        max_retries=int(os.environ.get(MAX_RETRIES_ENV, "2")),
        delay=float(os.environ.get(DELAY_ENV, "2")),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


STEP_RETRY_POLICY = step_retry_policy()
