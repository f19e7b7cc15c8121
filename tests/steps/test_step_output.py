"""What a step shows a reader: a quiet terminal that still shows progress, and one-click reports."""

import logging
import math

import numpy as np
import pytest

from azureml_steps import _cli
from azureml_steps.reporting import number, significant
from azureml_steps.reports import scores_report
from biodiv_core.evaluation.plots import plot_roc_curve
from biodiv_core.training.progress import PROGRESS_LOGGER


@pytest.fixture
def step_logging(monkeypatch, capsys):
    def configure(level: str):
        monkeypatch.setenv(_cli.LOG_LEVEL_ENV, level)
        _cli.configure_logging("cid-1")

    yield configure
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_biodiv_step", False)]:
        root.removeHandler(handler)


def test_a_quiet_terminal_shows_progress_and_warnings_only(step_logging, capsys):
    step_logging("WARNING")
    logging.getLogger("biodiv_core.stages.train").info("train p: 100 rows")
    logging.getLogger(PROGRESS_LOGGER).info("tuning p: trial 5/20, best CV AUC 0.8123, 9s")
    logging.getLogger("biodiv_core.stages.train").warning("something to look at")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "  tuning p: trial 5/20, best CV AUC 0.8123, 9s"  # short: reads as a list in `make run`
    assert len(lines) == 2 and "WARNING [correlation_id=cid-1]" in lines[1]


def test_the_default_terminal_keeps_every_info_line_with_its_correlation_id(step_logging, capsys):
    step_logging("INFO")
    logging.getLogger("biodiv_core.stages.train").info("train p: 100 rows")
    logging.getLogger(PROGRESS_LOGGER).info("tuning p: trial 1/2, best CV AUC 0.8, 1s")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all("INFO [correlation_id=cid-1]" in line for line in lines)


@pytest.mark.parametrize(
    ("value", "rounded"), [(0.814793217, 0.8148), (0.0812345, 0.08123), (1234.5678, 1235.0), (3.0, 3.0)]
)
def test_floats_in_metadata_have_four_significant_digits(value, rounded):
    assert significant(value) == rounded and number(value) == {"raw_value": rounded, "type": "float"}
    assert number(math.nan) == {"raw_value": None, "type": "null"}


def test_the_scores_report_names_the_cut_off_and_inlines_the_plots(tmp_path):
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.7])
    plot_roc_curve(y, p, 0.387, tmp_path / "roc_curve.png")
    metrics = {
        "roc_auc": 0.8125,
        "accuracy": 0.75,
        "threshold": 0.387,
        "n": 8,
        "ABSENT": {"precision": 0.75, "recall": 0.75, "f1-score": 0.75, "support": 4},
        "PRESENT": {"precision": 0.75, "recall": 0.75, "f1-score": 0.75, "support": 4},
    }
    summary = {"site": "everglades", "species": "Lynx canadensis", "threshold": 0.38712345, "tss": 0.5, "brier": 0.2}
    report = scores_report(summary, metrics, tmp_path)
    assert "Cut-off **0.3871**" in report
    assert "| accuracy | 0.75 | 0.3871 |" in report and "| ROC-AUC | 0.8125 | none |" in report
    assert "| Brier score (lower is better) | 0.2 | none |" in report
    assert "| PRESENT | 0.75 | 0.75 | 0.75 | 4 |" in report
    assert report.count("data:image/png;base64,") == 1 and "**ROC curve**" in report
