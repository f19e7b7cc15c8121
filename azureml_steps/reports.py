"""The one-click markdown reports of `scores` and `best_parameters`: key numbers, the cut-off each uses, plots.

Dagster shows a markdown metadata entry behind one "Show Markdown" click; everything a reader needs for
a partition is in that one entry, with the plots inlined as PNG data URIs (each up to
``MAX_INLINE_IMAGE_BYTES``; a larger one is named, and lies in the output folder, ``path``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from azureml_steps.reporting import markdown_table, significant
from biodiv_core.evaluation.outputs import IMAGES

MAX_INLINE_IMAGE_BYTES = 200_000

_TITLES = {
    "roc_curve": "ROC curve",
    "confusion_matrix": "Confusion matrix",
    "classification_report": "Per-class report",
    "calibration_curve": "Calibration",
    "importance": "Feature importance",
    "shap_summary": "SHAP summary",
    "response_curves": "Response curves",
}

# (key, label, uses the cut-off): the held-out numbers of a scores report, in reading order.
_SCORE_ROWS = (
    ("roc_auc", "ROC-AUC", False),
    ("accuracy", "accuracy", True),
    ("tss", "TSS (sensitivity + specificity - 1)", True),
    ("kappa", "Cohen's kappa", True),
    ("sensitivity", "sensitivity (PRESENT recall)", True),
    ("specificity", "specificity (ABSENT recall)", True),
    ("brier", "Brier score (lower is better)", False),
    ("boyce", "Boyce index", False),
    ("baseline_roc_auc", "baseline ROC-AUC (same rows)", False),
    ("lift", "lift over the baseline", False),
    ("roc_auc_random_cv", "CV ROC-AUC, random folds", False),
    ("roc_auc_spatial_cv", "CV ROC-AUC, spatial folds", False),
    ("optimism_gap", "optimism gap (random - spatial)", False),
)


def image(path: Path, title: str) -> str:
    if not path.is_file():
        return ""
    if path.stat().st_size > MAX_INLINE_IMAGE_BYTES:
        return f"*{title}: {path.name} in the output folder (too large to inline)*"
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})"


def _cell(value: Any) -> str:
    return "-" if value is None else str(significant(value)) if isinstance(value, float) else str(value)


def scores_report(summary: Mapping[str, Any], metrics: Mapping[str, Any], folder: Path) -> str:
    """The held-out report: numbers with their cut-off, the per-class table, every plot."""
    threshold = summary.get("threshold", metrics.get("threshold"))
    cut = f"{significant(threshold)}" if threshold is not None else "0.5"
    values = {**metrics, **summary}
    rows = [
        {"metric": label, "value": _cell(values.get(key)), "cut-off": cut if thresholded else "none"}
        for key, label, thresholded in _SCORE_ROWS
        if values.get(key) is not None
    ]
    per_class = [
        {"class": name, **{k: _cell(v) for k, v in row.items() if k != "support"}, "support": row.get("support")}
        for name, row in metrics.items()
        if isinstance(row, dict) and {"precision", "recall"} <= set(row)
    ]
    parts = [
        f"### {summary.get('site')} / {summary.get('species')}: held-out test set "
        f"({summary.get('test_rows', metrics.get('n', '?'))} rows)",
        f"Cut-off **{cut}**: the TSS-maximising threshold chosen on the training folds "
        f"({summary.get('cv_strategy') or 'random'} CV), the presence cut-off the deployed model applies. "
        "Accuracy, the per-class report, the confusion matrix, TSS, kappa, sensitivity and specificity use it; "
        "ROC-AUC, Brier and Boyce do not depend on a cut-off.",
        markdown_table(rows, ["metric", "value", "cut-off"]),
        f"**AUC caveat**: {summary['auc_caveat']}." if summary.get("auc_caveat") else "",
        f"Per class at cut-off {cut}:",
        markdown_table(per_class, ["class", "precision", "recall", "f1-score", "support"]),
    ]
    if summary.get("top_features"):
        parts.append("Top features: " + ", ".join(f"`{name}`" for name in summary["top_features"]))
    parts += [image(folder / file_name, _TITLES.get(key, key)) for key, file_name in IMAGES.items()]
    return "\n\n".join(part for part in parts if part)


def tuning_report(
    summary: Mapping[str, Any], trials: Sequence[Mapping[str, Any]], best: Mapping[str, Any], plot: Path
) -> str:
    """The tuning report: best CV AUC, the CV quality and threshold, the history plot, the best parameters."""
    quality = summary.get("cv_quality") or {}
    numbers = [
        ("best CV ROC-AUC (tuning folds)", summary.get("best_cv_auc")),
        ("CV ROC-AUC, random folds", quality.get("roc_auc_random_cv")),
        ("CV ROC-AUC, spatial folds", quality.get("roc_auc_spatial_cv")),
        ("optimism gap (random - spatial)", quality.get("optimism_gap")),
        ("threshold (max TSS on the folds; the deployed cut-off)", quality.get("threshold")),
        ("TSS at that threshold (CV)", quality.get("tss_cv")),
    ]
    parts = [
        f"### {summary.get('site')} / {summary.get('species')}: tuning ({len(trials)} trials, "
        f"{summary.get('n_folds')}-fold {quality.get('cv_strategy') or 'random'} CV)",
        markdown_table([{"": k, "value": _cell(v)} for k, v in numbers if v is not None], ["", "value"]),
        image(plot, "Tuning history: CV AUC per trial and best so far"),
        "Best parameters:",
        markdown_table([{"parameter": k, "value": _cell(v)} for k, v in best.items()], ["parameter", "value"]),
    ]
    if quality.get("spatial_cv_error"):
        parts.insert(2, f"Spatial CV not computed: {quality['spatial_cv_error']}")
    return "\n\n".join(part for part in parts if part)
