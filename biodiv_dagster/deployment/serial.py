"""One process at a time per partition where order matters: claiming a model's registration, and deploying.

Daemon runs of `register_and_deploy_job` queue one at a time per partition (tag `biodiv/registration` in
config/dagster.yaml), but `biodiv run` and `biodiv main` execute that job in their own process, past the run
queue. These file locks under BIODIV_HOME hold on every path that shares the machine: two `biodiv run`s of one
partition, the UI's daemon and a CLI run. (A Postgres instance with run workers on several machines relies on
the run queue.)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

from biodiv_core import settings
from biodiv_core.atomic import file_lock


def _lock_path(kind: str, partition: str):
    # Partition keys hold '|' and user-chosen slugs: a hash keeps the file name short and portable.
    digest = hashlib.sha256(partition.encode("utf-8")).hexdigest()[:16]
    return settings.biodiv_home() / "locks" / f"{kind}-{digest}.lock"


@contextlib.contextmanager
def registration_lock(partition: str) -> Iterator[None]:
    """Held while an in-process caller checks for and runs a partition's registration (never twice per model)."""
    with file_lock(_lock_path("register", partition)):
        yield


@contextlib.contextmanager
def deployment_lock(partition: str) -> Iterator[None]:
    """Held from reading the deployed version to writing the new one: the gate and the deploy are one step."""
    with file_lock(_lock_path("deploy", partition)):
        yield
