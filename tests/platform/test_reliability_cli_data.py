"""Bad data through the real `biodiv` process: the run fails at prepared_data with one line on the terminal.

Was, for each of the cases here: the data passed prep and the train step failed on it, three attempts with three
tracebacks, and about 100 lines with four Dagster "Stack Trace:" blocks on the CLI for any data error raised in a
step. Now the CLI prints one `error:` line (the step's message; Dagster's events and the stack stay in the event
log, and behind `--verbose`), exits 2, and leaves no step output, MLflow run, model or endpoint.
"""

from __future__ import annotations

import dagster as dg
import pytest
from cli_process import assert_clean_user_error, assert_nothing_left, biodiv, run_args
from reliability_helpers import BAD_INPUT_IDS, BAD_INPUTS, SITE, SPECIES, bad_store

# One per kind of late failure, plus the data error the issue printed ~100 lines for.
CASES = [
    "infinite_value",
    "value_past_float32",
    "space_in_feature_name",
    "json_characters_in_feature_name",
    "empty_feature_name",
    "semicolon_delimiter",
    "latin1_encoding",
    "text_in_a_numeric_column",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_data_through_the_biodiv_process_is_one_line_and_leaves_nothing(name, tmp_path):
    case = BAD_INPUTS[BAD_INPUT_IDS.index(name)]
    bad_store(tmp_path / "data", case)
    completed = biodiv(*run_args(tmp_path / "data", SITE, SPECIES))
    line = assert_clean_user_error(completed, f"Training {SITE} x {SPECIES} failed in prepared_data", case.fragment)
    assert completed.stderr.strip() == line  # nothing else on the terminal
    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.FAILURE
    events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
    assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    # The stack is kept where it belongs: in the step failure of the event log.
    [failure] = [e for e in events if e.is_step_failure]
    assert failure.step_failure_data.error is not None
    assert_nothing_left()


def test_verbose_shows_dagster_events_and_the_step_error(tmp_path):
    case = BAD_INPUTS[BAD_INPUT_IDS.index("space_in_feature_name")]
    bad_store(tmp_path / "data", case)
    completed = biodiv(*run_args(tmp_path / "data"), "--verbose")
    assert completed.returncode == 2
    assert "STEP_FAILURE" in completed.stderr and case.fragment in completed.stderr


def test_a_full_disk_inside_a_step_is_one_line_and_not_retried(tmp_path):
    """Was: OSError in the step, retried twice, then `Exceeded max_retries of 2` as the only line."""
    import os
    import textwrap

    from reliability_helpers import valid_tables, write_store

    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import errno, os
            if os.environ.get("BIODIV_TEST_FAULT") == "disk_full_in_prep" and os.environ.get("BIODIV_STEP_PARENT_PID"):
                import biodiv_core.atomic as atomic
                _replace = os.replace
                def _full(src, dst, *a, **k):
                    if ".tmp-" in os.path.basename(str(src)):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
                    return _replace(src, dst, *a, **k)
                atomic.os.replace = _full
            """
        )
    )
    write_store(tmp_path / "data", *valid_tables(40))
    env = {
        "PYTHONPATH": f"{faults}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "BIODIV_TEST_FAULT": "disk_full_in_prep",
    }
    completed = biodiv(*run_args(tmp_path / "data"), env=env)
    assert_clean_user_error(completed, "failed in prepared_data", "No space left on device", "free space")
    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs()
    events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
    assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert not instance.fetch_materializations(dg.AssetKey("prepared_data"), limit=1).records
    assert_nothing_left()
