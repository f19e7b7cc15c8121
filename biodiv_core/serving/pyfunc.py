"""The MLflow pyfunc of ``lgbm_gbif_model``: ``mlflow.pyfunc.load_model(folder).predict(raw_features)``.

The MLmodel's ``python_function`` flavor names this module as its ``loader_module``; the model folder carries a
copy of ``biodiv_core`` under ``code/`` (MLflow puts it on ``sys.path`` before importing this module), so the
folder loads wherever its requirements are installed. ``predict`` is `biodiv_core.serving.scoring.score`, with
the feature columns, training levels and threshold from the MLmodel ``metadata`` and the training covariates'
reference (``covariate_reference.json``, `serving.similarity`) from the folder: the result gains ``mess`` and
``extrapolated``. A folder saved without the reference still loads and scores, without those two columns.

Bad input raises `ScoringInputError`: a `DataContractError` for our callers and an ``MlflowException`` with
``INVALID_PARAMETER_VALUE`` for MLflow's scoring server (``mlflow models serve``), which answers it with HTTP 400
and the message; any other exception there becomes a 400 "unexpected error" with a stack trace in the body.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from biodiv_core.errors import DataContractError
from biodiv_core.serving.scoring import ModelInputs, score
from biodiv_core.serving.similarity import read_reference

CODE_DIR = "code"  # where MLflow's code_paths put the copy of biodiv_core


class ScoringInputError(DataContractError, MlflowException):
    """The input table breaks the model's contract; HTTP 400 through MLflow's scoring server.

    The server prefixes the message of an MlflowException raised by ``predict`` with the whole request table
    (``e.message = f"Failed to predict data '{data}'..."``); the message stays the one line we wrote instead.
    """

    def __init__(self, message: str):
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self.args[0]

    @message.setter
    def message(self, value: str) -> None:
        pass  # set by MlflowException.__init__ (the same text) and by the scoring server (the prefixed one)


class LgbmGbifModel:
    """A LightGBM booster with its training levels and threshold; ``predict`` scores a raw features table."""

    def __init__(self, booster, inputs: ModelInputs):
        self.booster = booster
        self.inputs = inputs
        self.unseen_levels: dict[str, int] = {}  # per categorical column, of the last predict call
        self.extrapolation: str | None = None  # why the last result has no mess columns (None: it has them)

    def get_raw_model(self) -> LgbmGbifModel:
        """What ``PyFuncModel.get_raw_model()`` returns: this object (booster, inputs, unseen_levels)."""
        return self

    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        try:
            result = score(pd.DataFrame(model_input), self.booster, self.inputs)
        except DataContractError as exc:
            message = str(exc)
            if "is missing column" in message:
                message += (
                    " Through mlflow.pyfunc the model's signature applies first: MLflow passes on only the columns "
                    f"it names, spelled exactly so ({self.inputs.features}); rename columns in other case."
                )
            raise ScoringInputError(message) from exc
        self.unseen_levels = dict(result.attrs.get("unseen_levels", {}))
        self.extrapolation = result.attrs.get("extrapolation")
        return result


def load_folder(model_dir: str | os.PathLike) -> LgbmGbifModel:
    """The model in a saved MLflow LightGBM model folder (booster from the ``lightgbm`` flavor, metadata)."""
    import lightgbm as lgb
    from mlflow.models import Model

    folder = Path(model_dir)
    meta = Model.load(os.fspath(folder))
    model_file = meta.flavors.get("lightgbm", {}).get("data", "model.lgb")
    booster = lgb.Booster(model_file=os.fspath(folder / model_file))
    name = (meta.metadata or {}).get("registry_name") or folder.name
    inputs = ModelInputs.from_metadata(meta.metadata, booster, model=str(name), reference=read_reference(folder))
    return LgbmGbifModel(booster, inputs)


def _load_pyfunc(path: str, model_config: dict | None = None) -> LgbmGbifModel:
    """MLflow's loader hook: ``path`` is the flavor's data (the model file) inside the model folder."""
    target = Path(path)
    folder = target.parent if target.is_file() else target
    model = load_folder(folder)
    _drop_code_path(folder / CODE_DIR)
    return model


def _drop_code_path(code_dir: Path) -> None:
    """Take the folder's ``code/`` off ``sys.path`` again once this module is imported.

    MLflow prepends it for good; left there, every later ``import biodiv_core`` that is not already in
    ``sys.modules`` (a ``spawn`` child inherits ``sys.path``) would get this model's copy instead of the installed
    package. Modules already imported keep working: their package ``__path__`` finds their submodules.
    """
    resolved = os.path.realpath(code_dir)
    sys.path[:] = [entry for entry in sys.path if not entry or os.path.realpath(entry) != resolved]
