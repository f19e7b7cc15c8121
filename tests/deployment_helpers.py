"""Shared by the deployment tests: a small real MLflow LightGBM model and runless upstream events.

The deployment tests never run the training assets: they report the metadata those assets promise
(docs/contracts.md) with `report_runless_asset_event`, which is all the deployment side reads.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from biodiv_dagster.partitions import partition_key

FEATURES = ["elevation", "precip", "landcover"]
TRAIN_PARAMS = {"objective": "binary", "num_leaves": 7, "num_boost_round": 20, "min_data_in_leaf": 10}


def sample_features(n_rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "gbifid": np.arange(1000, 1000 + n_rows),
            "elevation": rng.normal(1000, 300, n_rows),
            "precip": rng.uniform(0, 100, n_rows),
            "landcover": rng.choice(["forest", "grass", "water"], n_rows),
        }
    )
    frame["landcover"] = frame["landcover"].astype("category")
    return frame


def save_model(folder: Path, seed: int = 0, metadata: dict | None = None):
    """Train a small LightGBM booster (one thread) and save it as an MLflow model folder; return it."""
    import lightgbm as lgb
    import mlflow.lightgbm

    frame = sample_features(seed=seed)
    noise = np.random.default_rng(seed + 1).normal(0, 0.5, len(frame))
    target = ((frame["elevation"] - 1000) / 300 + (frame["landcover"] == "forest") + noise > 0.5).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_threads": 1, "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 10},
        lgb.Dataset(frame[FEATURES], target),
        num_boost_round=20,
    )
    # Explicit pip requirements: skips MLflow's slow requirement inference (a subprocess loading the model).
    mlflow.lightgbm.save_model(booster, str(folder), pip_requirements=["lightgbm"], metadata=metadata)
    return booster


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def add_partitions(instance: dg.DagsterInstance, sites, species) -> list[str]:
    instance.add_dynamic_partitions("site", list(sites))
    instance.add_dynamic_partitions("species", list(species))
    return [str(partition_key(site, sp)) for site in sites for sp in species]


def report(instance: dg.DagsterInstance, asset: str, partition: str, **metadata) -> int:
    """Record a runless materialization of ``asset`` for ``partition``; return its storage id."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=asset, partition=partition, metadata=metadata)
    )
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0].storage_id


def report_trained(instance, partition: str, model_dir: Path, roc_auc: float, correlation_id: str) -> int:
    """What a training run reports for a partition: scores then deployable_model (storage id of the latter)."""
    report(instance, "scores", partition, roc_auc=roc_auc, accuracy=0.8, correlation_id=correlation_id)
    return report(
        instance,
        "deployable_model",
        partition,
        model_uri=str(model_dir),
        model_path=str(model_dir),
        mlflow_run_id="r-" + correlation_id,
        correlation_id=correlation_id,
    )


def trained_in_a_run(storage: Path, site: str, species: str, threshold: float = 0.4):
    """What train_to_deploy does: the model folder in the step's storage, logged to the step's MLflow run.

    Returns (model folder, run id, booster).
    """
    from biodiv_core import tracking
    from biodiv_core.serving import mlflow_model
    from biodiv_core.training.model import fit_model

    features = sample_features(seed=0)
    target = ((features["elevation"] > 1000) | (features["landcover"] == "forest")).astype(int)
    booster = fit_model(features[FEATURES], target, TRAIN_PARAMS, num_threads=1)
    with tracking.tracked_run("train_to_deploy", site=site, species=species) as run:
        folder = mlflow_model.save_model(booster, storage, sample=features, threshold=threshold)
        tracking.log_artifacts(folder, artifact_path=mlflow_model.MODEL_DIR_NAME)
    return folder, run.info.run_id, booster


def mlflow_models_predict(model_uri: str, source: Path, workdir: Path) -> pd.DataFrame:
    """`mlflow models predict -m model_uri -i source -t csv --env-manager local` in a fresh process: its rows."""
    out = workdir / "predictions.out"
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    done = subprocess.run(
        [mlflow_cli, "models", "predict", "-m", model_uri, "-i", str(source), "-t", "csv", "-o", str(out),
         "--env-manager", "local"],
        capture_output=True, text=True, timeout=300, cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    rows = json.loads(text)["predictions"] if text.lstrip().startswith("{") else pd.read_csv(out).to_dict("records")
    return pd.DataFrame(rows)
