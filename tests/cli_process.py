"""The real `biodiv` console process, and what a clean user error looks like on its terminal.

Each call is a fresh interpreter with this test's environment (BIODIV_HOME, DAGSTER_HOME, MLflow store set by
conftest.py), so exit codes, stdout/stderr and signals are exactly what a user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from biodiv_core import settings

CLI = [sys.executable, "-c", "import sys; from biodiv_dagster.cli import main; sys.exit(main())"]
TINY = ["--max-evals", "1", "--folds", "2", "--num-threads", "1"]


def biodiv_command(*args: str) -> list[str]:
    return [*CLI, *map(str, args)]


def biodiv(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        biodiv_command(*args),
        capture_output=True,
        text=True,
        cwd=settings.REPO_ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def run_args(data_root: Path, site: str = "everglades", species: str = "Cygnus buccinator") -> list[str]:
    return ["run", "--site", site, "--species", species, "--data-root", str(data_root), "--json", *TINY]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_clean_user_error(completed: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, stdout empty, exactly one `error: ...` line holding every fragment, no traceback or stack trace."""
    err = completed.stderr
    assert completed.returncode == 2, err[-3000:]
    assert completed.stdout == "", completed.stdout[-2000:]
    lines = error_lines(err)
    assert len(lines) == 1, err[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in err and "Stack Trace" not in err, err[-3000:]
    return lines[0]


def files_in(folder: Path) -> list[Path]:
    folder = Path(folder)
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def assert_nothing_left() -> None:
    """No step output, endpoint record, MLflow run or registered model under this test's state."""
    from mlflow import MlflowClient

    assert files_in(settings.storage_root()) == []
    assert files_in(settings.endpoints_dir()) == []
    client = MlflowClient(settings.mlflow_tracking_uri())
    runs = [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]
    assert runs == [] and client.search_registered_models() == []
