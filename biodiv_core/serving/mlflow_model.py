"""The deployable model: an MLflow model folder ``lgbm_gbif_model`` saved into the step output, then logged.

``mlflow.lightgbm.save_model`` writes MLmodel, conda.yaml, python_env.yaml, requirements.txt and the model
file; the folder is then logged as run artifacts. We never call ``log_model``: MLflow 3's log_model goes
through the logged-models API, which the AzureML tracking server answers with 404 (DESIGN section 6).
The folder loads with ``mlflow.pyfunc.load_model``; for a binary Booster pyfunc ``predict`` returns the
probability of PRESENT.
"""

import json
import os
from pathlib import Path

import pandas as pd

MODEL_DIR_NAME = "lgbm_gbif_model"
METADATA_FILE = "model_metadata.json"


def requirements() -> list[str]:
    """Pinned requirements of the model environment (explicit: MLflow's inference spawns a slow subprocess)."""
    import lightgbm
    import mlflow
    import numpy
    import pyarrow

    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={numpy.__version__}",
        f"pyarrow=={pyarrow.__version__}",
    ]


def _signature(booster, sample: pd.DataFrame | None):
    """Input/output schema when every feature is numeric.

    MLflow schemas have no categorical type: a string column in the signature would make pyfunc cast
    categories to str, which LightGBM rejects; with categorical features we save no signature.
    """
    if sample is None or len(sample) == 0:
        return None
    sample = sample[booster.feature_name()]
    if any(isinstance(t, pd.CategoricalDtype) or pd.api.types.is_object_dtype(t) for t in sample.dtypes):
        return None
    from mlflow.models import infer_signature

    head = sample.head(50)
    return infer_signature(head, booster.predict(head, num_threads=1))


def save_model(
    booster,
    output_dir: str | os.PathLike,
    *,
    sample: pd.DataFrame | None = None,
    threshold: float = 0.5,
    metadata: dict | None = None,
) -> Path:
    """Save ``booster`` as ``<output_dir>/lgbm_gbif_model``; returns the folder.

    The MLmodel ``metadata`` carries the decision threshold and the feature list (batch scoring reads them).
    """
    import mlflow.lightgbm

    path = Path(output_dir) / MODEL_DIR_NAME
    mlflow.lightgbm.save_model(
        booster,
        os.fspath(path),
        signature=_signature(booster, sample),
        pip_requirements=requirements(),
        metadata={
            "threshold": float(threshold),
            "features": list(booster.feature_name()),
            "model_name": MODEL_DIR_NAME,
            **(metadata or {}),
        },
    )
    return path


def write_metadata(output_dir: str | os.PathLike, run_id: str, **extra) -> dict:
    """``model_metadata.json``: run_id, run_uri (runs:/<id>/lgbm_gbif_model), model_name, plus ``extra``."""
    data = {
        "run_id": run_id,
        "run_uri": f"runs:/{run_id}/{MODEL_DIR_NAME}",
        "model_name": MODEL_DIR_NAME,
        **extra,
    }
    (Path(output_dir) / METADATA_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return data
