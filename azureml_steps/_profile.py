"""CPU profiles of warm forks: where a forked step or run worker spends CPU, imports excluded (they happened in
the server). A diagnostic for throughput work, off by default: ``BIODIV_WARM_PROFILE=<folder>`` makes every
forked process write ``<module>-<pid>.prof`` there (read with ``python -m pstats``)."""

from __future__ import annotations

import os

PROFILE_ENV = "BIODIV_WARM_PROFILE"


def cpu_profile(folder: str | None):
    """A started CPU-time cProfile when ``folder`` is set, else None."""
    if not folder:
        return None
    import cProfile
    import time

    os.makedirs(folder, exist_ok=True)
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    return profile
