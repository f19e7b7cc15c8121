"""Dagster's SQLite storage (runs, event logs, schedules under DAGSTER_HOME), created under a file lock.

Dagster 1.13 creates its SQLite databases the first time a process opens the instance, without any lock:
`SqliteRunStorage.from_local` and `SqliteScheduleStorage.from_local` inspect the database, then create the tables,
stamp the alembic revision and run their data migrations; `SqliteEventLogStorage` does the same for its index
database (and reindexes) in its constructor, and for each run's own database on the first connection to it. Two
processes doing that at once (a `dagster-daemon run` or `biodiv ui` started beside a first `biodiv run` on a fresh
DAGSTER_HOME) both see no tables, both create them, and one dies of "table runs already exists" (the event log
retries its shards for ~2 s; the run and schedule storages do not retry at all).

`LockedSqliteStorage` is that same storage with every one of those creation steps inside one exclusive flock on
``<base_dir>/.storage.lock``. config/dagster.yaml names it (``storage: custom``), so every process that opens the
instance holds the lock while creating: the CLI, the daemon and webserver (started by `biodiv ui` or by hand), and
the run workers, which rehydrate the storage from the instance ref. Once the databases exist, holding the lock costs
one flock per process open.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)

LOCK_NAME = ".storage.lock"
# The lock is taken again by the event log's shard creation while the storage constructor holds it (the index
# shard): flock on a second descriptor of the same file would wait for ourselves, so each thread counts its holds.
_held = threading.local()


@contextlib.contextmanager
def creation_lock(base_dir: str) -> Iterator[None]:
    """Exclusive, across processes, while Dagster's SQLite databases under ``base_dir`` are created or migrated."""
    from biodiv_core.atomic import file_lock

    path = os.path.join(os.path.abspath(base_dir), LOCK_NAME)
    holding = getattr(_held, "paths", None)
    if holding is None:
        holding = _held.paths = set()
    if path in holding:
        yield
        return
    with file_lock(path):
        holding.add(path)
        try:
            yield
        finally:
            holding.discard(path)


class LockedSqliteEventLogStorage(SqliteEventLogStorage):
    """The event log whose database creation (index and per-run shards) holds ``lock_dir``'s creation lock."""

    def __init__(self, base_dir: str, lock_dir: str, inst_data=None):
        self._lock_dir = lock_dir
        super().__init__(base_dir, inst_data=inst_data)

    def _initdb(self, engine, for_index_shard=False) -> None:
        with creation_lock(self._lock_dir):
            super()._initdb(engine, for_index_shard=for_index_shard)


class LockedSqliteStorage(DagsterSqliteStorage):
    """`DagsterSqliteStorage` (same files, same layout) whose first-time creation is serialized across processes."""

    def __init__(self, base_dir: str, inst_data=None):
        self.base_dir = base_dir
        with creation_lock(base_dir):
            # What DagsterSqliteStorage.__init__ builds, the event log with its shard creation locked too.
            self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
            self._event_log_storage = LockedSqliteEventLogStorage(_event_logs_directory(base_dir), base_dir)
            self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> LockedSqliteStorage:  # ty: ignore[invalid-method-override]
        return cls.from_local(inst_data=inst_data, **config_value)  # the parent's names DagsterSqliteStorage
