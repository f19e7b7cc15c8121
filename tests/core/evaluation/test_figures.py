"""Figures drawn by forked workers are the same files as figures drawn in process, and errors are not lost."""

import os

import numpy as np
import pandas as pd
import pytest

from biodiv_core.evaluation import explain, figures, plots


def _draw_all(folder):
    importance = pd.DataFrame({"feature": [f"covariate_{i}" for i in range(8)], "gain": np.linspace(1, 8, 8)})
    curves = {
        f"f{i}": pd.DataFrame({"value": np.linspace(0, 1, 20), "probability": np.linspace(0, 1, 20) ** i})
        for i in range(3)
    }
    explain.plot_importance(importance, folder / "importance.png")
    explain.plot_response_curves(curves, folder / "curves" / "response_curves.png")
    plots.plot_confusion_matrix([[10, 2], [3, 9]], folder / "confusion.png")
    rng = np.random.default_rng(0)
    plots.plot_roc_curve(rng.integers(0, 2, 200), rng.random(200), 0.5, folder / "roc.png")


def test_figures_written_beside_are_the_files_written_in_process(tmp_path):
    _draw_all(tmp_path / "here")
    parent = os.getpid()
    with figures.written_beside(2):
        assert figures._beside  # saves go to the workers
        _draw_all(tmp_path / "beside")
    assert not figures._beside and os.getpid() == parent
    here = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*.png"))
    beside = sorted(p.relative_to(tmp_path / "beside") for p in (tmp_path / "beside").rglob("*.png"))
    assert here == beside and len(here) == 4
    for name in here:
        assert (tmp_path / "beside" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name


def test_one_thread_draws_in_process_and_a_worker_error_is_raised_at_the_end(tmp_path):
    with figures.written_beside(1):
        assert not figures._beside
    (tmp_path / "taken.png").mkdir()  # a folder where the PNG should go: the worker's savefig fails
    with pytest.raises(IsADirectoryError), figures.written_beside(2):
        plots.plot_confusion_matrix([[1, 0], [0, 1]], tmp_path / "taken.png")
    assert not figures._beside
