"""Step `score`: best parameters + train/test split -> held-out metrics and plots (asset `scores`).

python -m azureml_steps.score --site NAME --species NAME --best-parameters DIR --split DIR --output DIR
    [--num-threads T] [--correlation-id ID]   (all options: --help; contract: biodiv_core.step_args.ScoreArgs)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting
from azureml_steps.reports import scores_report
from biodiv_core.evaluation.outputs import METRICS_FILE, QUALITY_SCORE_KEYS
from biodiv_core.step_args import ScoreArgs


def main(args: ScoreArgs) -> dict:
    from biodiv_core.stages.score import run_score

    summary = run_score(args)
    reporting.report(ScoreArgs.asset_keys()["output"], scores_metadata(summary, args))
    return summary


def scores_metadata(summary: dict[str, Any], args: ScoreArgs) -> dict[str, Any]:
    """Numbers as numbers (4 significant digits; the cross-partition plots use them) and one `report`."""
    folder = Path(args.output)
    metrics = json.loads((folder / METRICS_FILE).read_text())
    metadata: dict[str, Any] = {
        **reporting.common(args.output, args),
        "report": reporting.md(scores_report(summary, metrics, folder)),
        "roc_auc": reporting.number(summary.get("roc_auc", metrics.get("roc_auc"))),
        "accuracy": reporting.number(summary.get("accuracy", metrics.get("accuracy"))),
    }
    metadata.update(reporting.mlflow_run(summary))
    for key in QUALITY_SCORE_KEYS:
        if summary.get(key) is not None:
            metadata[key] = reporting.number(summary[key])
    if summary.get("top_features"):
        metadata["top_features"] = reporting.as_json(list(summary["top_features"]))
    if summary.get("cv_strategy"):
        metadata["cv_strategy"] = reporting.text(str(summary["cv_strategy"]))
    if summary.get("auc_caveat"):  # presence-only species: what the AUC above compares
        metadata["auc_caveat"] = reporting.text(str(summary["auc_caveat"]))
    return metadata


def cli(argv=None) -> int:
    return _cli.cli(ScoreArgs, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
