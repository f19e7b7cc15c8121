"""The one scoring path: a raw features table in, ``gbifid`` + ``probability`` + ``presence`` out (DESIGN section 6).

The MLflow pyfunc (`serving.pyfunc`), `biodiv batch-score` (`serving.batch_scoring`) and the habitat maps
(`serving.habitat`) all call `score`; `biodiv_core.training.model.predict_proba` predicts underneath.

What a raw table may look like: any column order, column names in any case (``LAND_COVER``, ``gbifID``), extra
columns (ids, coordinates, anything else; ignored). Each training feature column must be there. Numeric features
must hold numbers (a text value is a `DataContractError` naming the column and examples). Categorical features
are re-coded with the training levels (`ModelInputs.categories`): a value never seen in training becomes missing,
is counted per column (``result.attrs["unseen_levels"]``) and logged as a warning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.serving.similarity import NO_REFERENCE_NOTE, CovariateReference, mess
from biodiv_core.training.model import feature_names, predict_proba

logger = logging.getLogger(__name__)

ID_COLUMN = "gbifid"
DEFAULT_THRESHOLD = 0.5
OUTPUT_COLUMNS = (ID_COLUMN, "probability", "presence")


def validate_threshold(threshold: float) -> float:
    if not (isinstance(threshold, int | float) and not math.isnan(threshold) and 0.0 < threshold < 1.0):
        raise ConfigError(f"threshold={threshold!r} must be a probability strictly between 0 and 1, e.g. 0.5.")
    return float(threshold)


@dataclass(frozen=True)
class ModelInputs:
    """What a model needs of its input: feature columns (training order), training levels, decision threshold,
    and the training covariates' reference for extrapolation flags (None: a model saved without one)."""

    features: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    model: str = "the model"  # named in error messages
    reference: CovariateReference | None = None  # saved next to the model, not in its metadata (its size)

    def to_dict(self) -> dict:
        return {"features": list(self.features), "categories": dict(self.categories), "threshold": self.threshold}

    @classmethod
    def from_metadata(
        cls, metadata: dict | None, booster, model: str = "the model", reference: CovariateReference | None = None
    ) -> ModelInputs:
        """From a saved model's MLmodel metadata (and its folder's reference); models saved without levels get
        them from the booster."""
        metadata = metadata or {}
        if "features" in metadata and "categories" in metadata:
            inputs = cls.from_dict(metadata, model)
        else:
            inputs = model_inputs(booster, threshold=float(metadata.get("threshold", DEFAULT_THRESHOLD)), name=model)
        return replace(inputs, reference=reference)

    @classmethod
    def from_dict(cls, data: dict, model: str = "the model") -> ModelInputs:
        return cls(
            features=[str(c) for c in data["features"]],
            categories={str(k): [str(v) for v in levels] for k, levels in (data.get("categories") or {}).items()},
            threshold=validate_threshold(float(data.get("threshold", DEFAULT_THRESHOLD))),
            model=model,
        )


def _categorical_columns(booster, sample: pd.DataFrame | None) -> list[str]:
    names = feature_names(booster)
    if sample is not None:
        return [c for c in names if c in sample.columns and _is_text_or_category(sample[c])]
    # Without a sample: LightGBM lists category values (non-empty) only for categorical features.
    infos = booster.dump_model().get("feature_infos", {})
    return [c for c in names if infos.get(c, {}).get("values")]


def _is_text_or_category(column: pd.Series) -> bool:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return True
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def model_inputs(
    model, sample: pd.DataFrame | None = None, threshold: float = DEFAULT_THRESHOLD, name: str = "the model"
) -> ModelInputs:
    """`ModelInputs` of a fitted LightGBM model; training levels from the booster (LightGBM keeps them)."""
    booster = getattr(model, "booster_", model)
    categorical = _categorical_columns(booster, sample)
    levels = getattr(booster, "pandas_categorical", None) or []
    if len(levels) != len(categorical):
        raise DataContractError(
            f"{name}: LightGBM kept {len(levels)} list(s) of training levels but {len(categorical)} feature(s) are "
            f"categorical ({categorical}); save the model with the frame it was trained on as `sample`."
        )
    categories = {c: [str(v) for v in lv] for c, lv in zip(categorical, levels, strict=True)}
    return ModelInputs(feature_names(booster), categories, validate_threshold(threshold), name)


def _match_columns(frame: pd.DataFrame, wanted: list[str], what: str) -> dict[str, str]:
    """{wanted name: the frame's column}, names compared case-insensitively (and stripped)."""
    by_key: dict[str, str] = {}
    for column in frame.columns:
        by_key.setdefault(str(column).strip().lower(), column)
    found = {name: by_key[name.lower()] for name in wanted if name.lower() in by_key}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataContractError(
            f"The input is missing column(s) {missing} that {what} was trained on "
            f"(columns given: {[str(c) for c in frame.columns][:20]}); give a table with columns {wanted} "
            "(names in any case, extra columns ignored)."
        )
    return found


def _numeric(column: pd.Series, name: str) -> np.ndarray:
    """The column's numbers: numpy float columns as given (no copy; float32 raster cells stay float32, which
    LightGBM reads exactly), anything else as float64."""
    if column.dtype in (np.float32, np.float64):
        return column.to_numpy()
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return column.astype("float64").to_numpy()
    converted = pd.to_numeric(column, errors="coerce")
    bad = column[converted.isna() & column.notna() & (column.astype(str).str.strip() != "")]
    if len(bad):
        raise DataContractError(
            f"Feature column {name!r} must be numeric but holds {len(bad)} non-numeric value(s), e.g. "
            f"{list(pd.unique(bad.astype(str)))[:5]}. Fix or blank those values."
        )
    return converted.astype("float64").to_numpy()


def _as_level_text(column: pd.Series) -> pd.Series:
    """Values as the training levels are written (text); integral numbers without a trailing ``.0``."""
    if pd.api.types.is_float_dtype(column.dtype):
        integral = column.dropna()
        if len(integral) and (integral == np.floor(integral)).all():
            return column.map(lambda v: v if pd.isna(v) else str(int(v)))
    return column.map(lambda v: v if pd.isna(v) else str(v))


def _recode_categorical(column: pd.Series, levels: list[str]) -> tuple[pd.Categorical, np.ndarray, list[str]]:
    """A pandas category column re-coded through its categories, not value by value (rasters: millions of cells)."""
    text = _as_level_text(pd.Series(column.cat.categories.astype(object)))
    position = {level: i for i, level in enumerate(levels)}
    # One entry per category and a last one (-1, missing) that code -1 picks: one small-int pass over the cells.
    lookup = np.array([position.get(t, -1) for t in text] + [-1], dtype=np.min_scalar_type(-max(len(levels), 1)))
    codes = np.asarray(column.cat.codes)  # int8/int16: a few bytes a cell
    new_codes = lookup[codes]
    unseen_mask = (codes >= 0) & (new_codes < 0)
    examples = list(pd.unique(text.to_numpy()[np.unique(codes[unseen_mask])]))[:5]
    return pd.Categorical.from_codes(new_codes, categories=levels), unseen_mask, examples


def _recode(column: pd.Series, levels: list[str]) -> tuple[pd.Categorical, np.ndarray, list[str]]:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return _recode_categorical(column, levels)
    text = _as_level_text(column)
    coded = pd.Categorical(text, categories=levels)
    unseen_mask = text.notna().to_numpy() & (np.asarray(coded.codes) < 0)
    examples = list(pd.unique(text[unseen_mask]))[:5]
    return coded, unseen_mask, examples


def prepare(raw: pd.DataFrame, inputs: ModelInputs) -> tuple[pd.DataFrame, dict[str, int]]:
    """The model's feature frame (training order and types) from a raw table, and unseen-level counts per column."""
    frame, unseen = _prepare(raw, inputs)
    return frame, {name: int(mask.sum()) for name, mask in unseen.items()}


def _prepare(raw: pd.DataFrame, inputs: ModelInputs) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """`prepare` with, per categorical column holding unseen levels, where they are (MESS flags those rows)."""
    if not isinstance(raw, pd.DataFrame):
        raise DataContractError(f"Scoring needs a table (pandas DataFrame), got {type(raw).__name__}.")
    found = _match_columns(raw, inputs.features, inputs.model)
    # The frame wraps the columns without consolidating them into one block (``copy=False``): numeric columns
    # that are floats already are the raw table's own arrays, so a raster window is not copied here at all.
    columns: dict[str, np.ndarray | pd.Categorical] = {}
    unseen: dict[str, np.ndarray] = {}
    for name in inputs.features:
        column = raw[found[name]]
        if name not in inputs.categories:
            columns[name] = _numeric(column, name)
            continue
        recoded, mask, examples = _recode(column, inputs.categories[name])
        columns[name] = recoded
        count = int(mask.sum())
        if count:
            unseen[name] = mask
            logger.warning(
                "%s: %d value(s) of %r not seen in training (e.g. %s) scored as missing; training levels: %s",
                inputs.model,
                count,
                name,
                examples,
                inputs.categories[name][:20],
            )
    frame = pd.DataFrame(columns, index=raw.index, copy=False)
    return frame, unseen


def score(raw: pd.DataFrame, model, inputs: ModelInputs, threshold: float | None = None) -> pd.DataFrame:
    """Predictions for every row of ``raw``, in input order: gbifid (when given), probability, presence (0/1),
    and with the model's covariate reference ``mess`` (`serving.similarity`) and ``extrapolated`` (MESS < 0).

    ``threshold`` None means the model's own (``inputs.threshold``). ``attrs["unseen_levels"]`` counts, per
    categorical column, values scored as missing because training never saw them; ``attrs["extrapolation"]``
    says why there are no MESS columns (a model saved without a reference), else None. An empty table gives an
    empty result.
    """
    threshold = inputs.threshold if threshold is None else validate_threshold(threshold)
    features, unseen_masks = _prepare(raw, inputs)
    unseen = {name: int(mask.sum()) for name, mask in unseen_masks.items()}
    probability = predict_proba(model, features) if len(features) else np.empty(0, dtype=float)
    if len(probability) != len(features):
        raise DataContractError(f"{inputs.model} returned {len(probability)} probabilities for {len(features)} rows.")
    # Columns go into the result as they are (``copy=False``): setting them one by one would copy each.
    columns: dict[str, np.ndarray] = {}
    ids = _match_optional(raw, ID_COLUMN)
    if ids is not None:
        columns[ID_COLUMN] = raw[ids].to_numpy(copy=True)
    columns["probability"] = np.asarray(probability, dtype="float64")
    columns["presence"] = (columns["probability"] >= threshold).astype("int64")
    if inputs.reference is not None:
        columns["mess"] = mess(features, inputs.reference, inputs.categories, unseen_masks)
        columns["extrapolated"] = columns["mess"] < 0  # NaN (nothing known) is not flagged
    result = pd.DataFrame(columns, index=pd.RangeIndex(len(features)), copy=False)
    result.attrs["extrapolation"] = None if inputs.reference is not None else NO_REFERENCE_NOTE
    result.attrs["unseen_levels"] = unseen
    result.attrs["threshold"] = threshold
    return result


def _match_optional(frame: pd.DataFrame, name: str) -> str | None:
    for column in frame.columns:
        if str(column).strip().lower() == name:
            return column
    return None
