"""Writing figures (PNG): in this process, or in forked workers beside the stage's own work.

Saving a figure (the Agg draw and the PNG) is most of its cost: 0.39 of 0.54 s for the response curves on this
machine, where building the figure takes 0.15 s and pickling it 0.02 s. A stage that may use two or more threads
wraps its plotting in :func:`written_beside`: each :func:`save` then hands the pickled figure to a worker process
and returns, so the stage goes on building figures and computing while the workers draw. The context waits for
every figure at its end and raises the first error, so a stage never reports an image that was not written.
The workers are forked from the stage and only draw: no LightGBM (OpenMP) runs in them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

DPI = 100
_beside: list[tuple[ProcessPoolExecutor, list[Future]]] = []  # the open `written_beside`, if any


def save(fig, path: str | os.PathLike, **savefig: object) -> Path:
    """Write ``fig`` as ``path`` (folders created) at our DPI: now, or in a worker inside `written_beside`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"dpi": DPI, **savefig}
    if _beside:
        pool, pending = _beside[-1]
        pending.append(pool.submit(_save_pickled, pickle.dumps(fig), os.fspath(path), options))
    else:
        fig.savefig(os.fspath(path), **options)
    return path


def _save_pickled(figure: bytes, path: str, options: dict) -> None:
    import matplotlib.pyplot as plt

    fig = pickle.loads(figure)
    try:
        fig.savefig(path, **options)
    finally:
        plt.close(fig)  # a pyplot figure re-registers itself when unpickled: the worker keeps none


@contextlib.contextmanager
def written_beside(workers: int) -> Iterator[None]:
    """Figures saved inside are drawn by ``workers`` forked processes (with fewer than 2: here, at once)."""
    if workers < 2 or _beside or not hasattr(os, "fork"):
        yield
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    pending: list[Future] = []
    _beside.append((pool, pending))
    try:
        yield
        for future in pending:
            future.result()
    finally:
        _beside.pop()
        pool.shutdown(wait=True, cancel_futures=True)
