"""Hyperopt TPE over stratified k-fold CV, built for speed (the hot path of the platform).

What makes it fast (measured in benchmarks/tuning.py):
- the data is binned once: one ``lgb.Dataset`` (free_raw_data=False, feature_pre_filter=False so that
  min_data_in_leaf may vary) and its k fold subsets are constructed before the first trial and reused by
  every trial; binning parameters are fixed (params.BINNING_PARAMS cannot be tuned);
- the folds train interleaved, one round at a time, and stop together when the mean validation AUC has not
  improved for ``patience`` rounds (lgb.cv-style early stopping, without re-slicing the data per trial);
  the best round count becomes ``num_boost_round`` of the best parameters;
- a trial that cannot catch up stops early: when even a linear extrapolation of its recent gain (an upper
  bound, since AUC curves flatten) cannot reach the best CV AUC so far, its best value is final;
- successive halving over folds: once there is a leader, a trial trains half the folds first and stops
  there when its best mean on them stays below the leader's on the same folds (a paired comparison, so
  fold noise cancels); else the other folds catch up and all train on. On the 20k-row partition (20
  evaluations, 5 folds) it halved the tuner's CPU time (10.2 vs 22.0 s at seed 42, 16.8 vs 20.0 s at
  seed 0) with the same best trial;
- the leader's out-of-fold predictions come back with the result (`TuningResult.oof`), so the train
  stage's quality numbers need no refits of the tuning folds;
- folds can train in parallel threads (LightGBM releases the GIL), one LightGBM thread each, when the CPU
  budget gives more than one thread; results do not depend on it. Measured on the shared 2-core machine
  under load (load average 4-8), 2 threads did not beat 1 in wall time (62-69 s vs 54-67 s for 20
  evaluations on 20k rows); it pays only when cores are actually free.
Every LightGBM call gets an explicit ``num_threads`` (DESIGN section 9) and a seed, so the same seed gives
the same best parameters.
"""

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from biodiv_core.errors import ConfigError, DataContractError
from biodiv_core.run_settings import DEFAULTS
from biodiv_core.training.model import as_lgb_frame, as_target, train_params
from biodiv_core.training.params import ParamsConfig, load_params

# Rounds each fold trains between synchronisations when folds run in parallel threads; the stop decision
# is taken per round on the recorded history, so this only bounds the few extra rounds trained.
_PARALLEL_CHUNK = 8


@dataclass(frozen=True)
class TuningResult:
    best_params: dict  # full LightGBM params incl. num_boost_round, seed and deterministic
    best_cv_auc: float
    trials: list[dict] = field(default_factory=list)  # JSON-able history, in evaluation order
    # Out-of-fold probabilities of the best trial at its best round (row positions; NaN in no validation fold).
    oof: np.ndarray | None = None


@dataclass(frozen=True)
class CVOutcome:
    auc: float  # mean validation AUC over folds at the best round
    auc_std: float
    best_rounds: int  # 1-based number of rounds at the best mean AUC
    rounds_trained: int  # rounds each trained fold actually trained
    pruned: bool
    fold_aucs: tuple[float, ...] = ()  # AUC of each trained fold at the best round
    folds_trained: int = 0  # fewer than the folds when the trial stopped after the first rung
    # The out-of-fold probabilities at the best round, when asked for: computed on call, so a tuner predicts only
    # with its final leader's boosters (they stay referenced until then), not with every leader's along the way.
    oof: Callable[[], np.ndarray] | None = None


def stratified_folds(targets: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified k-fold indices (sorted, as Dataset.subset wants them)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(targets)), targets)]


def check_folds(y: np.ndarray, n_folds: int) -> None:
    if not isinstance(n_folds, int) or n_folds < 2:
        raise DataContractError(f"n_folds={n_folds!r}: cross-validation needs at least 2 folds.")
    counts = {label: int((y == value).sum()) for label, value in (("ABSENT", 0), ("PRESENT", 1))}
    short = {k: v for k, v in counts.items() if v < n_folds}
    if short:
        raise DataContractError(
            f"targets have {counts['PRESENT']} PRESENT and {counts['ABSENT']} ABSENT rows; n_folds={n_folds} "
            f"needs at least {n_folds} of each class ({', '.join(short)} too few): lower n_folds or add data."
        )


class FoldData:
    """The binned data and its folds, built once per tuning run and shared by all trials."""

    def __init__(self, features: pd.DataFrame, y: np.ndarray, folds, binning_params: dict):
        import lightgbm as lgb

        params = {**binning_params, "feature_pre_filter": False, "verbosity": -1}
        self.frame = as_lgb_frame(features)  # kept for out-of-fold predictions
        self.full = lgb.Dataset(self.frame, y, params=params, free_raw_data=False).construct()
        self.folds = [(self.full.subset(a).construct(), self.full.subset(b).construct()) for a, b in folds]
        self.valid_rows = [np.asarray(b) for _, b in folds]

    def __len__(self) -> int:
        return len(self.folds)


def default_patience(learning_rate: float) -> int:
    """Early-stopping patience in rounds: about two 'units' of shrinkage (2/learning_rate), within 10..50.

    A fixed 50 wastes rounds at high learning rates, where the curve flattens within a few rounds.
    """
    return int(min(50, max(10, math.ceil(2.0 / max(float(learning_rate), 1e-6)))))


def _quiet_thread() -> None:
    """LightGBM keeps its log level per thread and sets it only while parsing parameters: parse
    ``verbosity=-1`` once in each worker thread, or its boosters print Info/Warning lines."""
    from lightgbm.basic import _LIB, _c_str

    _LIB.LGBM_DatasetUpdateParamChecking(_c_str("verbosity=-1"), _c_str("verbosity=-1"))


def _train_chunk(booster, rounds: int) -> np.ndarray:
    out = np.empty(rounds)
    for j in range(rounds):
        booster.update()
        out[j] = booster.eval_valid()[0][2]
    return out


def _advance(boosters: list, rounds: int, pool: ThreadPoolExecutor | None) -> list[np.ndarray]:
    if pool is None:
        return [_train_chunk(b, rounds) for b in boosters]
    return list(pool.map(_train_chunk, boosters, [rounds] * len(boosters)))


def rung_folds(n_folds: int) -> int:
    """Folds a trial trains first, before it may claim the others: half of them, from 4 folds up."""
    return n_folds // 2 if n_folds >= 4 else n_folds


def _train_until(
    boosters: list, history: list[np.ndarray], max_rounds: int, patience: int, target: float | None, chunk: int, pool
) -> tuple[int, str | None]:
    """Grow ``history`` (per round: AUC of each booster's fold) until the mean curve stops improving for
    ``patience`` rounds ("stopped"), cannot reach ``target`` ("pruned") or ``max_rounds``; rows already in
    ``history`` are judged first. Returns (index of the best round, why it stopped or None)."""
    best_mean, best_round = -np.inf, 0

    def judge(i: int) -> str | None:
        nonlocal best_mean, best_round
        mean = float(history[i].mean())
        if mean > best_mean:
            best_mean, best_round = mean, i
        if i - best_round >= patience:
            return "stopped"
        if target is not None and i >= patience:
            # Linear extrapolation of the recent gain over-estimates a flattening curve.
            slope = max(0.0, (mean - float(history[i - patience].mean())) / patience)
            if best_mean + slope * (max_rounds - 1 - i) < target:
                return "pruned"
        return None

    for i in range(len(history)):
        if reason := judge(i):
            return best_round, reason
    while len(history) < max_rounds:
        results = _advance(boosters, min(chunk, max_rounds - len(history)), pool)
        for j in range(len(results[0])):
            history.append(np.array([r[j] for r in results]))
            if reason := judge(len(history) - 1):
                return best_round, reason
    return best_round, None


def cross_validate(
    params: dict,
    data: FoldData,
    max_rounds: int,
    *,
    num_threads: int = 1,
    patience: int | None = None,
    incumbent: float | None = None,
    prune: bool = True,
    incumbent_folds: tuple[float, ...] | None = None,
    oof_if_leading: bool = False,
) -> CVOutcome:
    """Mean validation AUC of ``params`` over the folds, with early stopping on the mean curve.

    With ``prune`` and the incumbent's per-fold AUCs (``incumbent_folds``, at its best round), the trial
    first trains only the first `rung_folds` folds: when its best mean there stays below the incumbent's
    mean on the same folds, it stops (``pruned``, ``folds_trained`` < the folds) and its AUC is the paired
    estimate incumbent + (its rung mean - the incumbent's rung mean), always below the incumbent; else the
    other folds catch up to the same round and all train on (successive halving over folds).
    ``oof_if_leading``: when the trial beats ``incumbent`` (or there is none), also return its out-of-fold
    probabilities at the best round (on call, see `CVOutcome.oof`), so the caller's quality numbers need no
    refits of the same folds.
    """
    import lightgbm as lgb

    workers = max(1, min(num_threads, len(data)))
    lgb_threads = max(1, num_threads // workers)
    fold_params = train_params({**params, "metric": "auc"}, lgb_threads)
    if patience is None:
        patience = default_patience(fold_params.get("learning_rate", 0.1))

    def fold_booster(train_set, valid_set):
        booster = lgb.Booster(fold_params, train_set)
        booster.add_valid(valid_set, "valid")
        return booster

    target = incumbent if prune else None
    rung = rung_folds(len(data)) if prune and incumbent is not None and incumbent_folds is not None else len(data)
    boosters = [fold_booster(*fold) for fold in data.folds[:rung]]  # the other folds' only if promoted
    chunk = 1 if workers == 1 else _PARALLEL_CHUNK
    pool = ThreadPoolExecutor(workers, initializer=_quiet_thread) if workers > 1 else None
    history: list[np.ndarray] = []  # per round: AUC of each fold trained so far
    try:
        if rung < len(data):
            rung_target = float(np.mean(incumbent_folds[:rung]))
            best_round, _ = _train_until(boosters[:rung], history, max_rounds, patience, rung_target, chunk, pool)
            rung_best = float(history[best_round].mean())
            if rung_best < rung_target:
                return CVOutcome(
                    auc=float(incumbent) + rung_best - rung_target,
                    auc_std=float(history[best_round].std()),
                    best_rounds=best_round + 1,
                    rounds_trained=len(history),
                    pruned=True,
                    fold_aucs=tuple(float(v) for v in history[best_round]),
                    folds_trained=rung,
                )
            boosters += [fold_booster(*fold) for fold in data.folds[rung:]]
            caught_up = _advance(boosters[rung:], len(history), pool)
            history[:] = [np.concatenate([row, [r[i] for r in caught_up]]) for i, row in enumerate(history)]
        best_round, reason = _train_until(boosters, history, max_rounds, patience, target, chunk, pool)
        leading = incumbent is None or float(history[best_round].mean()) > incumbent
        oof = partial(_out_of_fold, boosters, data, best_round + 1) if oof_if_leading and leading else None
    finally:
        if pool is not None:
            pool.shutdown()
        for booster in boosters:
            booster.free_dataset()
    fold_aucs = history[best_round]
    return CVOutcome(
        auc=float(fold_aucs.mean()),
        auc_std=float(fold_aucs.std()),
        best_rounds=best_round + 1,
        rounds_trained=len(history),
        pruned=reason == "pruned",
        fold_aucs=tuple(float(v) for v in fold_aucs),
        folds_trained=len(data),
        oof=oof,
    )


def _out_of_fold(boosters: list, data: FoldData, rounds: int) -> np.ndarray:
    oof = np.full(len(data.frame), np.nan)
    for booster, rows in zip(boosters, data.valid_rows, strict=True):
        oof[rows] = booster.predict(data.frame.iloc[rows], num_iteration=rounds, num_threads=1)
    return oof


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
