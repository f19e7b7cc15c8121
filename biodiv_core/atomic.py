"""Write a folder so that readers see all of it or none of it; one process at a time where that matters.

Two ways to commit a step's output folder, one contract (`output_dir` to write, `require_complete` to read), the
way chosen by the launcher through ``BIODIV_OUTPUT_COMMIT`` (`OutputCommit`):

- ``rename`` (default, local disks): files go to a hidden temporary sibling renamed into place when the block
  succeeds; on any error the temporary folder is removed and the final path never appears.
- ``marker`` (AzureML read-write mounts): blobfuse cannot rename a directory (copy-and-delete or unsupported), so
  files are written in place and a marker file (`COMPLETE_MARKER`) is written last. A folder without the marker
  does not exist as an output: `require_complete` refuses it, a new attempt clears it and writes again.
"""

import contextlib
import enum
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from biodiv_core.errors import ConfigError, NotFoundError

COMMIT_ENV = "BIODIV_OUTPUT_COMMIT"
COMPLETE_MARKER = "_BIODIV_COMPLETE"
COMPLETE_MARKER_KEY = "complete_marker"  # the metadata entry a step reports for a folder written in place


class OutputCommit(enum.Enum):
    RENAME = "rename"
    MARKER = "marker"

    def env(self) -> dict[str, str]:
        """The step environment that selects this way of committing (what a launcher adds)."""
        return {COMMIT_ENV: self.value}


def output_commit() -> OutputCommit:
    """How this process commits output folders (``BIODIV_OUTPUT_COMMIT``, read at call time)."""
    value = os.environ.get(COMMIT_ENV, "").strip() or OutputCommit.RENAME.value
    try:
        return OutputCommit(value)
    except ValueError:
        choices = ", ".join(item.value for item in OutputCommit)
        raise ConfigError(f"{COMMIT_ENV}={value!r} is not one of {choices}; unset it to rename.") from None


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """The folder to write ``path``'s files into, committed as `output_commit` says when the block succeeds."""
    writer = marked_output_dir if output_commit() is OutputCommit.MARKER else atomic_output_dir
    with writer(path) as folder:
        yield folder


def require_complete(path: str | os.PathLike, asset: str) -> None:
    """Raise `NotFoundError` when ``path`` (an output of ``asset``) was written in place and never finished."""
    if output_commit() is not OutputCommit.MARKER:
        return  # a renamed folder exists whole or not at all
    if not (Path(path) / COMPLETE_MARKER).is_file():
        raise NotFoundError(
            f"{path} has no {COMPLETE_MARKER} marker: the step writing {asset} did not finish there "
            f"(failed or killed mid-write); materialize {asset} again."
        )


@contextlib.contextmanager
def marked_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    final = Path(path)
    final.mkdir(parents=True, exist_ok=True)
    if (final / COMPLETE_MARKER).exists():
        raise FileExistsError(f"Output folder {final} already holds a finished output; choose a new output path.")
    _clear(final)  # left by an attempt that died mid-write: without the marker nobody reads it
    try:
        yield final
    except BaseException:
        _clear(final)
        raise
    files = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file())
    with open(final / COMPLETE_MARKER, "w") as handle:  # written last, created in place (no rename)
        json.dump({"files": files}, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _clear(folder: Path) -> None:
    for item in folder.iterdir():
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        # An empty folder made by a job runner (AzureML mounts outputs) or an earlier attempt.
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(f"Output folder {final} already exists and is not empty; choose a new output path.")
    try:
        os.replace(tmp, final)
    except BaseException:  # the rename itself failed (full or read-only disk): leave no hidden copy behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes on this machine (flock)."""
    import fcntl

    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
