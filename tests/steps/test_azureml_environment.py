"""The AzureML step environment (`azureml_steps/environment.yml`): it resolves, and its pins agree with pyproject.toml.

The fake workspace runs jobs with the test venv, so nothing else would notice a job environment AzureML cannot
build. The resolution check asks pip to resolve the pip section for the job's Python and platform (a dry run:
package metadata only, nothing installed). It needs the package index (PyPI): without it the test fails, it
does not skip.
"""

import json
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from biodiv_core.settings import REPO_ROOT
from biodiv_dagster.azure_env import BASE_IMAGE, CONDA_FILE

# Packages pinned differently on purpose, with the reason. An entry whose versions agree again is stale (test fails).
ALLOWED_DIFFERENCES = {
    # azureml-mlflow (MLflow -> workspace tracking inside jobs) caps mlflow-skinny: <=3.15.0 for 1.62.0.post6.
    # The job saves models with it and the orchestrator loads them with its own MLflow; both directions load and
    # predict the same (README 'Run on Azure ML', "Two MLflow versions").
    "mlflow": "job MLflow capped by azureml-mlflow",
}
# glibc of the job image: Ubuntu 22.04 has glibc 2.35 (manylinux_2_35 and every older manylinux tag apply).
IMAGE_GLIBC_MINOR = 35
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(IMAGE_GLIBC_MINOR, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]


def _conda() -> dict:
    return yaml.safe_load(CONDA_FILE.read_text())


def _job_python() -> str:
    (python,) = [d for d in _conda()["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    return python.split("=", 1)[1]


def _job_requirements() -> list[str]:
    (section,) = [d["pip"] for d in _conda()["dependencies"] if isinstance(d, dict) and "pip" in d]
    return [str(line) for line in section]


def _pins(requirements: list[str], source: str) -> dict[str, str]:
    pins = {}
    for line in requirements:
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{source}: {line!r} is not pinned with =="
        pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def _project_pins() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"], "pyproject.toml")


def _job_pins() -> dict[str, str]:
    return _pins(_job_requirements(), "environment.yml")


# pip's words for an unreachable index (offline, proxy, DNS), as opposed to a resolution conflict.
_UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
    "ProxyError",
    "Temporary failure in name resolution",
)


def _pip_failure(output: str) -> str:
    """The part of pip's output that explains a failed resolution (conflict block, or the last error lines)."""
    lines = [line for line in output.splitlines() if not line.startswith("WARNING: Location ")]
    start = next((i for i, line in enumerate(lines) if "conflict is caused by" in line), None)
    if start is not None:
        return "\n".join(lines[start - 1 : start + 12])
    return "\n".join(lines[-25:])


@pytest.mark.registry
def test_job_pip_section_resolves_for_the_job_python_and_platform(tmp_path):
    assert "ubuntu22.04" in BASE_IMAGE, "the base image changed: update IMAGE_GLIBC_MINOR to its glibc"
    python = _job_python()
    requirements = _job_requirements()
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{python.replace('.', '')}",
        *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
        "--timeout",
        "60",
        "--retries",
        "2",
        "--report",
        str(report),
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=540)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(sign in output for sign in _UNREACHABLE):
            pytest.fail(
                "pip could not reach the package index, so environment.yml's pip section was not checked "
                f"(this test needs PyPI access; it does not skip). pip says:\n{_pip_failure(output)}",
                pytrace=False,
            )
        pytest.fail(
            f"azureml_steps/environment.yml's pip section does not resolve for Python {python} on "
            f"manylinux_2_{IMAGE_GLIBC_MINOR} x86_64 (the job image): AzureML could not build the step "
            f"environment. pip says:\n{_pip_failure(output)}",
            pytrace=False,
        )
    installed = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    for name, version in _job_pins().items():
        assert installed.get(name) == version, f"{name}=={version} resolved as {installed.get(name)}"


def test_job_and_project_pins_agree_except_the_listed_differences():
    project, job = _project_pins(), _job_pins()
    shared = sorted(set(project) & set(job))
    assert {"pandas", "numpy", "lightgbm", "azure-storage-blob", "mlflow"} <= set(shared)
    differ = {name: (project[name], job[name]) for name in shared if project[name] != job[name]}
    unexpected = {name: versions for name, versions in differ.items() if name not in ALLOWED_DIFFERENCES}
    assert not unexpected, f"pyproject.toml vs environment.yml pins differ: {unexpected} (align them or list why)"
    stale = sorted(set(ALLOWED_DIFFERENCES) - set(differ))
    assert not stale, f"ALLOWED_DIFFERENCES lists {stale}, which no longer differ: remove them"
    requires_python = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires_python).contains(f"{_job_python()}.0"), (_job_python(), requires_python)


def test_job_pins_match_the_test_venv_that_runs_the_fake_jobs():
    """The fake workspace runs jobs with this venv: it should hold the job's versions (except the listed ones)."""
    mismatched = {}
    for name, version in _job_pins().items():
        try:
            local = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # azureml-mlflow: only in the job
        if local != version and name not in ALLOWED_DIFFERENCES:
            mismatched[name] = {"job": version, "venv": local}
    assert not mismatched, f"the test venv differs from the job environment: {mismatched}"
