"""Habitat-suitability maps: a model applied to every point of a site.

Training sees only labelled points; the map covers every row of the site's feature table, labelled
or not. Output folder (written atomically):

- ``habitat_suitability.parquet``: gbifid, decimallatitude, decimallongitude, probability
  (+ ``predicted`` 0/1 when a threshold is known, + ``mess`` and ``extrapolated`` for a model saved with a
  covariate reference);
- ``habitat_map.png``: the points coloured by probability;
- ``summary.json``: row count, probability quantiles, share predicted present, ``extrapolated_share`` (None
  without a reference, ``extrapolation_note`` then says why).

With the site's covariate rasters (``covariates``, a validated `CovariateStack`), the model is also applied
to every valid cell (`biodiv_core.serving.surface`): ``suitability.tif`` (COG: probability, presence) and
``suitability_map.png``, which is then the map (``map``); the summary gains the surface's figures.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biodiv_core.atomic import atomic_output_dir
from biodiv_core.data.rasters import DEFAULT_WINDOW_CELLS, CovariateStack
from biodiv_core.errors import DataContractError
from biodiv_core.evaluation.explain import plot_habitat_map
from biodiv_core.serving.scoring import DEFAULT_THRESHOLD, ModelInputs, model_inputs, score
from biodiv_core.serving.similarity import MESS_COLUMNS, NO_REFERENCE_NOTE
from biodiv_core.serving.surface import predict_surface
from biodiv_core.training.spatial_cv import COORDINATE_COLUMNS, coordinates

ID_COLUMN = "gbifid"
OUTPUT_FILE = "habitat_suitability.parquet"
MAP_FILE = "habitat_map.png"
NOT_PREDICTORS = (ID_COLUMN, *COORDINATE_COLUMNS)


def scoring_inputs(
    features: pd.DataFrame, model: Any, feature_names: list[str] | None = None, threshold: float | None = None
) -> ModelInputs:
    """What the model reads of the site's table: a LightGBM model knows its columns and training levels.

    For a plain callable: ``feature_names`` (default: every column but gbifid and the coordinates), text columns
    as categories of the levels they hold.
    """
    cut = DEFAULT_THRESHOLD if threshold is None else threshold
    if hasattr(getattr(model, "booster_", model), "feature_name"):
        inputs = model_inputs(model, threshold=cut)
        if feature_names is not None and list(feature_names) != inputs.features:
            raise DataContractError(
                f"feature_names {list(feature_names)} differ from the model's own feature columns {inputs.features}."
            )
        return inputs
    if feature_names is None:
        feature_names = [c for c in features.columns if str(c).lower() not in NOT_PREDICTORS]
    categories = {
        c: sorted(features[c].dropna().astype(str).unique())
        for c in feature_names
        if c in features.columns and not pd.api.types.is_numeric_dtype(features[c].dtype)
    }
    return ModelInputs(list(feature_names), categories, cut)


def suitability_table(
    features: pd.DataFrame,
    model: Any,
    feature_names: list[str] | None = None,
    threshold: float | None = None,
    inputs: ModelInputs | None = None,
) -> pd.DataFrame:
    """Probability of presence for every row of ``features`` (needs gbifid and coordinates).

    ``model`` is a LightGBM Booster, an sklearn-style classifier or a callable ``DataFrame -> probabilities``;
    rows are scored by `biodiv_core.serving.scoring.score` (the one scoring path). ``inputs``: the saved model's
    own (`batch_scoring.load_scorer`), else derived from ``model``.
    """
    if ID_COLUMN not in features.columns:
        raise DataContractError(f"Site features need a {ID_COLUMN!r} column to map suitability; it is missing.")
    latitude, longitude = coordinates(
        features, "A habitat-suitability map", "Use a feature table with coordinates for this site."
    )
    if inputs is None:
        inputs = scoring_inputs(features, model, feature_names, threshold)
    scored = score(features, model, inputs, threshold)
    table = pd.DataFrame(
        {
            ID_COLUMN: pd.to_numeric(features[ID_COLUMN]).astype("int64").to_numpy(),
            "decimallatitude": latitude,
            "decimallongitude": longitude,
            "probability": scored["probability"].to_numpy(dtype=float),
        }
    )
    if threshold is not None:
        table["predicted"] = scored["presence"].to_numpy().astype("int8")
    for name in MESS_COLUMNS:
        if name in scored.columns:
            table[name] = scored[name].to_numpy()
    table.attrs["extrapolation"] = scored.attrs.get("extrapolation")
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
    if "extrapolated" in table.columns:
        summary["extrapolated_share"] = float(table["extrapolated"].mean()) if len(p) else float("nan")
    else:
        summary["extrapolated_share"] = None
        summary["extrapolation_note"] = table.attrs.get("extrapolation") or NO_REFERENCE_NOTE
    return summary


def run_habitat(
    features: pd.DataFrame,
    model: Any | Callable[[pd.DataFrame], np.ndarray],
    output: str | Path,
    feature_names: list[str] | None = None,
    threshold: float | None = None,
    title: str = "Habitat suitability",
    inputs: ModelInputs | None = None,
    covariates: CovariateStack | None = None,
    window_cells: int = DEFAULT_WINDOW_CELLS,
) -> dict:
    """Score every row of ``features`` (and every valid cell of ``covariates``) and write the outputs to ``output``.

    Returns the summary with ``path``, ``table`` and ``map``; with rasters also ``suitability_raster``.
    """
    if inputs is None:
        inputs = scoring_inputs(features, model, feature_names, threshold)
    table = suitability_table(features, model, feature_names, threshold, inputs)
    output = Path(output)
    with atomic_output_dir(output) as tmp:
        table.to_parquet(tmp / OUTPUT_FILE, index=False)
        summary = summarize(table, threshold)
        if covariates is None:
            plot_habitat_map(table, tmp / MAP_FILE, title=title)
            summary["map"] = str(output / MAP_FILE)
        else:
            surface = predict_surface(covariates, model, inputs, tmp, title=title, window_cells=window_cells)
            # The summary names the final folder, not the temporary one the files were written in.
            surface = {k: str(output / Path(v).name) if str(v).startswith(str(tmp)) else v for k, v in surface.items()}
            summary |= {k: v for k, v in surface.items() if k != "threshold"} | {"map": surface["suitability_map"]}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "path": str(output), "table": str(output / OUTPUT_FILE)}
