"""Loaded by every Python process of a fake AzureML job (the fake puts this folder first on PYTHONPATH).

Two things a real job has that the test machine does not:

- No biodiv installed: the job imports only its code snapshot, so the test venv's editable install of the
  repository (a meta-path finder) is removed; a module missing from the snapshot fails as it would on AzureML.
- blobfuse read-write mounts cannot rename a directory (azure-storage-fuse issues 798, 1285: copy-and-delete or
  "not supported"). The fake mounts outputs as plain folders, so ``os.rename``/``os.replace`` (and so
  ``Path.rename``/``Path.replace``) of a directory inside a mount (``BIODIV_FAKE_MOUNTS``, one per line) fail
  with ENOTSUP, as on blobfuse; file renames keep working, as on blobfuse.
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
