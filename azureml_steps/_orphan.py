"""A step dies with the process that launched it: `biodiv run` SIGKILLed must not leave its step running.

The local launcher names itself in ``BIODIV_STEP_PARENT_PID``; the process it starts (the plain step, or the warm
client) watches its parent, and once that is gone (reparented: the launcher was killed without a chance to stop
its children) sends itself SIGTERM, which unwinds a step like a cancel (MLflow runs end FAILED, the half-written
output folder is removed) and which the warm client relays to its step. Polling, not PR_SET_PDEATHSIG: that
signal follows the *thread* that started the child, and Dagster starts steps from worker threads.
"""

from __future__ import annotations

import os
import signal
import threading

PARENT_ENV = "BIODIV_STEP_PARENT_PID"
POLL_SECONDS = 0.5


def _expected_parent() -> int | None:
    try:
        return int(os.environ.get(PARENT_ENV, ""))
    except ValueError:
        return None


def exit_with_parent() -> None:
    """Start the watch (no-op unless the launcher set ``BIODIV_STEP_PARENT_PID``); idempotent per process."""
    parent = _expected_parent()
    if parent is None or getattr(exit_with_parent, "_watching", None) == os.getpid():
        return
    exit_with_parent._watching = os.getpid()  # type: ignore[attr-defined]
    if os.getppid() != parent:  # the launcher died before we got here
        os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(POLL_SECONDS):
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
