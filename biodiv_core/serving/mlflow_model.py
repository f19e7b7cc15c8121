"""The deployable model: an MLflow model folder ``lgbm_gbif_model`` saved into the step output, then logged.

``mlflow.lightgbm.save_model`` writes MLmodel, conda.yaml, python_env.yaml, requirements.txt and the model
file; the folder is then logged as run artifacts. We never call ``log_model``: MLflow 3's log_model goes
through the logged-models API, which the AzureML tracking server answers with 404 (DESIGN section 6).
The folder loads with ``mlflow.pyfunc.load_model``: its ``predict`` takes a raw features table and returns
gbifid, probability (of PRESENT) and presence (0/1 at the model's threshold), see `biodiv_core.serving.scoring`.
The folder also holds ``code/biodiv_core`` (what the pyfunc imports), ``input_example.json``,
``serving_input_example.json`` and, when saved with the training frame, ``covariate_reference.json`` (the
training covariates' quantiles and levels the pyfunc's ``mess`` column compares with, `serving.similarity`);
``mlflow.lightgbm.load_model`` still returns the bare Booster.
"""

import json
import os
from pathlib import Path

import pandas as pd

from biodiv_core.serving.scoring import ID_COLUMN, ModelInputs, model_inputs
from biodiv_core.serving.similarity import REFERENCE_FILE, build_reference, write_reference

PYFUNC_LOADER = "biodiv_core.serving.pyfunc"
ID_SPELLINGS = (ID_COLUMN, "gbifID")  # ours (data store, lower-cased) and GBIF's (raw downloads)
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


def _raw_example(sample: pd.DataFrame, inputs: ModelInputs, rows: int = 5) -> pd.DataFrame:
    """A few rows as a raw features file holds them: gbifid (when known), numbers, categories as text."""
    head = sample.head(rows)
    example = pd.DataFrame(index=range(len(head)))
    ids = head[ID_COLUMN] if ID_COLUMN in head.columns else (head.index if head.index.name == ID_COLUMN else None)
    if ids is not None:
        example[ID_COLUMN] = pd.to_numeric(pd.Series(ids)).astype("int64").to_numpy()
    for name in inputs.features:
        column = head[name].reset_index(drop=True)
        if name in inputs.categories:
            example[name] = column.astype(object).where(column.notna(), None).map(lambda v: v if v is None else str(v))
        else:
            example[name] = column.astype("float64")
    return example


def signature(inputs: ModelInputs):
    """Inputs: the id (``gbifid``, or GBIF's own spelling ``gbifID``; long) and each feature column (double, or
    string for a categorical one), all optional. Outputs: gbifid, probability, presence, and (models saved with
    a covariate reference) mess and extrapolated.

    MLflow enforces the signature before our pyfunc sees the table: it passes on only the columns named here,
    spelled exactly so (the data store's lower-case names), and checks their types. The columns are optional so
    that a missing one reaches the scoring function, which names it and the model.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns = [ColSpec("long", name, required=False) for name in ID_SPELLINGS]
    columns += [ColSpec("string" if c in inputs.categories else "double", c, required=False) for c in inputs.features]
    outputs = [ColSpec("long", ID_COLUMN, required=False), ColSpec("double", "probability")]
    outputs.append(ColSpec("long", "presence"))
    outputs += [ColSpec("double", "mess", required=False), ColSpec("boolean", "extrapolated", required=False)]
    return ModelSignature(inputs=Schema(columns), outputs=Schema(outputs))


def save_model(
    booster,
    output_dir: str | os.PathLike,
    *,
    sample: pd.DataFrame | None = None,
    threshold: float = 0.5,
    metadata: dict | None = None,
) -> Path:
    """Save ``booster`` as ``<output_dir>/lgbm_gbif_model``; returns the folder.

    ``sample`` (the training features) tells which columns are categorical, gives the input example and the
    covariate reference for extrapolation flags (``covariate_reference.json``; MLmodel metadata
    ``covariate_reference`` names it). The MLmodel ``metadata`` carries the threshold, the feature list and the
    training levels (``categories``); the ``python_function`` flavor loads `biodiv_core.serving.pyfunc`, whose
    code travels in the folder.
    """
    import mlflow.lightgbm
    from mlflow.models import Model

    import biodiv_core

    path = Path(output_dir) / MODEL_DIR_NAME
    inputs = model_inputs(booster, sample, threshold, name=(metadata or {}).get("registry_name", MODEL_DIR_NAME))
    reference = None if sample is None else build_reference(sample, inputs.features, inputs.categories)
    extra = {"covariate_reference": REFERENCE_FILE} if reference is not None else {}
    mlflow.lightgbm.save_model(
        booster,
        os.fspath(path),
        code_paths=[os.path.dirname(biodiv_core.__file__)],
        signature=signature(inputs),
        input_example=None if sample is None or len(sample) == 0 else _raw_example(sample, inputs),
        pip_requirements=requirements(),
        metadata={**inputs.to_dict(), **extra, "model_name": MODEL_DIR_NAME, **(metadata or {})},
    )
    if reference is not None:
        write_reference(reference, path)
    # The pyfunc scores raw tables with our scoring function instead of handing them to LightGBM as they are.
    model = Model.load(os.fspath(path))
    model.flavors["python_function"]["loader_module"] = PYFUNC_LOADER
    model.flavors["lightgbm"].pop("code", None)  # the bare booster needs no code: its loader leaves sys.path alone
    model.save(os.fspath(path / "MLmodel"))
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
