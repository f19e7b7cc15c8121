"""The Dagster instance on local state: DAGSTER_HOME (default BIODIV_HOME/dagster) with the project's dagster.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from biodiv_core import settings


def ensure_dagster_home() -> Path:
    """Create DAGSTER_HOME, copy config/dagster.yaml there if it has none, and export DAGSTER_HOME.

    An existing dagster.yaml is never overwritten: the user (or another checkout) may have edited it.
    """
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        source = settings.config_dir() / "dagster.yaml"
        if not source.is_file():
            source = settings.REPO_ROOT / "config" / "dagster.yaml"
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance():
    """The persistent DagsterInstance on DAGSTER_HOME (what `dagster dev` / `biodiv ui` use too)."""
    import dagster as dg

    ensure_dagster_home()
    return dg.DagsterInstance.get()
