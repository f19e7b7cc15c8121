"""Hyperopt TPE over k-fold CV: the tuner of the train stage (the hot path of the platform).

Each trial is one `cross_validation.cross_validate` on data binned once for the whole search (what makes a
trial fast is listed there); the tuner adds the search, the leader that later trials are pruned against, and
the history. Same inputs and seed -> the same best parameters.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.run_settings import DEFAULTS
from biodiv_core.training.cross_validation import FoldData, check_folds, cross_validate, stratified_folds
from biodiv_core.training.model import as_lgb_frame, as_target
from biodiv_core.training.params import ParamsConfig, load_params


@dataclass(frozen=True)
class TuningResult:
    best_params: dict  # full LightGBM params incl. num_boost_round, seed and deterministic
    best_cv_auc: float
    trials: list[dict] = field(default_factory=list)  # JSON-able history, in evaluation order
    # Out-of-fold probabilities of the best trial at its best round (row positions; NaN in no validation fold).
    oof: np.ndarray | None = None


def run_tpe(objective: Callable[[dict], dict], config: ParamsConfig, max_evals: int, seed: int) -> None:
    """Hyperopt TPE over ``config``'s space, ``max_evals`` trials in all, the yml's initial guess first.

    ``objective`` takes a sample of the space and returns hyperopt's ``{"loss", "status"}``; it records
    what it needs itself. Seeded: same objective and seed -> same sequence of trials.
    """
    from hyperopt import Trials, fmin, space_eval, tpe
    from hyperopt.fmin import generate_trials_to_calculate

    space = config.hyperopt_space()
    point = config.initial_point()
    if point is not None and max_evals == 1:
        objective(space_eval(space, point))
        return
    # A preloaded point is evaluated on top of the max_evals fmin is given: ask for one fewer.
    fmin(
        objective,
        space,
        algo=tpe.suggest,
        max_evals=max_evals - 1 if point is not None else max_evals,
        trials=generate_trials_to_calculate([point]) if point is not None else Trials(),
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
        return_argmin=False,
    )


def tune(
    features: pd.DataFrame,
    targets,
    config: ParamsConfig | str,
    *,
    n_folds: int = DEFAULTS.n_folds,
    max_evals: int = DEFAULTS.max_evals,
    seed: int = 0,
    num_threads: int = 1,
    on_trial: Callable[[dict], None] | None = None,
    prune: bool = True,
    patience: int | None = None,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> TuningResult:
    """Search ``config.search_space`` with hyperopt TPE, scoring each point by k-fold CV AUC.

    The first trial is the initial guess from lgbm_params.yml (clipped into the bounds). ``on_trial`` is
    called with each trial's record (e.g. to log it to MLflow). Same inputs and seed -> same result.
    ``folds`` (train_idx, test_idx) position arrays replace the stratified folds, e.g. spatial blocks
    from ``biodiv_core.training.spatial_cv.make_folds``.
    """
    from hyperopt import STATUS_OK

    if not isinstance(config, ParamsConfig):
        config = load_params(config)
    if not isinstance(max_evals, int) or max_evals < 1:
        raise ConfigError(f"max_evals={max_evals!r}: give at least 1 evaluation.")
    x = as_lgb_frame(features)
    if x.shape[1] == 0:
        raise DataContractError("features have no columns: nothing to train on.")
    y = as_target(targets, len(x))
    check_folds(y, n_folds)

    folds = stratified_folds(y, n_folds, seed) if folds is None else [(np.sort(a), np.sort(b)) for a, b in folds]
    data = FoldData(x, y, folds, config.binning_params())
    records: list[dict] = []
    leading_oof: list[Callable[[], np.ndarray] | None] = [None]

    def objective(sample: dict) -> dict:
        params = {**config.params_from_sample(sample), "seed": seed, "deterministic": True}
        leader = max(records, key=lambda r: r["auc"], default=None)  # always a trial that trained every fold
        start = time.perf_counter()
        outcome = cross_validate(
            params,
            data,
            config.num_boost_round,
            num_threads=num_threads,
            patience=patience,
            incumbent=None if leader is None else leader["auc"],
            prune=prune,
            incumbent_folds=None if leader is None else tuple(leader["fold_aucs"]),
            oof_if_leading=True,
        )
        if outcome.oof is not None:
            leading_oof[0] = outcome.oof
        record = {
            "trial": len(records),
            "params": {name: params[name] for name in config.search_space},
            "auc": outcome.auc,
            "auc_std": outcome.auc_std,
            "loss": -outcome.auc,
            "num_boost_round": outcome.best_rounds,
            "rounds_trained": outcome.rounds_trained,
            "pruned": outcome.pruned,
            "folds_trained": outcome.folds_trained,
            "fold_aucs": list(outcome.fold_aucs),
            "seconds": round(time.perf_counter() - start, 4),
        }
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        return {"loss": -outcome.auc, "status": STATUS_OK}

    run_tpe(objective, config, max_evals, seed)
    best = max(records, key=lambda r: r["auc"])  # first of equals: deterministic
    best_params = {
        **{k: v for k, v in config.params_from_sample(best["params"]).items()},
        "seed": seed,
        "deterministic": True,
        "num_boost_round": best["num_boost_round"],
    }
    oof = leading_oof[0]() if leading_oof[0] is not None else None
    return TuningResult(best_params=best_params, best_cv_auc=best["auc"], trials=records, oof=oof)
