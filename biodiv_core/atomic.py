"""Write a folder so that readers see all of it or none of it; one process at a time where that matters.

Files go to a hidden temporary sibling that is renamed into place when the block succeeds;
on any error the temporary folder is removed and the final path never appears.
"""

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


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
