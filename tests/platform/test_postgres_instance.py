"""config/dagster.postgres.yaml on a real PostgreSQL server: a 2-partition backfill, two runs at once.

The instance is built from the shipped example (storage and concurrency exactly as shipped; only the Azure
Container Apps run launcher and the Blob compute logs are swapped for local ones, there is no Azure here).
Two `biodiv run` processes train, register and deploy one partition each at the same time: concurrent
writers on one instance is what SQLite cannot take and what this configuration is for. MLflow's store
is a database on the same server, as in production.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from postgres import postgres_server  # noqa: F401  (fixture)

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore
from biodiv_core.naming import slugify
from biodiv_dagster.partitions import partition_key

pytestmark = pytest.mark.postgres

SPECIES = ["Cygnus buccinator", "Lynx canadensis"]


def _instance_yaml(server) -> dict:
    config = yaml.safe_load((settings.REPO_ROOT / "config" / "dagster.postgres.yaml").read_text())
    assert config["run_launcher"]["class"] == "AcaRunLauncher"  # what production gets
    config.pop("run_launcher")
    config.pop("compute_logs")
    return config


def test_config_validates_with_every_section(postgres_server, monkeypatch):  # noqa: F811
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for name, value in {**postgres_server.env(), "DAGSTER_ACA_REGION": "westeurope"}.items():
        monkeypatch.setenv(name, value)
    config = yaml.safe_load((settings.REPO_ROOT / "config" / "dagster.postgres.yaml").read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors


def test_backfill_of_two_partitions_on_postgres(postgres_server, tmp_path, monkeypatch):  # noqa: F811
    home = settings.dagster_home()
    (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_yaml(postgres_server)))
    connection = psycopg2.connect(host=postgres_server.host, port=postgres_server.port, user=postgres_server.user)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE mlflow")
    connection.close()
    mlflow_uri = f"postgresql+psycopg2://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/mlflow"
    data_root = tmp_path / "data"
    generate_datastore(data_root, sites=["everglades"], species=SPECIES, rows=800, seed=3)
    env = {
        **os.environ,
        **postgres_server.env(),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "BIODIV_DATA_ROOT": str(data_root),
    }
    # MLflow creates its tables on first use: once here, so the two runs do not race on the schema.
    subprocess.run(
        [sys.executable, "-c", f"import mlflow; mlflow.MlflowClient({mlflow_uri!r}).search_experiments()"],
        env=env,
        check=True,
        capture_output=True,
    )

    # The partitions exist before the runs start, as in a backfill (the sync sensor adds them). Two `biodiv run`
    # of one new site at once both insert the site key and one can fail on dagster's unique index.
    add = "from biodiv_dagster.instance import get_instance\nfrom biodiv_dagster.training.sync import add_partition\n"
    add += "".join(f"add_partition(get_instance(), 'everglades', {name!r})\n" for name in SPECIES)
    subprocess.run([sys.executable, "-c", add], env=env, check=True, capture_output=True)

    command = [str(Path(sys.executable).parent / "biodiv"), "run", "--site", "everglades", "--json"]
    options = ["--max-evals", "2", "--folds", "3", "--num-threads", "1"]
    runs = [
        subprocess.Popen(
            [*command, "--species", name, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for name in SPECIES
    ]
    outputs = [run.communicate(timeout=400) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr.decode()[-3000:]

    for name, value in postgres_server.env().items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 16
    runs_done = instance.get_runs(dg.RunsFilter(job_name="train_models", statuses=[dg.DagsterRunStatus.SUCCESS]))
    expected = sorted(str(partition_key("everglades", slugify(name))) for name in SPECIES)
    assert sorted(r.tags["dagster/partition"] for r in runs_done) == expected
    for asset in ("prepared_data", "deployable_model", "registered_model"):
        keys = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert len(keys) == 2, (asset, keys)
    # The events really are in the server's tables (not a SQLite file that happened to be configured too).
    with psycopg2.connect(postgres_server.url) as db, db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] >= 4  # 2 training + 2 register-and-deploy runs
    assert not list(home.glob("**/*.db"))
