"""Progress lines of a long tuning run: ``trial i/N, best CV AUC so far, elapsed``.

Logged on the ``PROGRESS_LOGGER`` logger: the step forwards it to the Dagster run log like every INFO line,
and its stderr handler lets it through even when quieted to warnings (`make run` shows it in the terminal).
A line every ``every`` trials, at most every ``min_seconds`` otherwise, and always after the last trial.
"""

import logging
import time
from collections.abc import Callable

PROGRESS_LOGGER = "biodiv_core.progress"
logger = logging.getLogger(PROGRESS_LOGGER)


def tuning_progress(
    label: str,
    total: int,
    *,
    every: int | None = None,
    min_seconds: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[dict], None]:
    """An ``on_trial`` callback (a trial record with ``auc``) logging a line per tuning milestone."""
    every = every or max(1, round(total / 4))
    started = last = clock()
    best = float("-inf")
    done = 0

    def on_trial(record: dict) -> None:
        nonlocal best, done, last
        done += 1
        best = max(best, float(record["auc"]))
        now = clock()
        if done == total or done % every == 0 or now - last >= min_seconds:
            last = now
            logger.info("%s: trial %d/%d, best CV AUC %.4f, %.0fs", label, done, total, best, now - started)

    return on_trial
