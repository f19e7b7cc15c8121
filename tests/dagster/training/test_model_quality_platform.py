"""Issue 7 through the platform: the cv_strategy setting and `biodiv run --json` quality keys."""

import json
import os
import subprocess
import sys

import pytest

from biodiv_core import settings
from biodiv_core.data.generate import generate_datastore
from biodiv_core.errors import ConfigError
from biodiv_core.run_settings import load_run_settings
from biodiv_dagster.training.config import training_run_config

CLI = [sys.executable, "-c", "import sys; from biodiv_dagster.cli import main; sys.exit(main())"]
QUALITY_KEYS = ("roc_auc_random_cv", "roc_auc_spatial_cv", "tss", "threshold", "boyce", "brier", "baseline_roc_auc")


def test_cv_strategy_setting_from_file_then_environment(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "run.yml").write_text("cv_strategy: checkerboard\nblock_size_km: 15\n")
    monkeypatch.setenv("BIODIV_CONFIG_DIR", str(folder))
    defaults = load_run_settings()
    assert (defaults.cv_strategy, defaults.block_size_km) == ("checkerboard", 15.0)
    monkeypatch.setenv("BIODIV_CV_STRATEGY", "spatial_blocks")
    assert load_run_settings().cv_strategy == "spatial_blocks"
    with pytest.raises(ConfigError, match="block_size_km"):
        training_run_config(block_size_km=0)
    monkeypatch.setenv("BIODIV_CV_STRATEGY", "kfold")
    with pytest.raises(ConfigError, match="cv_strategy='kfold'"):
        load_run_settings()
    assert (  # the run's own value wins over a bad environment value
        training_run_config(cv_strategy="checkerboard").ops["best_parameters_and_split"].cv_strategy == "checkerboard"
    )


def test_biodiv_run_json_reports_spatial_and_random_cv_threshold_and_baseline(tmp_path):
    data = tmp_path / "data"
    generate_datastore(data, sites=["yellowstone"], species=["Haliaeetus leucocephalus"], rows=900, seed=5)
    env = {**os.environ, "BIODIV_CV_STRATEGY": "spatial_blocks", "BIODIV_BLOCK_SIZE_KM": "10"}
    completed = subprocess.run(
        [*CLI, "run", "--site", "yellowstone", "--species", "Haliaeetus leucocephalus", "--data-root", str(data)]
        + ["--max-evals", "2", "--folds", "3", "--num-threads", "1", "--json"],
        capture_output=True,
        text=True,
        cwd=settings.REPO_ROOT,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    for key in QUALITY_KEYS:
        assert isinstance(result[key], float), (key, result.get(key))
    assert 0 < result["threshold"] < 1 and -1 <= result["tss"] <= 1 and 0 <= result["brier"] <= 1
    assert 0.5 < result["roc_auc_spatial_cv"] <= 1 and 0.5 < result["baseline_roc_auc"] <= 1
    assert isinstance(result["top_features"], list) and len(result["top_features"]) == 5


def test_quality_gate_can_require_lift_over_the_baseline():
    from biodiv_dagster.deployment.gate import decide

    assert decide(0.8, None, has_deployed=False, floor=0.6, lift=-0.02).deploy  # off by default
    refused = decide(0.8, None, has_deployed=False, floor=0.6, lift=-0.02, min_lift=0.0)
    assert not refused.deploy and "lift over the baseline -0.0200 is below min_lift 0.0000" in refused.reason
    missing = decide(0.8, None, has_deployed=False, floor=0.6, min_lift=0.0)
    assert not missing.deploy and "`lift` missing" in missing.reason
    assert decide(0.8, 0.79, has_deployed=True, floor=0.6, lift=0.03, min_lift=0.01).deploy
