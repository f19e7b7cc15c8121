"""Names of what the score stage writes and reports (light: no numpy, read by the orchestrator too)."""

CLASS_NAMES = ("ABSENT", "PRESENT")  # label 0, label 1
METRICS_FILE = "metrics.json"
QUALITY_FILE = "quality.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
CLASSIFICATION_REPORT_FILE = "classification_report.png"
CALIBRATION_FILE = "calibration_curve.png"
ROC_CURVE_FILE = "roc_curve.png"
TUNING_HISTORY_FILE = "tuning_history.png"  # in the best-parameters folder
EXPLANATIONS_DIR = "explanations"

# Image metadata key -> file inside the scores folder.
IMAGES = {
    "roc_curve": ROC_CURVE_FILE,
    "confusion_matrix": CONFUSION_MATRIX_FILE,
    "classification_report": CLASSIFICATION_REPORT_FILE,
    "calibration_curve": CALIBRATION_FILE,
    "importance": f"{EXPLANATIONS_DIR}/importance.png",
    "shap_summary": f"{EXPLANATIONS_DIR}/shap_summary.png",
    "response_curves": f"{EXPLANATIONS_DIR}/response_curves.png",
}

# Quality numbers of the score stage beyond ROC-AUC and accuracy (docs/model-quality.md): reported as
# asset metadata and in `biodiv run --json`.
QUALITY_SCORE_KEYS = (
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
