"""Scoring as the seed does it: ROC-AUC, accuracy, per-class report (ABSENT/PRESENT), confusion matrix."""

import json
import os
from pathlib import Path

import numpy as np

from biodiv_core.errors import DataContractError
from biodiv_core.evaluation.outputs import CLASS_NAMES, CLASSIFICATION_REPORT_FILE, CONFUSION_MATRIX_FILE, METRICS_FILE
from biodiv_core.evaluation.plots import plot_classification_report, plot_confusion_matrix
from biodiv_core.training.model import as_target


def evaluate(y_true, probabilities, threshold: float = 0.5) -> dict:
    """Metrics of predicted PRESENT probabilities against 0/1 truth; JSON-able.

    Keys: roc_auc, accuracy, threshold, n, ABSENT/PRESENT/macro avg/weighted avg (each precision, recall,
    f1-score, support, as sklearn's classification_report) and confusion_matrix (rows = truth ABSENT,
    PRESENT; columns = predicted).
    """
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, roc_auc_score

    y = as_target(y_true)
    p = np.asarray(probabilities, dtype=float).ravel()
    if len(y) != len(p):
        raise DataContractError(f"{len(y)} true labels but {len(p)} predictions: score the same rows.")
    if len(np.unique(y)) < 2:
        raise DataContractError(
            "The test set holds only one class: ROC-AUC is undefined. Use more data or a stratified split."
        )
    predicted = (p >= threshold).astype(int)
    report = classification_report(
        y, predicted, labels=[0, 1], target_names=list(CLASS_NAMES), output_dict=True, zero_division=0
    )
    report.pop("accuracy", None)
    metrics = {
        "roc_auc": float(roc_auc_score(y, p)),
        "accuracy": float(accuracy_score(y, predicted)),
        "threshold": float(threshold),
        "n": int(len(y)),
    }
    for name, values in report.items():
        metrics[name] = {k: (int(v) if k == "support" else float(v)) for k, v in values.items()}
    metrics["confusion_matrix"] = confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    return metrics


def flat_metrics(metrics: dict) -> dict[str, float]:
    """Scalar metrics with MLflow-safe names (``PRESENT_f1-score`` -> ``PRESENT_f1_score``)."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}_{sub}".replace(" ", "_").replace("-", "_")] = float(v)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[key] = float(value)
    return flat


def write_results(metrics: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """metrics.json + confusion-matrix and classification-report heatmaps in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / METRICS_FILE,
        "confusion_matrix": out / CONFUSION_MATRIX_FILE,
        "classification_report": out / CLASSIFICATION_REPORT_FILE,
    }
    paths["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    plot_confusion_matrix(metrics["confusion_matrix"], paths["confusion_matrix"])
    plot_classification_report(metrics, paths["classification_report"])
    return paths
