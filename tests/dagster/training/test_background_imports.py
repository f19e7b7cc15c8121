"""`biodiv run`'s background import thread never imports what the main thread uses meanwhile (the instance's SQL
stack): two threads importing alembic's circular modules at once, or a query beside a half-imported SQLAlchemy ORM,
fail on a partially initialized module."""

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
started_with = []
thread_start = threading.Thread.start
def start(self):
    started_with.append(sorted(sys.modules))  # what this process had imported when the thread started
    thread_start(self)
threading.Thread.start = start
from biodiv_dagster.training.runner import import_in_background
import_in_background().join()  # the worst timing: the thread has imported all it imports before the instance opens
from biodiv_dagster.instance import get_instance
with get_instance():
    pass
print(json.dumps({"first": first, "started_with": started_with[0]}))
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
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["first"]["mlflow"] == "biodiv-import"  # the thread does import the after-training libraries
    assert seen["first"]["sqlalchemy"] == seen["first"]["alembic"] == "MainThread"
    # SQLAlchemy's ORM registers inspection hooks as it imports, which the instance's queries in this thread call.
    assert {"sqlalchemy.orm", "alembic.command"} <= set(seen["started_with"])
