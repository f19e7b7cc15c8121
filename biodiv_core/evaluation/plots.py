"""Heatmaps for the scores (matplotlib, Agg backend: no display, no seaborn)."""

import numpy as np

from biodiv_core.evaluation import figures
from biodiv_core.evaluation.outputs import CLASS_NAMES

_REPORT_ROWS = (*CLASS_NAMES, "macro avg", "weighted avg")
_REPORT_COLUMNS = ("precision", "recall", "f1-score")


def _heatmap(values: np.ndarray, rows, columns, title: str, fmt: str, path, xlabel=None, ylabel=None, vmax=None):
    import matplotlib

    matplotlib.use("Agg")  # before pyplot; the steps run headless
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(columns), 1.2 + 0.7 * len(rows)))
    try:
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax if vmax is not None else max(values.max(), 1e-9))
        ax.set_xticks(range(len(columns)), labels=list(columns))
        ax.set_yticks(range(len(rows)), labels=list(rows))
        threshold = (vmax if vmax is not None else values.max()) / 2
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                color = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", color=color)
        ax.set_title(title)
        if xlabel:
            ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        figures.save(fig, path)
    finally:
        plt.close(fig)


def plot_confusion_matrix(matrix, path) -> None:
    values = np.asarray(matrix, dtype=float)
    _heatmap(values, CLASS_NAMES, CLASS_NAMES, "Confusion matrix", ".0f", path, "Predicted", "True")


def plot_classification_report(metrics: dict, path) -> None:
    values = np.array([[metrics[row][col] for col in _REPORT_COLUMNS] for row in _REPORT_ROWS], dtype=float)
    _heatmap(values, _REPORT_ROWS, _REPORT_COLUMNS, "Classification report", ".2f", path, vmax=1.0)


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    return plt, fig, ax


def plot_roc_curve(y_true, probabilities, threshold: float, path) -> None:
    """The held-out ROC curve, with the point the presence cut-off ``threshold`` operates at."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true).ravel()
    p = np.asarray(probabilities, dtype=float).ravel()
    fpr, tpr, _ = roc_curve(y, p)
    predicted = p >= threshold
    point = (predicted[y == 0].mean(), predicted[y == 1].mean())  # (false positive rate, true positive rate)
    plt, fig, ax = _figure(4.6, 4.2)
    try:
        ax.plot(fpr, tpr, color="tab:blue", label=f"model (AUC {roc_auc_score(y, p):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.plot(*point, "o", color="tab:red", label=f"cut-off {threshold:.3g}")
        ax.set_xlabel("False positive rate (1 - specificity)")
        ax.set_ylabel("True positive rate (sensitivity)")
        ax.set_title("ROC curve (held-out test set)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        figures.save(fig, path)
    finally:
        plt.close(fig)


def plot_tuning_history(trials: list[dict], path) -> None:
    """CV AUC of each tuning trial (in evaluation order) and the best so far."""
    aucs = np.array([float(t["auc"]) for t in trials], dtype=float)
    steps = np.arange(1, len(aucs) + 1)
    plt, fig, ax = _figure(5.6, 3.6)
    try:
        ax.plot(steps, aucs, "o", color="tab:blue", alpha=0.7, label="trial CV AUC")
        ax.step(steps, np.maximum.accumulate(aucs), where="post", color="tab:orange", label="best so far")
        ax.set_xlabel("Trial")
        ax.set_ylabel("CV ROC-AUC")
        ax.set_title(f"Tuning history ({len(aucs)} trials)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        figures.save(fig, path)
    finally:
        plt.close(fig)


def plot_surface(
    values, extent, path, title: str = "Habitat suitability", geographic: bool = True, extrapolated=None
) -> None:
    """A probability surface (masked array, north up) over ``extent`` (left, right, bottom, top); masked cells grey.

    ``extrapolated`` (boolean array of the same shape, optional): cells hatched, with a legend entry.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    fig, ax = plt.subplots(figsize=(7, 6))
    try:
        image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")
        if extrapolated is not None and np.any(extrapolated):
            # Washed out and hatched, not covered: the probability stays readable under the warning, and black
            # hatching alone would vanish on the dark (low probability) colours.
            flags = np.asarray(extrapolated, dtype=float)
            ax.contourf(flags, levels=[0.5, 1.5], colors=["white"], alpha=0.45, extent=extent, origin="upper")
            ax.contourf(flags, levels=[0.5, 1.5], colors="none", hatches=["////"], extent=extent, origin="upper")
            handle = Patch(facecolor="#e8e8e8", edgecolor="black", hatch="////", label="extrapolated (MESS < 0)")
            ax.legend(handles=[handle], loc="lower right", fontsize=8, framealpha=0.8)
        if geographic:
            # Degrees of longitude shrink with latitude: keep the map's shape true at its centre.
            ax.set_aspect(1.0 / max(np.cos(np.radians((extent[2] + extent[3]) / 2)), 0.1))
        fig.colorbar(image, ax=ax, label="probability of presence")
        ax.set_xlabel("longitude" if geographic else "x")
        ax.set_ylabel("latitude" if geographic else "y")
        ax.set_title(title)
        fig.tight_layout()
        figures.save(fig, path)
    finally:
        plt.close(fig)
