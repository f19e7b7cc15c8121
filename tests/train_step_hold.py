"""A sitecustomize that holds a step at the first MLflow run it starts (the train step's), for tests that need a
training run to be in progress at a known moment. Written into a folder put first on a process's PYTHONPATH.

- ``BIODIV_TEST_HOLD=1`` turns it on;
- ``BIODIV_TEST_HOLD_MARKER``: a file the held step writes "<pid> <mlflow run id>" to;
- ``BIODIV_TEST_HOLD_UNTIL``: a file whose existence releases the step (without it, or at most, 600 s).
"""

import textwrap
from pathlib import Path

SITECUSTOMIZE = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    if os.environ.get("BIODIV_TEST_HOLD"):
        import biodiv_core.tracking as tracking
        _note = tracking._note_run
        def _held(run_id):
            _note(run_id)
            if os.environ.get("BIODIV_TEST_HOLD_MARKER"):
                Path(os.environ["BIODIV_TEST_HOLD_MARKER"]).write_text(f"{os.getpid()} {run_id}")
            release, deadline = os.environ.get("BIODIV_TEST_HOLD_UNTIL"), time.monotonic() + 600
            while time.monotonic() < deadline and not (release and Path(release).exists()):
                time.sleep(0.1)
        tracking._note_run = _held
    """
)


def hold_folder(parent: Path) -> Path:
    """``parent/hold`` holding the sitecustomize, to put first on PYTHONPATH."""
    folder = parent / "hold"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder
