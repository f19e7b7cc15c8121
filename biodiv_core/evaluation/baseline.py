"""A simple model the LightGBM model has to beat.

Regularised logistic regression on standardised numeric features with their squares and pairwise
products (a quadratic, GLM-style niche, as in classic SDM tools) and one-hot categoricals. It is
scored on the same folds and test rows as the LightGBM model; ``lift`` = model AUC - baseline AUC.
A boosted model that does not beat this is fitting noise or a data problem.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.training.model import as_target
from biodiv_core.training.spatial_cv import Fold, out_of_fold_predictions


def _split_columns(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    return numeric, categorical


def make_baseline(X: pd.DataFrame, C: float = 1.0, max_iter: int = 2000) -> Pipeline:
    """Unfitted pipeline for the columns of ``X``: quadratic terms of scaled numerics, one-hot categoricals.

    Missing numeric values get the training median and missing categories the most frequent level
    (LightGBM copes with NaN; logistic regression does not). ``C`` is the inverse L2 strength.
    """
    if not C > 0:
        raise ConfigError(f"Baseline C must be positive, got {C!r}.")
    numeric, categorical = _split_columns(X)
    if not numeric and not categorical:
        raise DataContractError("The baseline needs at least one feature column; X has none.")
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler()),
                        ("quadratic", PolynomialFeatures(degree=2, include_bias=False)),
                        # Squares of standardised values have a different scale; rescale so one C fits all terms.
                        ("rescale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            )
        )
    return Pipeline(
        [
            ("features", ColumnTransformer(transformers)),
            ("model", LogisticRegression(C=C, max_iter=max_iter)),
        ]
    )


def _as_model_input(X: pd.DataFrame) -> pd.DataFrame:
    # Categories as plain values: the training and scoring frames may carry different category lists.
    converted = X.copy()
    for column in converted.columns:
        if isinstance(converted[column].dtype, pd.CategoricalDtype):
            converted[column] = converted[column].astype(object)
    return converted


def fit_baseline(X: pd.DataFrame, y: Sequence[int] | np.ndarray | pd.Series, C: float = 1.0) -> Pipeline:
    y = as_target(y)
    if len(np.unique(y)) < 2:
        raise DataContractError("The baseline needs both present and absent rows in the training data.")
    return make_baseline(X, C).fit(_as_model_input(X), y)


def predict_baseline(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(_as_model_input(X))[:, 1]


def baseline_fit_predict(C: float = 1.0):
    """A ``fit_predict`` for ``spatial_cv.out_of_fold_predictions``."""

    def fit_predict(X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame) -> np.ndarray:
        return predict_baseline(fit_baseline(X_train, y_train, C), X_test)

    return fit_predict


def baseline_oof(X: pd.DataFrame, y, folds: list[Fold], C: float = 1.0) -> np.ndarray:
    """Out-of-fold baseline probabilities on the same folds the LightGBM model uses."""
    return out_of_fold_predictions(baseline_fit_predict(C), X, y, folds)


def baseline_scores(
    X_train: pd.DataFrame,
    y_train,
    X_test: pd.DataFrame,
    y_test,
    model_roc_auc: float | None = None,
    C: float = 1.0,
) -> dict[str, float]:
    """Fit on the training rows, score the test rows: ``baseline_roc_auc`` and, given the model's AUC, ``lift``."""
    probability = predict_baseline(fit_baseline(X_train, y_train, C), X_test)
    auc = float(roc_auc_score(as_target(y_test), probability))
    scores = {"baseline_roc_auc": auc}
    if model_roc_auc is not None:
        scores["lift"] = lift(model_roc_auc, auc)
    return scores


def lift(model_roc_auc: float, baseline_roc_auc: float) -> float:
    """Model AUC minus baseline AUC: > 0 means the boosted model earns its complexity."""
    return float(model_roc_auc) - float(baseline_roc_auc)
