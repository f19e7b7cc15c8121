"""Parallel steps on a fresh BIODIV_HOME: the first MLflow use of a new SQLite store must not race.

Seen in benchmarks/backfill.py: two train steps of a 2-run backfill both created the store's tables and
one failed with "table latest_metrics already exists".
"""

import subprocess
import sys


def test_concurrent_first_use_of_a_new_sqlite_store(tmp_path):
    env_code = (
        "import os, sys\n"
        f"os.environ['BIODIV_HOME'] = {str(tmp_path / 'home')!r}\n"
        f"os.environ['MLFLOW_TRACKING_URI'] = 'sqlite:///{tmp_path / 'fresh.db'}'\n"
        # Start together: each process waits for the go file, so the schema creation overlaps.
        f"import time\nwhile not os.path.exists({str(tmp_path / 'go')!r}): time.sleep(0.01)\n"
        "from biodiv_core.tracking import ensure_experiment\n"
        "print(ensure_experiment('parallel'))\n"
    )
    warm = "import mlflow, mlflow.store.tracking.sqlalchemy_store, sqlalchemy\n"
    processes = [
        subprocess.Popen([sys.executable, "-c", warm + env_code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    import time

    time.sleep(6)  # let every process finish importing mlflow before the start signal
    (tmp_path / "go").write_text("")
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
    assert len({out.strip() for out, _ in outputs}) == 1  # one experiment, the same id everywhere
