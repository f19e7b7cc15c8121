"""Habitat-suitability maps: a model applied to every point of a site.

Training sees only labelled points; the map covers every row of the site's feature table, labelled
or not. Output folder (written atomically):

- ``habitat_suitability.parquet``: gbifid, decimallatitude, decimallongitude, probability
  (+ ``predicted`` 0/1 when a threshold is known);
- ``habitat_map.png``: the points coloured by probability;
- ``summary.json``: row count, probability quantiles, share predicted present.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biodiv_core.atomic import atomic_output_dir
from biodiv_core.errors import DataContractError
from biodiv_core.evaluation.explain import plot_habitat_map
from biodiv_core.training.model import predict_proba
from biodiv_core.training.spatial_cv import COORDINATE_COLUMNS, coordinates

ID_COLUMN = "gbifid"
OUTPUT_FILE = "habitat_suitability.parquet"
MAP_FILE = "habitat_map.png"
NOT_PREDICTORS = (ID_COLUMN, *COORDINATE_COLUMNS)


def predictor_frame(features: pd.DataFrame, feature_names: list[str] | None = None) -> pd.DataFrame:
    """The model's input columns, in training order; strings become categories as in training.

    Without ``feature_names`` every column except gbifid and the coordinates is a predictor.
    """
    if feature_names is None:
        feature_names = [c for c in features.columns if c not in NOT_PREDICTORS]
    missing = [c for c in feature_names if c not in features.columns]
    if missing:
        raise DataContractError(
            f"The site's features lack {len(missing)} column(s) the model was trained on: {', '.join(missing[:10])}. "
            "Score with the feature version the model was trained on."
        )
    frame = features[list(feature_names)].copy()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype):
            frame[column] = frame[column].astype("category")
    return frame


def suitability_table(
    features: pd.DataFrame,
    model: Any,
    feature_names: list[str] | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Probability of presence for every row of ``features`` (needs gbifid and coordinates).

    ``model`` is a LightGBM Booster, an sklearn-style classifier or a callable ``DataFrame -> probabilities``.
    """
    if ID_COLUMN not in features.columns:
        raise DataContractError(f"Site features need a {ID_COLUMN!r} column to map suitability; it is missing.")
    latitude, longitude = coordinates(
        features, "A habitat-suitability map", "Use a feature table with coordinates for this site."
    )
    probability = predict_proba(model, predictor_frame(features, feature_names))
    if len(probability) != len(features):
        raise DataContractError(f"The model returned {len(probability)} probabilities for {len(features)} rows.")
    table = pd.DataFrame(
        {
            ID_COLUMN: pd.to_numeric(features[ID_COLUMN]).astype("int64").to_numpy(),
            "decimallatitude": latitude,
            "decimallongitude": longitude,
            "probability": np.asarray(probability, dtype=float),
        }
    )
    if threshold is not None:
        table["predicted"] = (table["probability"] >= threshold).astype("int8")
    return table


def summarize(table: pd.DataFrame, threshold: float | None = None) -> dict:
    p = table["probability"]
    summary = {
        "rows": len(table),
        "probability_mean": float(p.mean()) if len(p) else float("nan"),
        "probability_quantiles": {f"q{int(q * 100)}": float(p.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        "threshold": threshold,
    }
    if threshold is not None:
        summary["share_predicted_present"] = float((p >= threshold).mean()) if len(p) else float("nan")
    return summary


def run_habitat(
    features: pd.DataFrame,
    model: Any | Callable[[pd.DataFrame], np.ndarray],
    output: str | Path,
    feature_names: list[str] | None = None,
    threshold: float | None = None,
    title: str = "Habitat suitability",
) -> dict:
    """Score every row of ``features`` and write the parquet table, map image and summary into ``output``."""
    table = suitability_table(features, model, feature_names, threshold)
    with atomic_output_dir(output) as tmp:
        table.to_parquet(tmp / OUTPUT_FILE, index=False)
        plot_habitat_map(table, tmp / MAP_FILE, title=title)
        summary = summarize(table, threshold)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    output = Path(output)
    return {**summary, "path": str(output), "table": str(output / OUTPUT_FILE), "map": str(output / MAP_FILE)}
