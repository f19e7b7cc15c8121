"""Ending a process without the interpreter's teardown, as warm forks and the `biodiv` commands that run Dagster do.

The teardown frees every module and object one by one: 1.3-1.4 s of wall on this VM for a process that has
imported Dagster, MLflow, LightGBM, pandas and scikit-learn, after its output is final.
"""

from __future__ import annotations

import os
import sys

_in_fork = False  # set by azureml_steps._warm in a process forked from a warm server


def mark_fork() -> None:
    global _in_fork
    _in_fork = True


def in_fork() -> bool:
    """True in a process forked from a warm server to run a step or command (it must not run the server's exit)."""
    return _in_fork


def exit_now(code: int) -> None:
    """Flush sys.stdout and sys.stderr, then os._exit(code). As at CPython's own exit, a stdout that cannot be
    flushed (a full disk, a closed pipe) turns a 0 into 120: the output is incomplete."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            if stream is sys.stdout and code == 0:
                code = 120
    os._exit(code)
