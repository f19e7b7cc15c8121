"""Names from users (sites, species, partition keys) never reach a path, job name or endpoint name unchecked."""

import re
import shlex
from pathlib import Path

import pytest

from biodiv_core import naming
from biodiv_core.errors import InvalidNameError
from biodiv_core.step_args import PrepArgs
from biodiv_dagster.launcher.local import LocalStepLauncher
from biodiv_dagster.launcher.spec import StepSpec

TRAVERSAL = ["../etc/passwd", "..", "a/../../b", "/abs/path", "C:\\windows", "x\\..\\y", "ok/..", "\x00null", "a\nb"]
ODD_BUT_ALLOWED = [
    "Cygnus; rm -rf ~",
    "$(touch pwned)",
    "`id` && echo x | cat > y",
    "Grus grus 'quoted' \"double\"",
    "Ursus arctos ΑΒΓ",
    "熊猫 Ailuropoda",
    "Ängström élan",
    "🦢 swan",
    "x" * 200,
    "*?[]{}|<>!#%",
]
SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
ENDPOINT = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


@pytest.mark.parametrize("name", TRAVERSAL + ["", "   ", "x" * 201])
def test_unsafe_names_are_rejected_everywhere(name):
    for build in (
        lambda: naming.validate_name(name),
        lambda: naming.slugify(name),
        lambda: naming.species_file_name(name),
        lambda: naming.model_name("everglades", name),
        lambda: naming.endpoint_name(name, "Cygnus buccinator"),
        lambda: naming.features_asset_name(name),
        lambda: LocalStepLauncher().output_location("prepared_data", name, "cygnus-buccinator", "run-1"),
        lambda: LocalStepLauncher().output_location("prepared_data", "everglades", name, "run-1"),
    ):
        with pytest.raises(InvalidNameError):
            build()


@pytest.mark.parametrize("name", ODD_BUT_ALLOWED)
def test_odd_names_become_safe_slugs_paths_and_endpoint_names(name, tmp_path):
    slug = naming.slugify(name)
    assert SLUG.match(slug) and len(slug) <= naming.MAX_SLUG_LENGTH, slug
    assert naming.slugify(name) == slug  # stable
    model = naming.model_name("everglades", name)
    assert re.match(r"^[a-z0-9-]+$", model) and len(model) <= 255
    endpoint = naming.endpoint_name("everglades", name)
    assert ENDPOINT.match(endpoint) and 3 <= len(endpoint) <= 32, endpoint

    root = tmp_path / "storage"
    location = Path(
        LocalStepLauncher(storage_root=str(root)).output_location("prepared_data", "everglades", name, "r1")
    )
    assert location.resolve().is_relative_to(root.resolve())
    assert location.relative_to(root).parts == ("prepared_data", "everglades", slug, "r1")

    gold = naming.species_file_name(name)  # a file name inside the species folder, never a path
    assert "/" not in gold and "\\" not in gold and (tmp_path / gold).parent == tmp_path


def test_distinct_non_ascii_names_do_not_collide():
    names = ["熊猫 Ailuropoda", "熊 Ailuropoda", "Ailuropoda", "Ursus arctos ΑΒΓ", "Ursus arctos ΔΕΖ", "x" * 199 + "a"]
    names.append("x" * 199 + "b")
    assert len({naming.slugify(n) for n in names}) == len(names)
    assert len({naming.endpoint_name("everglades", n) for n in names}) == len(names)


def test_shell_metacharacters_reach_an_azureml_command_line_quoted():
    """The AzureML command is a shell line: every argument is quoted, a species name cannot inject a command."""
    species = "$(touch pwned); `id` | cat"  # no "/": names never hold a path separator
    spec = StepSpec(
        PrepArgs(
            site="everglades",
            species=species,
            features="azureml://datastores/d/paths/f/",
            species_dir="azureml://datastores/d/paths/s/",
            output="azureml://datastores/d/paths/out/run",
            correlation_id="c1",
        )
    )
    line = " ".join(["python", "-m", spec.module, *(shlex.quote(a) for a in spec.arguments())])
    parsed = shlex.split(line)
    assert parsed[parsed.index("--species") + 1] == species  # one argument, exactly the name


def test_biodiv_run_never_hands_a_name_to_a_shell(tmp_path, capfd, monkeypatch):
    from biodiv_core.data.generate import generate_datastore
    from biodiv_dagster.cli import main

    root = tmp_path / "data"
    generate_datastore(root, sites=["everglades"], species=["Cygnus buccinator"], rows=200, seed=1)
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    pwned = tmp_path / "pwned"
    for species in (f"$(touch {pwned})", f"x; touch {pwned}", f"`touch {pwned}`"):
        code = main(["run", "--site", "everglades", "--species", species, "--data-root", str(root)])
        err = capfd.readouterr().err
        assert code == 2 and ("No gold data" in err or "path separator" in err), err
        assert "Traceback" not in err
    assert not pwned.exists()
