"""Scoring script of the AzureML batch deployments: ``init()`` once per worker process, ``run(mini_batch)`` per batch.

AzureML's batch driver imports this file from the deployment's code snapshot (the repository root, as for step
jobs; `.amlignore` applies), sets ``AZUREML_MODEL_DIR`` to the deployed model, calls ``init()`` once and then
``run(files)`` with lists of input file paths; with ``output_action: append_row`` the rows each call returns are
appended to the deployment's output file (``predictions.csv``).

Each CSV/parquet file is scored by `biodiv_core.serving.batch_scoring.score_rows` (`serving.scoring.score`, the one
scoring path): one row per input row with ``gbifid``, ``probability`` (of PRESENT) and ``presence`` (0/1 at the
model's threshold), then ``mess`` and ``extrapolated`` when the model was saved with a covariate reference (one
deployment, one model: every row of a job has the same columns). A file that cannot be scored (wrong type,
missing column, text in a numeric column, no gbifid) fails its mini-batch with a message naming the file; the
deployment's ``error_threshold`` (default 0) decides whether the job fails, so failed files are never silently
dropped.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# The driver may put only this script's folder on sys.path: make the snapshot root (biodiv_core's parent) importable.
_CODE_ROOT = str(Path(__file__).resolve().parent.parent)
if _CODE_ROOT not in sys.path:
    sys.path.insert(0, _CODE_ROOT)

import pandas as pd  # noqa: E402

from biodiv_core.errors import BiodivError, DataContractError  # noqa: E402
from biodiv_core.serving.batch_scoring import failed_file_line  # noqa: E402

logger = logging.getLogger("biodiv.batch_scoring")
MODEL_DIR_ENV = "AZUREML_MODEL_DIR"
OUTPUT_COLUMNS = ["gbifid", "probability", "presence"]
MESS_COLUMNS = ["mess", "extrapolated"]  # after OUTPUT_COLUMNS, for a model with a covariate reference

_scorer: tuple | None = None  # (LightGBM model, ModelInputs), loaded once by init()


def init() -> None:
    """Load the deployed model once per worker process (``$AZUREML_MODEL_DIR``)."""
    global _scorer
    from biodiv_core.serving.batch_scoring import find_model_folder, load_scorer

    root = os.environ.get(MODEL_DIR_ENV)
    if not root:
        raise RuntimeError(f"{MODEL_DIR_ENV} is not set: this script runs inside an AzureML batch deployment.")
    folder = find_model_folder(root)
    _scorer = load_scorer(os.fspath(folder))
    logger.info("batch scoring with the model at %s (features %s)", folder, _scorer[1].features)


def _columns() -> list[str]:
    return OUTPUT_COLUMNS + (MESS_COLUMNS if _scorer is not None and _scorer[1].reference is not None else [])


def score_file(path: str) -> pd.DataFrame:
    """gbifid, probability, presence (and mess, extrapolated) for every row of one CSV/parquet file."""
    from biodiv_core.data.datastore import read_table
    from biodiv_core.serving.batch_scoring import score_rows

    if _scorer is None:
        raise RuntimeError("init() has not run: the batch driver calls it before run().")
    model, inputs = _scorer
    result = score_rows(model, read_table(path), inputs)
    unseen = result.attrs.get("unseen_levels") or {}
    if unseen:
        logger.warning("%s: values not seen in training scored as missing: %s", path, unseen)
    return result[_columns()]


def run(mini_batch: list[str]) -> pd.DataFrame:
    """Score every file of the mini-batch; a file that cannot be scored fails the mini-batch, naming it."""
    frames, failures = [], []
    for path in mini_batch:
        try:
            frames.append(score_file(os.fspath(path)))
        except BiodivError as exc:
            failures.append(failed_file_line(path, exc))
    if failures:
        # Raised, not skipped: the driver counts this mini-batch as failed against error_threshold.
        raise DataContractError(
            f"{len(failures)} of {len(mini_batch)} file(s) could not be scored: " + " | ".join(failures)
        )
    if not frames:
        return pd.DataFrame(columns=_columns())
    return pd.concat(frames, ignore_index=True)
