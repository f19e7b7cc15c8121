"""AzureML data assets of the data store (DESIGN section 3).

`<site>-training-features`, `<site>-training-species` and (when the site has rasters)
`<site>-covariates` are uri_folder data assets whose versions mirror the local data store's integer
version folders. Jobs get an explicit version, never a label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biodiv_core.errors import NotFoundError

DATA_SUFFIXES = ("-training-features", "-training-species", "-covariates")


def list_data_versions(ml_client: Any, name: str) -> list[str]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return [str(data.version) for data in ml_client.data.list(name=name)]
    except ResourceNotFoundError:
        return []


def _sort_key(version: str) -> tuple[int, int | str]:
    return (1, int(version)) if version.isdigit() else (0, version)


def resolve_data_version(ml_client: Any, name: str, version: int | str | None = None) -> int | str:
    """The explicit version to use: ``version`` if it exists, else the highest; NotFoundError lists what exists."""
    versions = sorted(list_data_versions(ml_client, name), key=_sort_key)
    if not versions:
        raise NotFoundError(
            f"AzureML data asset {name!r} does not exist in the workspace: register your data store with "
            "`biodiv azureml upload-data --root DIR`."
        )
    if version is None:
        latest = versions[-1]
        return int(latest) if latest.isdigit() else latest
    if str(version) not in versions:
        raise NotFoundError(
            f"AzureML data asset {name!r} has no version {version}; available versions: {', '.join(versions)}. "
            "Pick one of them or upload the new version with `biodiv azureml upload-data --root DIR`."
        )
    return int(version) if str(version).isdigit() else version


def local_data_versions(root: str | Path) -> list[tuple[str, int, Path]]:
    """(asset, version, folder) of every training data asset version in a local data store root."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"Data store root {root} is not a folder: pass the folder holding <site>-training-*.")
    found = []
    for asset_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(DATA_SUFFIXES)):
        for version_dir in sorted(p for p in asset_dir.iterdir() if p.is_dir() and p.name.isdigit()):
            found.append((asset_dir.name, int(version_dir.name), version_dir))
    if not found:
        raise NotFoundError(
            f"No <site>-training-features/<version>/ or <site>-training-species/<version>/ folders under {root}: "
            "see DESIGN section 3 for the layout (e.g. `biodiv data generate-data` writes one)."
        )
    return found


def upload_data(ml_client: Any, root: str | Path, log=print) -> list[dict[str, Any]]:
    """Register each local version as a uri_folder data asset with the same version number (existing ones skipped)."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data
    from azure.core.exceptions import ResourceNotFoundError

    summary = []
    for asset, version, folder in local_data_versions(root):
        try:
            ml_client.data.get(name=asset, version=str(version))
            status = "exists"
        except ResourceNotFoundError:
            ml_client.data.create_or_update(
                Data(
                    name=asset,
                    version=str(version),
                    type=AssetTypes.URI_FOLDER,
                    path=str(folder),
                    description=f"biodiv data store {asset} version {version}",
                    tags={"source": "biodiv azureml upload-data"},
                )
            )
            status = "registered"
        log(f"{asset}:{version} {status}")
        summary.append({"name": asset, "version": version, "status": status})
    return summary
