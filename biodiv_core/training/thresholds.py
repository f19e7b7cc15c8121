"""Presence thresholds and the threshold-free metrics SDM users expect.

A probability map becomes a presence map only through a threshold. We use the one that maximises
TSS (true skill statistic = sensitivity + specificity - 1; Allouche et al. 2006), chosen on
out-of-fold predictions of the training data so the test set never picks its own cut-off.

Alongside: Cohen's kappa (agreement beyond chance at the threshold), the Brier score (squared error of
the probabilities), the continuous Boyce index (Hirzel et al. 2006: do presences fall more often
than expected in high-suitability areas?) and calibration-curve data. ``docs/model-quality.md`` says
when to trust each.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score, roc_curve

from biodiv_core.errors import DataContractError
from biodiv_core.training.model import as_target

ArrayLike = Sequence[float] | np.ndarray | pd.Series


def _labels_and_scores(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = as_target(y_true)
    p = np.asarray(y_prob, dtype=float).ravel()
    if len(y) != len(p):
        raise DataContractError(f"y_true has {len(y)} values but the probabilities have {len(p)}; they must align.")
    if len(y) == 0:
        raise DataContractError("No rows to evaluate: y_true is empty.")
    if not np.isin(y, (0, 1)).all():
        raise DataContractError("y_true must hold 0 (absent) and 1 (present) only.")
    if not np.isfinite(p).all():
        raise DataContractError(f"Probabilities hold {int((~np.isfinite(p)).sum())} NaN or infinite values.")
    return y, p


def _confusion(y: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(((predicted == 1) & (y == 1)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    tn = int(((predicted == 0) & (y == 0)).sum())
    return tp, fn, fp, tn


def sensitivity_specificity(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[float, float]:
    """(sensitivity, specificity) of 0/1 predictions; NaN for a class with no rows."""
    y, predicted = _labels_and_scores(y_true, y_pred)
    tp, fn, fp, tn = _confusion(y, predicted.astype(int))
    sensitivity = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    return sensitivity, specificity


def tss(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """True skill statistic of 0/1 predictions: sensitivity + specificity - 1, in [-1, 1]."""
    sensitivity, specificity = sensitivity_specificity(y_true, y_pred)
    return sensitivity + specificity - 1.0


def cohen_kappa(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Cohen's kappa of 0/1 predictions: (observed - chance agreement) / (1 - chance agreement)."""
    y, predicted = _labels_and_scores(y_true, y_pred)
    tp, fn, fp, tn = _confusion(y, predicted.astype(int))
    n = tp + fn + fp + tn
    observed = (tp + tn) / n
    chance = ((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn)) / n**2
    return 0.0 if chance == 1.0 else (observed - chance) / (1.0 - chance)


def brier_score(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Mean squared difference between probability and outcome (0 perfect, 0.25 for a constant 0.5)."""
    y, p = _labels_and_scores(y_true, y_prob)
    return float(np.mean((p - y) ** 2))


def best_tss_threshold(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[float, float]:
    """(threshold, tss) maximising TSS; predict present when ``probability >= threshold``.

    TSS = TPR - FPR, so the best cut-off is the ROC point furthest above the diagonal (Youden's J).
    The threshold returned is the midpoint between that ROC point's score and the next lower distinct
    score, so it does not sit exactly on a training prediction. Ties go to the highest threshold.
    """
    y, p = _labels_and_scores(y_true, y_prob)
    if y.min() == y.max():
        raise DataContractError("Choosing a threshold needs both present and absent rows; y_true holds one class.")
    fpr, tpr, cut = roc_curve(y, p, drop_intermediate=False)
    # roc_curve's first point (threshold=inf) predicts nothing present; it is never better than a real cut-off.
    j = tpr[1:] - fpr[1:]
    best = int(np.argmax(j)) + 1
    lower = p[p < cut[best]]
    threshold = (cut[best] + lower.max()) / 2.0 if len(lower) else float(cut[best])
    return float(threshold), float(j[best - 1])


def boyce_index(
    presence_scores: ArrayLike,
    background_scores: ArrayLike,
    window: float | None = None,
    resolution: int = 100,
) -> float:
    """Continuous Boyce index (Hirzel et al. 2006), following ``ecospat.boyce``.

    A window of width ``window`` (default a tenth of the background's range) slides over
    ``resolution + 1`` positions from the lowest to the highest score. In each window
    F = (share of presences in it) / (share of background in it); the index is the Spearman
    correlation between F and the window centre. Near 1: presences concentrate where the model says
    suitable; near 0: no better than random; negative: inverted. Windows with no background are
    skipped, and so are runs of equal F (``rm.duplicate``) so flat stretches do not inflate the rank
    correlation. Background is every evaluated point (presences included), as for a prediction map.
    Returns NaN when fewer than two windows are usable.
    """
    obs = np.asarray(presence_scores, dtype=float).ravel()
    fit = np.asarray(background_scores, dtype=float).ravel()
    if len(obs) == 0 or len(fit) == 0:
        raise DataContractError("The Boyce index needs at least one presence score and one background score.")
    low, high = min(fit.min(), obs.min()), max(fit.max(), obs.max())
    width = (fit.max() - fit.min()) / 10.0 if window is None else float(window)
    if not width > 0 or high - low <= width:
        return float("nan")
    starts = np.linspace(low, high - width, resolution + 1)
    ends = starts + width
    # Closed windows [start, end], as in ecospat (its "+1" trick only widens the last window).
    ends[-1] = max(ends[-1], high)
    obs_sorted, fit_sorted = np.sort(obs), np.sort(fit)
    p = (np.searchsorted(obs_sorted, ends, "right") - np.searchsorted(obs_sorted, starts, "left")) / len(obs)
    e = (np.searchsorted(fit_sorted, ends, "right") - np.searchsorted(fit_sorted, starts, "left")) / len(fit)
    keep = e > 0
    f = np.round(p[keep] / e[keep], 10)
    centre = ((starts + ends) / 2.0)[keep]
    distinct = f != np.append(f[1:], np.inf)
    f, centre = f[distinct], centre[distinct]
    if len(f) < 2 or np.ptp(f) == 0:
        return float("nan")
    return float(spearmanr(f, centre).statistic)


def calibration_table(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Reliability-diagram data: equal-width probability bins with mean prediction, observed share, count.

    Empty bins are left out. A calibrated model has ``observed`` close to ``mean_predicted``.
    """
    y, p = _labels_and_scores(y_true, y_prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    table = frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed=("y", "mean"), count=("y", "size"))
    table = table.reset_index()
    table["bin_low"] = edges[table["bin"]]
    table["bin_high"] = edges[table["bin"] + 1]
    return table[["bin", "bin_low", "bin_high", "mean_predicted", "observed", "count"]]


def threshold_metrics(y_true: ArrayLike, y_prob: ArrayLike, threshold: float) -> dict[str, float]:
    """All threshold metrics of probabilities ``y_prob`` at a fixed ``threshold`` (chosen elsewhere).

    Keys: threshold, tss, kappa, sensitivity, specificity, brier, boyce, roc_auc (NaN when one class).
    """
    y, p = _labels_and_scores(y_true, y_prob)
    predicted = (p >= threshold).astype(int)
    sensitivity, specificity = sensitivity_specificity(y, predicted)
    both = y.min() != y.max()
    return {
        "threshold": float(threshold),
        "tss": sensitivity + specificity - 1.0,
        "kappa": cohen_kappa(y, predicted),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "brier": brier_score(y, p),
        "boyce": boyce_index(p[y == 1], p) if y.any() else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
    }
