"""A `dagster-daemon run` and a first `biodiv run` opening a fresh DAGSTER_HOME at the same moment.

Was: whichever lost the race died creating Dagster's SQLite storage ("table runs already exists"): Dagster creates
its tables on the first open without a lock, and the daemon does not take the CLI's lock. Now the storage named in
config/dagster.yaml (biodiv_dagster/instance_storage.py) creates them under a file lock in every process.

Both processes are held at a barrier (a ``sitecustomize`` on PYTHONPATH, code under test unchanged) right before
each opens the instance, and released together once both have arrived, so they really create the storage at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
from cli_process import biodiv_command, run_args

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore

BIN = Path(sys.executable).parent

# Each process's first DagsterInstance.from_config waits until BIODIV_TEST_BARRIER_PARTIES processes have reached
# theirs (one file per process in BIODIV_TEST_BARRIER), then all go on together.
BARRIER = textwrap.dedent(
    """
    import os, sys, time
    _DIR = os.environ.get("BIODIV_TEST_BARRIER")
    if _DIR:
        import importlib.abc, importlib.util

        def _arrive():
            open(os.path.join(_DIR, str(os.getpid())), "w").close()
            deadline = time.monotonic() + 180
            while len(os.listdir(_DIR)) < int(os.environ["BIODIV_TEST_BARRIER_PARTIES"]):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.002)

        def _wrap(module):
            original, first = module.create_instance_from_config, [True]
            def at_the_barrier(*args, **kwargs):
                if first[0]:
                    first[0] = False
                    _arrive()
                return original(*args, **kwargs)
            module.create_instance_from_config = at_the_barrier

        class _Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name != "dagster._core.instance.factory":
                    return None
                sys.meta_path.remove(self)
                spec = importlib.util.find_spec(name)
                run = spec.loader.exec_module
                def exec_module(module):
                    run(module)
                    _wrap(module)
                spec.loader.exec_module = exec_module
                return spec

        sys.meta_path.insert(0, _Finder())
    """
)


@pytest.fixture
def barrier_env(tmp_path) -> dict[str, str]:
    faults, arrived = tmp_path / "faults", tmp_path / "arrived"
    faults.mkdir()
    arrived.mkdir()
    (faults / "sitecustomize.py").write_text(BARRIER)
    (tmp_path / "tmp").mkdir()
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(faults), str(settings.REPO_ROOT), os.environ.get("PYTHONPATH")])
        ),
        "BIODIV_TEST_BARRIER": str(arrived),
        "BIODIV_TEST_BARRIER_PARTIES": "2",
        "TMPDIR": str(tmp_path / "tmp"),  # warm run servers of this test's own
    }


def _heartbeats(home: Path) -> int:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return len(instance.get_daemon_heartbeats())


def test_a_daemon_and_a_first_biodiv_run_opening_a_fresh_home_at_once_both_survive(tmp_path, barrier_env):
    store = tmp_path / "data"
    generate_datastore(store, sites=["everglades"], species=["Cygnus buccinator"], rows=300, seed=5, raster_size=0)
    home = settings.dagster_home()
    # A fresh home as `biodiv` leaves it before its first open: the project's dagster.yaml and nothing else.
    (home / "dagster.yaml").write_text((settings.REPO_ROOT / "config" / "dagster.yaml").read_text())
    assert sorted(p.name for p in home.iterdir()) == ["dagster.yaml"]
    log = tmp_path / "daemon.log"
    with open(log, "w") as handle:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(settings.REPO_ROOT / "workspace.yaml")],
            env=barrier_env,
            cwd=settings.REPO_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped with the code server it spawns
        )
    try:
        cli = subprocess.run(
            biodiv_command(*run_args(store)),
            env=barrier_env,
            cwd=settings.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        arrived = sorted(int(p.name) for p in (tmp_path / "arrived").iterdir())
        assert daemon.pid in arrived and len(arrived) >= 2  # both opened the fresh home together
        assert cli.returncode == 0, cli.stderr[-3000:]
        assert "already exists" not in cli.stderr and "Traceback" not in cli.stderr, cli.stderr[-3000:]
        assert json.loads(cli.stdout)["registered_version"] == "1"

        deadline = time.monotonic() + 300
        while _heartbeats(home) == 0:  # the daemon got past its start-up and runs its loops
            assert daemon.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        assert daemon.poll() is None, log.read_text()[-4000:]
        assert "already exists" not in log.read_text(), log.read_text()[-4000:]
    finally:
        try:
            os.killpg(daemon.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        daemon.wait(timeout=60)
