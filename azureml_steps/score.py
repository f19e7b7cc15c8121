"""Step `score`: best parameters + train/test split -> held-out metrics and plots (asset `scores`).

python -m azureml_steps.score --site NAME --species NAME --best-parameters DIR --split DIR --output DIR
    [--num-threads T] [--correlation-id ID]   (all options: --help; contract: biodiv_core.step_args.ScoreArgs)
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting
from biodiv_core.evaluation.outputs import IMAGES, METRICS_FILE, QUALITY_SCORE_KEYS
from biodiv_core.step_args import ScoreArgs

# Inline images above this size are left out of the metadata (the PNG path is still reported).
MAX_INLINE_IMAGE_BYTES = 200_000


def main(args: ScoreArgs) -> dict:
    from biodiv_core.stages.score import run_score

    summary = run_score(args)
    reporting.report(ScoreArgs.asset_keys()["output"], scores_metadata(summary, args))
    return summary


def metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-class and averaged precision/recall/F1/support rows from a classification-report dict."""
    rows = []
    for name, values in metrics.items():
        if isinstance(values, dict) and {"precision", "recall"} <= set(values):
            rows.append(
                {"class": name, **{k: values.get(k, "") for k in ("precision", "recall", "f1-score", "support")}}
            )
    return rows


def scores_metadata(summary: dict[str, Any], args: ScoreArgs) -> dict[str, Any]:
    folder = Path(args.output)
    metrics = json.loads((folder / METRICS_FILE).read_text())
    report = metrics.get("classification_report", metrics) if isinstance(metrics, dict) else {}
    roc_auc = summary.get("roc_auc", metrics.get("roc_auc"))
    accuracy = summary.get("accuracy", metrics.get("accuracy", report.get("accuracy")))
    metadata: dict[str, Any] = {
        **reporting.common(args.output, args),
        "roc_auc": reporting.number(roc_auc),
        "accuracy": reporting.number(accuracy),
        "metrics": reporting.md(
            reporting.markdown_table(metrics_rows(report), ["class", "precision", "recall", "f1-score", "support"])
        ),
        "metrics_json": reporting.as_json(metrics),
    }
    for key, file_name in IMAGES.items():
        image = folder / file_name
        if image.is_file():
            metadata[key] = reporting.path(image)
            if image.stat().st_size <= MAX_INLINE_IMAGE_BYTES:
                encoded = base64.b64encode(image.read_bytes()).decode("ascii")
                metadata[f"{key}_image"] = reporting.md(f"![{key}](data:image/png;base64,{encoded})")
    for key in ("mlflow_run_id", "mlflow_run_uri"):
        if summary.get(key):
            metadata[key] = reporting.text(summary[key])
    for key in QUALITY_SCORE_KEYS:
        if summary.get(key) is not None:
            metadata[key] = reporting.number(summary[key])
    if summary.get("top_features"):
        metadata["top_features"] = reporting.as_json(list(summary["top_features"]))
    if summary.get("cv_strategy"):
        metadata["cv_strategy"] = reporting.text(str(summary["cv_strategy"]))
    return metadata


def cli(argv=None) -> int:
    return _cli.cli(ScoreArgs, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
