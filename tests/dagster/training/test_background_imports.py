"""`biodiv run`'s background import thread never imports what the main thread imports meanwhile (the instance's
SQL stack): two threads importing alembic's circular modules at once can leave one with a half-initialized module."""

import json
import subprocess
import sys

from biodiv_core import settings

# In a fresh interpreter: who first imports each package, the main thread opening a fresh instance or the thread.
PROBE = """
import json, os, sys, threading
first = {}
def hook(event, args):
    if event == "import" and args[0] not in sys.modules:
        first.setdefault(args[0].split(".")[0], threading.current_thread().name)
sys.addaudithook(hook)
from biodiv_dagster.training.runner import import_in_background
import_in_background().join()  # the worst timing: the thread has imported all it imports before the instance opens
from biodiv_dagster.instance import get_instance
with get_instance():
    pass
print(json.dumps(first))
"""


def test_the_instance_storage_stack_is_imported_before_the_background_thread_starts(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BIODIV_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "PYTHONPATH": str(settings.REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads(done.stdout.strip().splitlines()[-1])
    assert first["mlflow"] == "biodiv-import"  # the thread does import the after-training libraries
    assert first["sqlalchemy"] == first["alembic"] == "MainThread"
