"""The Dagster instance on local state: DAGSTER_HOME (default BIODIV_HOME/dagster) with the project's dagster.yaml."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from biodiv_core import settings
from biodiv_core.atomic import file_lock
from biodiv_core.errors import ConfigError


def ensure_dagster_home() -> Path:
    """Create DAGSTER_HOME, copy config/dagster.yaml there if it has none, and export DAGSTER_HOME.

    An existing dagster.yaml is never overwritten: the user (or another checkout) may have edited it. The copy is
    renamed into place, so a process starting at the same time never reads half of it.
    """
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        source = settings.config_dir() / "dagster.yaml"
        if not source.is_file():
            source = settings.REPO_ROOT / "config" / "dagster.yaml"
        tmp = home / f".dagster.yaml.tmp-{uuid.uuid4().hex[:8]}"
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance():
    """The persistent DagsterInstance on DAGSTER_HOME (what `dagster dev` / `biodiv ui` use too).

    The first open creates the SQLite storages, and two processes doing that at once fail with "table ... already
    exists": the project's dagster.yaml names a storage that creates them under a lock in every process that opens
    the instance (instance_storage.py: the daemon, webserver and run workers too). This lock in DAGSTER_HOME also
    covers a home whose dagster.yaml predates that storage, for the CLI's own processes. A dagster.yaml that cannot
    be read is a ConfigError.
    """
    import dagster as dg
    import yaml

    home = ensure_dagster_home()
    with file_lock(home / ".instance.lock"):
        try:
            return dg.DagsterInstance.get()
        except (yaml.YAMLError, dg.DagsterInvalidConfigError, dg.DagsterInvariantViolationError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{home / 'dagster.yaml'} is not a valid Dagster instance config ({first}): fix it, or delete it "
                f"to get a fresh copy of config/dagster.yaml."
            ) from exc
