"""Batch scoring: apply a saved MLflow LightGBM model to a table of features (what a batch endpoint does).

Input: CSV/parquet (file or folder) with ``gbifid`` and the model's feature columns (names matched
case-insensitively, extra columns ignored). Output: one row per input row with ``gbifid``, ``probability``
(of PRESENT) and ``predicted_class`` (1 = PRESENT, 0 = ABSENT), written atomically as CSV or parquet.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from biodiv_core.errors import ConfigError, DataContractError, NotFoundError
from biodiv_core.training.model import predict_proba

DEFAULT_THRESHOLD = 0.5
ID_COLUMN = "gbifid"
_OUTPUT_SUFFIXES = (".csv", ".parquet")


def local_model_path(model_uri: str | os.PathLike) -> str:
    """``file://`` URIs as plain paths: MLflow's ``Model.load`` does not accept them (other URIs pass through)."""
    text = os.fspath(model_uri)
    if text.startswith("file:"):
        return url2pathname(urlparse(text).path)
    return text


def load_model(model_uri: str):
    """The LightGBM model (Booster or LGBMClassifier) saved at an MLflow model folder or URI."""
    import mlflow.lightgbm
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    model_uri = local_model_path(model_uri)
    try:
        flavors = Model.load(model_uri).flavors
    except (MlflowException, OSError) as exc:
        raise NotFoundError(
            f"No MLflow model at {model_uri!r} (expected a folder with an MLmodel file; {exc}): "
            "check the path, or register and deploy the model first."
        ) from exc
    if "lightgbm" not in flavors:
        raise DataContractError(
            f"The MLflow model at {model_uri!r} has flavors {sorted(flavors)}, not 'lightgbm': "
            "batch scoring expects the model saved by train_to_deploy."
        )
    return mlflow.lightgbm.load_model(model_uri)


def model_threshold(model_uri: str) -> float:
    """Decision threshold carried in the MLmodel ``metadata`` (key ``threshold``), else 0.5."""
    from mlflow.models import Model

    metadata = Model.load(local_model_path(model_uri)).metadata or {}
    return validate_threshold(float(metadata.get("threshold", DEFAULT_THRESHOLD)))


def validate_threshold(threshold: float) -> float:
    if not (isinstance(threshold, int | float) and not math.isnan(threshold) and 0.0 < threshold < 1.0):
        raise ConfigError(f"threshold={threshold!r} must be a probability strictly between 0 and 1, e.g. 0.5.")
    return float(threshold)


def score_features(model, features: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Predictions for ``features`` (must hold ``gbifid``): gbifid, probability, predicted_class."""
    threshold = validate_threshold(threshold)
    if ID_COLUMN not in features.columns:
        raise DataContractError(
            f"The features have no {ID_COLUMN!r} column (columns: {list(features.columns)[:10]}): "
            "add the GBIF occurrence id so predictions can be joined back."
        )
    probability = predict_proba(model, features)
    return pd.DataFrame(
        {
            ID_COLUMN: features[ID_COLUMN].to_numpy(),
            "probability": probability,
            "predicted_class": (probability >= threshold).astype("int64"),
        }
    )


def _write_table(frame: pd.DataFrame, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if output.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def score_file(model_uri: str, input_path: str | os.PathLike, output_path: str | os.PathLike, threshold=None) -> dict:
    """Score the features at ``input_path`` with the model at ``model_uri``; write ``output_path``.

    ``threshold`` None means the model's own (MLmodel metadata) or 0.5. Returns a JSON-able summary.
    """
    from biodiv_core.data.datastore import read_table

    output = Path(output_path)
    if output.suffix.lower() not in _OUTPUT_SUFFIXES:
        raise ConfigError(f"Output file {output} must end in .csv or .parquet (that picks the format).")
    model = load_model(model_uri)
    threshold = model_threshold(model_uri) if threshold is None else validate_threshold(threshold)
    features = read_table(input_path)
    predictions = score_features(model, features, threshold)
    _write_table(predictions, output)
    return {
        "model_uri": str(model_uri),
        "input": str(input_path),
        "output": str(output),
        "rows": int(len(predictions)),
        "predicted_present": int(predictions["predicted_class"].sum()),
        "threshold": threshold,
    }
