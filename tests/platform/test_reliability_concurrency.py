"""Concurrency on the default SQLite stores: a 12-partition backfill 3 runs at a time, and racing registrations.

The backfill runs the steps that write to both stores (prepared_data: Dagster event log; the train step:
MLflow params, per-trial metrics, artifacts, plus the Dagster materializations) for 12 partitions in 3
worker processes on one DAGSTER_HOME and one MLflow SQLite file, as `biodiv main --parallel 3` or three
queued daemon runs do. Tiny data and max_evals 2 keep it to about a minute here; score and train_to_deploy
add no new kind of store write.
"""

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

import dagster as dg
import pytest
from deployment_helpers import copy_model, save_model
from reliability_helpers import valid_tables, write_store

from biodiv_core import settings
from biodiv_core.tracking import ensure_experiment
from biodiv_dagster.instance import get_instance
from biodiv_dagster.partitions import partition_key

SITES = ["everglades", "yellowstone", "acadia"]
SPECIES = ["Cygnus buccinator", "Lynx canadensis", "Alces alces", "Bison bison"]
SELECTION = ["prepared_data", "best_parameters", "train_test_split"]


def _materialize(site: str, species: str) -> tuple[str, str]:
    """One backfill run, in a worker process: returns (partition, '' or the failure text)."""
    from biodiv_dagster.launcher.local import LocalStepLauncher
    from biodiv_dagster.training.assets import training_assets
    from biodiv_dagster.training.config import training_run_config
    from biodiv_dagster.training.runner import failure_message
    from biodiv_dagster.training.sync import add_partition

    instance = get_instance()
    site_slug, species_slug = add_partition(instance, site, species)
    key = str(partition_key(site_slug, species_slug))
    try:
        result = dg.materialize(
            training_assets,
            selection=SELECTION,
            instance=instance,
            partition_key=key,
            resources={"step_launcher": LocalStepLauncher()},
            run_config=training_run_config(SELECTION, max_evals=2, n_folds=2, seed=1, num_threads=1),
            tags={"correlation_id": "backfill-12"},
            raise_on_error=False,
        )
    except Exception as exc:  # a storage error outside any step is a failure too
        return key, f"{type(exc).__name__}: {exc}"
    return key, "" if result.success else failure_message(result)


def test_twelve_partition_backfill_three_at_a_time_has_no_failures(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for site in SITES:
        features, gold = valid_tables(40)
        for species in SPECIES:
            write_store(root, features, gold, site=site)
            gold_file = root / f"{site}-training-species" / "1" / "cygnus_buccinator_golddata.csv"
            target = gold_file.with_name(species.lower().replace(" ", "_") + "_golddata.csv")
            if target != gold_file:
                target.write_text(gold_file.read_text())
    monkeypatch.setenv("BIODIV_DATA_ROOT", str(root))
    get_instance()  # create DAGSTER_HOME + its dagster.yaml once
    ensure_experiment()  # as `biodiv main` does before its workers start

    pairs = [(site, species) for site in SITES for species in SPECIES]
    context = multiprocessing.get_context("spawn")  # workers inherit the test's environment (monkeypatched)
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        outcomes = list(pool.map(_materialize, *zip(*pairs, strict=True)))

    failures = {key: error for key, error in outcomes if error}
    assert failures == {}, failures
    instance = get_instance()
    runs = instance.get_runs()
    assert len(runs) == 12 and all(run.is_success for run in runs)
    for asset in SELECTION:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
        assert len({r.partition_key for r in records}) == 12, asset

    from biodiv_dagster.partitions import SITE_DIMENSION, SPECIES_DIMENSION
    from biodiv_dagster.training.sync import load_names

    names = load_names()  # written by every worker at once: no name lost
    assert set(names[SITE_DIMENSION].values()) == set(SITES)
    assert set(names[SPECIES_DIMENSION].values()) == set(SPECIES)

    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    train_runs = client.search_runs(experiments, filter_string="tags.step = 'train'", max_results=100)
    assert len(train_runs) == 12 and {r.info.status for r in train_runs} == {"FINISHED"}
    assert len({(r.data.tags["site"], r.data.tags["species"]) for r in train_runs}) == 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "lgbm_gbif_model"
    save_model(folder)
    return folder


def test_two_registrations_of_one_model_at_once_get_distinct_versions_and_one_deployed_alias(model_dir, tmp_path):
    from mlflow import MlflowClient

    from biodiv_dagster.deployment.backend import DEPLOYED_ALIAS
    from biodiv_dagster.deployment.local import LocalDeploymentBackend

    backend = LocalDeploymentBackend().backend()
    name, endpoint = "lgbm-everglades-cygnus-buccinator", "b-everglad-cygnus-race"
    sources = [copy_model(model_dir, tmp_path / f"m{i}").resolve().as_uri() for i in range(2)]
    start = threading.Barrier(2)
    results, errors = {}, []

    def register_and_deploy(source):
        try:
            start.wait()
            version = backend.register(source, name, tags={"roc_auc": "0.8"})
            results[source] = version
            backend.deploy(name, version, endpoint, "everglades", "Cygnus buccinator")
        except Exception as exc:  # collected: an exception in a thread would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=register_and_deploy, args=(s,)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(results.values()) == ["1", "2"]  # distinct versions

    client = MlflowClient(registry_uri=backend.tracking_uri)
    versions = {str(v.version): v.source for v in client.search_model_versions(f"name = '{name}'")}
    assert versions == {version: source for source, version in results.items()}  # each version is its own source
    deployed = client.get_model_version_by_alias(name, DEPLOYED_ALIAS)
    import json

    record = json.loads((settings.endpoints_dir() / f"{endpoint}.json").read_text())
    assert record["version"] == str(deployed.version)  # one alias, and the endpoint serves that version
    assert record["model_source"] == versions[str(deployed.version)]
