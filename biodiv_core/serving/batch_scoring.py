"""Batch scoring: apply a saved MLflow LightGBM model to a table of features (what a batch endpoint does).

Input: CSV/parquet (file or folder) with ``gbifid`` and the model's feature columns (names matched
case-insensitively, extra columns ignored, categories re-coded with the training levels). Output: one row per
input row with ``gbifid``, ``probability`` (of PRESENT) and ``predicted_class`` (1 = PRESENT, 0 = ABSENT: the
scoring function's ``presence``), and for models saved with a covariate reference ``mess`` and ``extrapolated``
(`serving.similarity`), written atomically as CSV or parquet. Scoring is `serving.scoring.score`.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from biodiv_core.errors import ConfigError, DataContractError, NotFoundError
from biodiv_core.serving.scoring import DEFAULT_THRESHOLD, ID_COLUMN, ModelInputs, score, validate_threshold
from biodiv_core.serving.similarity import CovariateReference, read_reference

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


def model_metadata(model_uri: str) -> dict:
    from mlflow.models import Model

    return Model.load(local_model_path(model_uri)).metadata or {}


def model_threshold(model_uri: str) -> float:
    """Decision threshold carried in the MLmodel ``metadata`` (key ``threshold``), else 0.5."""
    return validate_threshold(float(model_metadata(model_uri).get("threshold", DEFAULT_THRESHOLD)))


def load_reference(model_uri: str, metadata: dict) -> CovariateReference | None:
    """The covariate reference saved in the model folder (None: saved without one); remote folders download it."""
    name = metadata.get("covariate_reference")
    if not name:
        return None
    local = Path(local_model_path(model_uri))
    if local.is_dir():
        return read_reference(local)
    import mlflow.artifacts

    copy = mlflow.artifacts.download_artifacts(artifact_uri=f"{str(model_uri).rstrip('/')}/{name}")
    return read_reference(Path(copy).parent)


def load_scorer(model_uri: str):
    """(LightGBM model, `ModelInputs`: feature columns, training levels, threshold, reference) of a saved model."""
    model = load_model(model_uri)
    metadata = model_metadata(model_uri)
    name = str(metadata.get("registry_name") or model_uri)
    reference = load_reference(model_uri, metadata)
    return model, ModelInputs.from_metadata(
        metadata, getattr(model, "booster_", model), model=name, reference=reference
    )


def find_model_folder(root: str | os.PathLike) -> Path:
    """The MLflow model folder at ``root`` or in one of its subfolders (a registry download, ``AZUREML_MODEL_DIR``).

    AzureML hands a deployment's model to the scoring script as ``$AZUREML_MODEL_DIR/<folder registered>/``, and
    ``MLClient.models.download`` writes ``<download_path>/<model name>/<folder registered>/``.
    """
    base = Path(root)
    if (base / "MLmodel").is_file():
        return base
    found = sorted({p.parent for p in base.glob("*/MLmodel")} | {p.parent for p in base.glob("*/*/MLmodel")})
    if len(found) != 1:
        raise NotFoundError(
            f"Expected one MLflow model folder (with an MLmodel file) in {base}, found {len(found)}"
            f"{': ' + ', '.join(map(str, found[:5])) if found else ''}: register the lgbm_gbif_model folder."
        )
    return found[0]


def score_rows(model, features: pd.DataFrame, inputs: ModelInputs, threshold=None) -> pd.DataFrame:
    """`scoring.score` for tables that must carry their ``gbifid`` (batch outputs are joined back on it)."""
    if not any(str(c).strip().lower() == ID_COLUMN for c in features.columns):
        raise DataContractError(
            f"The features have no {ID_COLUMN!r} column (columns: {list(features.columns)[:10]}): "
            "add the GBIF occurrence id so predictions can be joined back."
        )
    return score(features, model, inputs, threshold)


def score_features(model, features: pd.DataFrame, threshold=None, inputs: ModelInputs | None = None) -> pd.DataFrame:
    """Predictions for ``features`` (must hold ``gbifid``): gbifid, probability, predicted_class.

    ``inputs`` None: derived from the model (training levels kept by LightGBM), threshold 0.5 unless given.
    """
    if inputs is None:
        from biodiv_core.serving.scoring import model_inputs

        inputs = model_inputs(model)
    return score_rows(model, features, inputs, threshold).rename(columns={"presence": "predicted_class"})


def _check_output(output: Path) -> None:
    """The output path names a file we may write: not a folder, its parent a folder (created if missing)."""
    if output.is_dir():
        raise ConfigError(
            f"Output {output} is a folder: give a file path inside it, e.g. {output / 'predictions.csv'}."
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"Cannot create the output folder {output.parent} ({exc.strerror or exc}): choose an output path in a "
            "folder you can write."
        ) from exc


def _write_table(frame: pd.DataFrame, output: Path) -> None:
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if output.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, output)
    except OSError as exc:
        raise ConfigError(f"Cannot write {output} ({exc.strerror or exc}): free space or choose another path.") from exc
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
    _check_output(output)  # before the model loads and the features are read: the cheap mistake first
    model, inputs = load_scorer(model_uri)
    threshold = inputs.threshold if threshold is None else validate_threshold(threshold)
    features = read_table(input_path)
    predictions = score_features(model, features, threshold, inputs)
    _write_table(predictions, output)
    flags = predictions["extrapolated"] if "extrapolated" in predictions.columns else None
    return {
        "model_uri": str(model_uri),
        "input": str(input_path),
        "output": str(output),
        "rows": int(len(predictions)),
        "predicted_present": int(predictions["predicted_class"].sum()),
        "threshold": threshold,
        "unseen_levels": dict(predictions.attrs.get("unseen_levels", {})),
        "extrapolated": None if flags is None else int(flags.sum()),
        "extrapolated_share": None if flags is None else (float(flags.mean()) if len(flags) else float("nan")),
        **({"extrapolation_note": predictions.attrs["extrapolation"]} if flags is None else {}),
    }


# How a batch deployment's scoring script names a file it could not score, in the error it raises (the batch driver
# writes it to the job's logs); the orchestrator reads the names back from the downloaded logs (`failed_files_in`).
_FAILED_FILE = re.compile(r'failed file ("(?:[^"\\]|\\.)*")')


def failed_file_line(path: str | os.PathLike, reason: object) -> str:
    return f"failed file {json.dumps(os.fspath(path))}: {reason}"


def failed_files_in(folder: str | os.PathLike) -> tuple[str, ...]:
    """The files named by `failed_file_line` lines in any text file under ``folder``, each once, in order seen."""
    seen: dict[str, None] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix in {".txt", ".log", ""}:
            for match in _FAILED_FILE.finditer(path.read_text(errors="replace")):
                seen.setdefault(json.loads(match.group(1)), None)
    return tuple(seen)
