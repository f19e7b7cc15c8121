"""What the stages after prep share: reading the train step's folders back."""

import json
import os
from pathlib import Path

import pandas as pd

from biodiv_core.errors import DataContractError, NotFoundError

ID_COLUMN = "gbifid"
TARGET_COLUMN = "target"
BEST_PARAMETERS_FILE = "best_parameters.json"
TRIALS_FILE = "trials.json"
SPLIT_FILES = ("x_train.parquet", "x_test.parquet", "y_train.parquet", "y_test.parquet")


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    frame.reset_index().to_parquet(path, index=False)


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist: pass the split folder written by the train step.")
    frame = pd.read_parquet(path)
    return frame.set_index(ID_COLUMN) if ID_COLUMN in frame.columns else frame


def read_best_parameters(folder: str | os.PathLike) -> dict:
    path = Path(folder) / BEST_PARAMETERS_FILE
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist: pass the best-parameters folder written by the train step.")
    try:
        params = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataContractError(f"{path} is not valid JSON ({exc}): rerun the train step.") from exc
    if not isinstance(params, dict) or "num_boost_round" not in params:
        raise DataContractError(f"{path} has no num_boost_round: rerun the train step to regenerate it.")
    return params


def read_split(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    folder = Path(folder)
    x_train, x_test, y_train, y_test = (_read_frame(folder / name) for name in SPLIT_FILES)
    return x_train, x_test, y_train[TARGET_COLUMN], y_test[TARGET_COLUMN]


def step_summary(args, run_id: str, **values) -> dict:
    """The JSON-able summary every stage returns: its partition, values, MLflow run and correlation id."""
    return {**args.context(), **values, "mlflow_run_id": run_id, "correlation_id": args.correlation_id}
