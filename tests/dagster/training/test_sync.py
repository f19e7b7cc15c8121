"""Partition sync: config x data store -> dynamic partitions, names resolvable, never deletes."""

import shutil

import dagster as dg
import pytest

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore
from biodiv_core.errors import ConfigError, NotFoundError
from biodiv_dagster.partitions import site_partitions, species_partitions
from biodiv_dagster.training import sync


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(settings.REPO_ROOT / "config" / "lgbm_params.yml", folder / "lgbm_params.yml")
    (folder / "sites.csv").write_text("site\nYellowstone\neverglades\nnowhere\n")
    (folder / "candidate_species.csv").write_text("species\nCygnus buccinator\nLynx canadensis\nDodo ineptus\n")
    monkeypatch.setenv("BIODIV_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    generate_datastore(
        root, sites=["yellowstone", "everglades"], species=["Cygnus buccinator", "Lynx canadensis"], rows=60
    )
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    return root


def test_plan_keeps_configured_names_that_have_data(config_dir, data_root):
    plan = sync.plan_sync()
    assert plan.sites == {"yellowstone": "Yellowstone", "everglades": "everglades"}
    assert plan.species == {"cygnus-buccinator": "Cygnus buccinator", "lynx-canadensis": "Lynx canadensis"}
    assert any("nowhere" in reason for reason in plan.skipped)
    assert any("Dodo ineptus" in reason and "dodo_ineptus_golddata.csv" in reason for reason in plan.skipped)


def test_sync_adds_partitions_and_never_deletes(config_dir, data_root):
    instance = dg.DagsterInstance.ephemeral()
    first = sync.sync_partitions(instance)
    assert sorted(first.added_sites) == ["everglades", "yellowstone"]
    assert sorted(instance.get_dynamic_partitions(species_partitions.name)) == ["cygnus-buccinator", "lynx-canadensis"]

    # Same inputs: nothing new. A species dropped from config keeps its partition (history stays visible).
    assert sync.sync_partitions(instance).added_species == []
    (config_dir / "candidate_species.csv").write_text("species\nCygnus buccinator\n")
    again = sync.sync_partitions(instance)
    assert again.added_sites == [] and again.added_species == []
    assert sorted(instance.get_dynamic_partitions(species_partitions.name)) == ["cygnus-buccinator", "lynx-canadensis"]


def test_names_resolve_back_from_slugs(config_dir, data_root):
    sync.sync_partitions(dg.DagsterInstance.ephemeral())
    assert sync.resolve_names("yellowstone", "cygnus-buccinator") == ("Yellowstone", "Cygnus buccinator")
    # Not in the names file: falls back to config; unknown species is a clear error.
    (settings.dagster_home() / sync.NAMES_FILE).unlink()
    assert sync.resolve_names("everglades", "lynx-canadensis") == ("everglades", "Lynx canadensis")
    with pytest.raises(NotFoundError, match="biodiv sync"):
        sync.resolve_names("everglades", "no-such-species")


def test_add_partition_records_a_name_outside_config(config_dir, data_root):
    instance = dg.DagsterInstance.ephemeral()
    assert sync.add_partition(instance, "everglades", "Ursus  Arctos") == ("everglades", "ursus-arctos")
    assert sync.resolve_names("everglades", "ursus-arctos") == ("everglades", "Ursus  Arctos")
    assert "ursus-arctos" in instance.get_dynamic_partitions(species_partitions.name)


def test_sensor_requests_only_new_keys(config_dir, data_root):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(site_partitions.name, ["yellowstone"])
    result = sync.partition_sync_sensor(dg.build_sensor_context(instance=instance))
    requests = {r.partitions_def_name: sorted(r.partition_keys) for r in result.dynamic_partitions_requests}
    assert requests == {"site": ["everglades"], "species": ["cygnus-buccinator", "lynx-canadensis"]}
    assert all(isinstance(r, dg.AddDynamicPartitionsRequest) for r in result.dynamic_partitions_requests)


def test_bad_config_file_is_a_clear_error(config_dir, data_root):
    (config_dir / "sites.csv").write_text("name\nyellowstone\n")
    with pytest.raises(ConfigError, match="sites.csv has no column 'site'"):
        sync.plan_sync()
