"""Loaded by every Python process of a fake AzureML job (the fake puts this folder first on PYTHONPATH).

Two things a real job has that the test machine does not:

- No biodiv installed: the job imports only its code snapshot, so the test venv's editable install of the
  repository (a meta-path finder) is removed; a module missing from the snapshot fails as it would on AzureML.
- blobfuse read-write mounts cannot rename a directory (azure-storage-fuse issues 798, 1285: copy-and-delete or
  "not supported"). The fake mounts outputs as plain folders, so ``os.rename``/``os.replace`` (and so
  ``Path.rename``/``Path.replace``) of a directory inside a mount (``BIODIV_FAKE_MOUNTS``, one per line) fail
  with ENOTSUP, as on blobfuse; file renames keep working, as on blobfuse.

And a fault some tests script (``BIODIV_FAKE_FULL_MOUNTS=ENOSPC`` or ``EROFS``): every file opened for writing
inside a mount fails with that errno, as on a full cache disk or a read-only datastore.
"""

import errno
import os
import sys

sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable___biodiv")]

_MOUNTS = [line for line in os.environ.get("BIODIV_FAKE_MOUNTS", "").splitlines() if line]


def _in_mount(path) -> bool:
    text = os.path.abspath(os.fsdecode(path))
    return any(text == mount or text.startswith(mount.rstrip("/") + "/") for mount in _MOUNTS)


def _refusing(rename):
    def refuse_directory_renames(src, dst, *args, **kwargs):
        if os.path.isdir(src) and (_in_mount(src) or _in_mount(dst)):
            raise OSError(errno.ENOTSUP, "fake blobfuse mount: a directory cannot be renamed", os.fsdecode(src))
        return rename(src, dst, *args, **kwargs)

    return refuse_directory_renames


if _MOUNTS:
    os.rename = _refusing(os.rename)
    os.replace = _refusing(os.replace)


_FULL = os.environ.get("BIODIV_FAKE_FULL_MOUNTS")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def _refuse(path):
    code = getattr(errno, _FULL)
    raise OSError(code, os.strerror(code), os.fsdecode(path))


def _full_open(open_file):
    def open_refusing_writes(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and _in_mount(file):
            _refuse(file)
        return open_file(file, mode, *args, **kwargs)

    return open_refusing_writes


def _full_os_open(os_open):
    def os_open_refusing_writes(path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS and _in_mount(path):
            _refuse(path)
        return os_open(path, flags, *args, **kwargs)

    return os_open_refusing_writes


if _MOUNTS and _FULL:
    import builtins
    import io

    builtins.open = io.open = _full_open(io.open)
    os.open = _full_os_open(os.open)
