"""Step `score`: best parameters + train/test split -> held-out metrics and heatmaps (asset `scores`).

python -m azureml_steps.score --best-parameters DIR --split DIR --output DIR --num-threads T [--correlation-id ID]
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting

ASSET_KEY = "scores"
IMAGES = {
    "confusion_matrix": "confusion_matrix.png",
    "classification_report": "classification_report.png",
    # issue 7
    "calibration_curve": "calibration_curve.png",
    "importance": "explanations/importance.png",
    "shap_summary": "explanations/shap_summary.png",
    "response_curves": "explanations/response_curves.png",
}
# Issue 7 numbers of the score stage (biodiv_core.model_quality), reported when present.
QUALITY_NUMBERS = (
    "threshold",
    "tss",
    "kappa",
    "sensitivity",
    "specificity",
    "brier",
    "boyce",
    "baseline_roc_auc",
    "lift",
    "roc_auc_random_cv",
    "roc_auc_spatial_cv",
    "optimism_gap",
)
# Inline images above this size are left out of the metadata (the PNG path is still reported).
MAX_INLINE_IMAGE_BYTES = 200_000
logger = logging.getLogger("azureml_steps.score")


def build_parser():
    p = _cli.parser("score", __doc__.splitlines()[0])
    p.add_argument("--best-parameters", required=True, help="best_parameters folder (best_parameters.json)")
    p.add_argument("--split", required=True, help="train_test_split folder (x/y train/test parquet)")
    p.add_argument("--output", required=True, help="output folder for metrics.json and heatmap PNGs")
    p.add_argument("--num-threads", type=int, required=True, help="LightGBM threads (never left to LightGBM)")
    return p


def main(best_parameters: str, split: str, output: str, num_threads: int, correlation_id: str | None = None) -> dict:
    from biodiv_core.stages import run_score

    summary = run_score(
        best_parameters=best_parameters,
        split=split,
        output=output,
        num_threads=num_threads,
        correlation_id=correlation_id,
    )
    reporting.report(ASSET_KEY, scores_metadata(summary, output, correlation_id))
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


def scores_metadata(summary: dict[str, Any], output: str, correlation_id: str | None) -> dict[str, Any]:
    folder = Path(output)
    metrics = json.loads((folder / "metrics.json").read_text())
    report = metrics.get("classification_report", metrics) if isinstance(metrics, dict) else {}
    roc_auc = summary.get("roc_auc", metrics.get("roc_auc"))
    accuracy = summary.get("accuracy", metrics.get("accuracy", report.get("accuracy")))
    metadata: dict[str, Any] = {
        "path": reporting.path(output),
        "correlation_id": reporting.text(correlation_id or ""),
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
    for key in QUALITY_NUMBERS:
        if summary.get(key) is not None:
            metadata[key] = reporting.number(summary[key])
    if summary.get("top_features"):
        metadata["top_features"] = reporting.as_json(list(summary["top_features"]))
    if summary.get("cv_strategy"):
        metadata["cv_strategy"] = reporting.text(str(summary["cv_strategy"]))
    return metadata


def cli(argv=None) -> int:
    return _cli.cli("score", build_parser, main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(cli())
