"""The AzureML environment of the steps: `azureml_steps/environment.yml` on a base image.

Its version is a hash of the conda spec and the image, so an unchanged environment keeps its version
and AzureML never rebuilds it (image builds take minutes); a changed spec gets a new version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from biodiv_core.settings import REPO_ROOT

CONDA_FILE = REPO_ROOT / "azureml_steps" / "environment.yml"
# AzureML's curated Ubuntu base with conda; the tag is part of the version hash.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


def environment_version(conda_file: str | Path = CONDA_FILE, image: str = BASE_IMAGE) -> str:
    """16 hex characters of sha256(image + conda spec): stable for the same inputs."""
    content = Path(conda_file).read_bytes()
    digest = hashlib.sha256(image.encode("utf-8") + b"\n" + content).hexdigest()
    return digest[:16]


def build_environment(name: str, conda_file: str | Path = CONDA_FILE, image: str = BASE_IMAGE):
    from azure.ai.ml.entities import Environment

    return Environment(
        name=name,
        version=environment_version(conda_file, image),
        image=image,
        conda_file=str(conda_file),
        description="biodiv step runtime (azureml_steps): biodiv_core dependencies and dagster-pipes",
        tags={"source": "azureml_steps/environment.yml"},
    )


def register_environment(
    ml_client: Any, name: str, conda_file: str | Path = CONDA_FILE, image: str = BASE_IMAGE, log=None
) -> tuple[str, bool]:
    """Register the environment unless its version exists; returns ("azureml:<name>:<version>", created)."""
    from azure.core.exceptions import ResourceNotFoundError

    version = environment_version(conda_file, image)
    reference = f"azureml:{name}:{version}"
    try:
        ml_client.environments.get(name=name, version=version)
        created = False
    except ResourceNotFoundError:
        ml_client.environments.create_or_update(build_environment(name, conda_file, image))
        created = True
        if log is not None:
            log.info(f"[azureml] registered environment {reference}")
    return reference, created


def ensure_environment(ml_client: Any, settings: Any, log=None) -> str:
    """The environment reference for step jobs, registering it on first use."""
    return register_environment(ml_client, settings.environment_name, log=log)[0]
