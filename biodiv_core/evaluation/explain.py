"""What the model learned, in tables and images.

- gain importance: total loss reduction from splits on each feature (LightGBM ``importance_type="gain"``);
- SHAP summary: mean |contribution| per feature from LightGBM's exact TreeSHAP (``pred_contrib=True``),
  on the log-odds scale, so it is comparable across features and not biased towards many-valued ones
  the way split counts are;
- response curves: partial dependence (mean predicted probability while one feature sweeps its range
  and the others keep their observed values) for the top features.

Plots use matplotlib's object API (``Figure``) with the Agg canvas: no pyplot global state, safe in
worker threads and headless jobs.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from biodiv_core.errors import DataContractError
from biodiv_core.evaluation import figures
from biodiv_core.training.model import predict_proba


def booster_of(model: Any):
    """The ``lightgbm.Booster`` inside ``model`` (a Booster or an sklearn-API LGBM estimator)."""
    booster = getattr(model, "booster_", model)
    if not hasattr(booster, "feature_importance"):
        raise TypeError(f"Expected a lightgbm Booster or LGBMClassifier, got {type(model).__name__}.")
    return booster


def _feature_names(booster, X: pd.DataFrame | None) -> list[str]:
    # LightGBM rewrites some characters in feature names; show the user's names when they line up.
    names = booster.feature_name()
    if X is not None and len(X.columns) == len(names):
        return [str(c) for c in X.columns]
    return names


def gain_importance(model: Any, X: pd.DataFrame | None = None) -> pd.DataFrame:
    """Features with ``gain``, ``gain_share`` (sums to 1) and ``splits``, most important first."""
    booster = booster_of(model)
    gain = booster.feature_importance(importance_type="gain").astype(float)
    splits = booster.feature_importance(importance_type="split").astype(int)
    total = gain.sum()
    table = pd.DataFrame(
        {
            "feature": _feature_names(booster, X),
            "gain": gain,
            "gain_share": gain / total if total > 0 else np.zeros_like(gain),
            "splits": splits,
        }
    )
    return table.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)


def shap_summary(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP value| per feature (log-odds), plus the mean signed value, most important first."""
    if len(X) == 0:
        raise DataContractError("SHAP summary needs at least one row of features.")
    booster = booster_of(model)
    contributions = np.asarray(booster.predict(X, pred_contrib=True, num_threads=1))
    per_feature = contributions[:, :-1]  # the last column is the expected value (bias)
    table = pd.DataFrame(
        {
            "feature": _feature_names(booster, X),
            "mean_abs_shap": np.abs(per_feature).mean(axis=0),
            "mean_shap": per_feature.mean(axis=0),
        }
    )
    return table.sort_values(["mean_abs_shap", "feature"], ascending=[False, True], ignore_index=True)


def _grid(values: pd.Series, grid_size: int) -> np.ndarray | list:
    if isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object:
        return list(values.value_counts().index[:grid_size])
    finite = pd.to_numeric(values, errors="coerce").dropna()
    if finite.empty:
        return []
    return np.unique(np.quantile(finite, np.linspace(0.02, 0.98, grid_size)))


def partial_dependence(
    model: Any, X: pd.DataFrame, feature: str, grid_size: int = 20, sample_size: int = 500, seed: int = 0
) -> pd.DataFrame:
    """Mean predicted probability while ``feature`` takes each grid value (columns ``value``, ``probability``).

    Numeric features sweep their 2nd..98th percentiles (extremes are thinly supported); categorical
    ones their most frequent levels. Averages over a seeded sample of ``sample_size`` rows.
    """
    if feature not in X.columns:
        raise DataContractError(
            f"Feature {feature!r} is not a column of X (columns: {', '.join(map(str, X.columns))})."
        )
    sample = X.sample(n=sample_size, random_state=seed) if len(X) > sample_size else X
    grid = _grid(X[feature], grid_size)
    if len(grid) == 0:
        return pd.DataFrame({"value": [], "probability": []})
    # One stacked prediction instead of one call per grid value.
    stacked = pd.concat([sample] * len(grid), ignore_index=True)
    if isinstance(X[feature].dtype, pd.CategoricalDtype):
        levels = np.repeat(np.asarray(grid, dtype=object), len(sample))
        stacked[feature] = pd.Categorical(levels, categories=X[feature].cat.categories)
    else:
        stacked[feature] = np.repeat(np.asarray(grid), len(sample))
    probability = predict_proba(model, stacked).reshape(len(grid), len(sample)).mean(axis=1)
    return pd.DataFrame({"value": list(grid), "probability": probability})


def response_curves(
    model: Any, X: pd.DataFrame, features: list[str], grid_size: int = 20, sample_size: int = 500, seed: int = 0
) -> dict[str, pd.DataFrame]:
    return {f: partial_dependence(model, X, f, grid_size, sample_size, seed) for f in features}


# --- plots -------------------------------------------------------------------------------------------


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    return figures.save(fig, path, bbox_inches="tight")


def plot_importance(table: pd.DataFrame, path: str | Path, value: str = "gain", top: int = 20) -> Path:
    """Horizontal bar chart of ``table[value]`` per feature (as returned by gain_importance / shap_summary)."""
    shown = table.head(top).iloc[::-1]
    fig = Figure(figsize=(6, 0.35 * len(shown) + 1.2))
    ax = fig.add_subplot()
    ax.barh(shown["feature"].astype(str), shown[value], color="#3b7dd8")
    ax.set_xlabel(value.replace("_", " "))
    ax.set_title("Feature importance")
    return _save(fig, path)


def plot_response_curves(curves: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """One panel per feature: partial dependence of the presence probability."""
    n = max(len(curves), 1)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4 * cols, 3 * rows))
    for i, (feature, curve) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        if pd.api.types.is_numeric_dtype(curve["value"]):
            ax.plot(curve["value"], curve["probability"], marker=".", color="#2a9d5b")
        else:
            ax.bar(curve["value"].astype(str), curve["probability"], color="#2a9d5b")
            ax.tick_params(axis="x", labelrotation=45)
        ax.set_title(str(feature))
        ax.set_ylabel("mean probability")
    fig.suptitle("Response curves (partial dependence)")
    fig.tight_layout()
    return _save(fig, path)


def plot_calibration(table: pd.DataFrame, path: str | Path) -> Path:
    """Reliability diagram from ``thresholds.calibration_table``: observed share vs mean prediction."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(table["mean_predicted"], table["observed"], marker="o", color="#d8573b", label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share present")
    ax.set_title("Calibration")
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_habitat_map(frame: pd.DataFrame, path: str | Path, title: str = "Habitat suitability") -> Path:
    """Points at (decimallongitude, decimallatitude) coloured by ``probability`` (0..1, viridis)."""
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    order = np.argsort(frame["probability"].to_numpy())  # draw high suitability on top
    points = ax.scatter(
        frame["decimallongitude"].to_numpy()[order],
        frame["decimallatitude"].to_numpy()[order],
        c=frame["probability"].to_numpy()[order],
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        s=6,
        linewidths=0,
    )
    if len(frame):
        # Degrees of longitude shrink with latitude: keep the map's shape true at its centre.
        ax.set_aspect(1.0 / max(np.cos(np.radians(frame["decimallatitude"].mean())), 0.1))
    fig.colorbar(points, ax=ax, label="probability of presence")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    return _save(fig, path)


# --- one call for a stage ----------------------------------------------------------------------------


def explain_model(
    model: Any, X: pd.DataFrame, output: str | Path, n_top: int = 5, sample_size: int = 1000, seed: int = 0
) -> dict:
    """Write importance/SHAP/response-curve tables and images into ``output``; return a JSON-able summary.

    Files: ``importance.csv``, ``importance.png``, ``shap_summary.csv``, ``shap_summary.png``,
    ``response_curves.csv``, ``response_curves.png``. ``top_features`` ranks by mean |SHAP| on ``X``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    sample = X.sample(n=sample_size, random_state=seed) if len(X) > sample_size else X
    importance = gain_importance(model, X)
    shap = shap_summary(model, sample)
    top = shap["feature"].head(n_top).tolist()
    curves = response_curves(model, X, top, sample_size=min(sample_size, 500), seed=seed)
    importance.to_csv(output / "importance.csv", index=False)
    shap.to_csv(output / "shap_summary.csv", index=False)
    pd.concat([c.assign(feature=f) for f, c in curves.items()], ignore_index=True).to_csv(
        output / "response_curves.csv", index=False
    )
    images = {
        "importance": str(plot_importance(importance, output / "importance.png", "gain")),
        "shap_summary": str(plot_importance(shap, output / "shap_summary.png", "mean_abs_shap")),
        "response_curves": str(plot_response_curves(curves, output / "response_curves.png")),
    }
    summary = {
        "top_features": top,
        "importance": importance.head(20).to_dict(orient="records"),
        "shap_summary": shap.head(20).to_dict(orient="records"),
        "images": images,
    }
    (output / "explanations.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary
