"""Versions of the data-store inputs a partition trains on (for metadata, staleness and automation).

`input_data_versions` reads the local data store; the deployment/automation code uses it to observe
new data versions and retrain exactly the partitions whose inputs changed.
"""

from __future__ import annotations

from pathlib import Path

from biodiv_core import settings
from biodiv_core.naming import features_asset_name, species_asset_name


def input_data_versions(site: str, species: str, data_root: str | Path | None = None) -> dict[str, int]:
    """``{"<site>-training-features": v, "<site>-training-species": v}``, latest versions (NotFoundError if absent).

    ``species`` is accepted for symmetry and future per-species assets: today one species asset
    version per site holds every gold file.
    """
    from biodiv_core.data import datastore

    root = Path(data_root) if data_root else settings.data_root()
    return {
        features_asset_name(site): datastore.resolve_version(root, features_asset_name(site)),
        species_asset_name(site): datastore.resolve_version(root, species_asset_name(site)),
    }


def data_version_string(versions: dict[str, int]) -> str:
    """Stable text form, e.g. ``everglades-training-features:2,everglades-training-species:1``."""
    return ",".join(f"{asset}:{versions[asset]}" for asset in sorted(versions))
