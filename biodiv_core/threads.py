"""CPU budget for LightGBM (DESIGN section 9).

LightGBM left at its default thread count busy-waits on every core and can run 25x slower when
another process shares the machine, so every fit gets an explicit ``num_threads`` from here.
"""

import os

from biodiv_core.errors import ConfigError

ENV_VAR = "BIODIV_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity / cgroup pinning where the OS exposes it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_budget(concurrent_runs: int = 1) -> int:
    """Threads one run may use: cores // concurrent_runs, at least 1; ``BIODIV_NUM_THREADS`` overrides."""
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        try:
            value = int(override)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"{ENV_VAR}={override!r} is not a positive integer: set it to e.g. 1 or unset it.")
        return value
    if concurrent_runs < 1:
        raise ConfigError(f"concurrent_runs={concurrent_runs!r} must be >= 1.")
    return max(1, available_cores() // concurrent_runs)


def native_thread_limit(threads: int):
    """A context that holds BLAS and OpenMP pools (NumPy's, scikit-learn's, LightGBM's) to ``threads``.

    OMP_NUM_THREADS in a step's environment only reaches libraries loaded after it was set: a warm step is
    forked from a server that loaded them with its own environment. Left at one thread per core, OpenBLAS
    spinning on a shared 2-core machine made the baseline's logistic regression 20x slower (2.7 s vs 0.14 s
    for three fits on 500 rows at load 6). threadpoolctl sets the pools at run time, whoever loaded them.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, int(threads)))
