"""Tuning progress lines: at milestones and at most every few seconds, always after the last trial."""

import logging

from biodiv_core.training.progress import PROGRESS_LOGGER, tuning_progress


def test_a_line_per_milestone_with_the_best_auc_so_far(caplog):
    now = [0.0]
    on_trial = tuning_progress("tuning p", 8, min_seconds=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        for trial, auc in enumerate([0.70, 0.80, 0.75, 0.78, 0.79, 0.81, 0.60, 0.65]):
            now[0] = trial * 1.0
            on_trial({"trial": trial, "auc": auc})
    lines = [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert lines == [
        "tuning p: trial 2/8, best CV AUC 0.8000, 1s",
        "tuning p: trial 4/8, best CV AUC 0.8000, 3s",
        "tuning p: trial 6/8, best CV AUC 0.8100, 5s",
        "tuning p: trial 8/8, best CV AUC 0.8100, 7s",
    ]


def test_slow_trials_report_every_few_seconds(caplog):
    now = [0.0]
    on_trial = tuning_progress("t", 100, min_seconds=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        for trial in range(3):
            now[0] = 12.0 * (trial + 1)
            on_trial({"trial": trial, "auc": 0.5})
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "t: trial 1/100",
        "t: trial 2/100",
        "t: trial 3/100",
    ]
