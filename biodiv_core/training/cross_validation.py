"""k-fold cross-validation of one LightGBM parameter set, built for speed (the tuner's inner loop).

What makes a trial fast (measured in benchmarks/tuning.py):
- the data is binned once: one ``lgb.Dataset`` (free_raw_data=False, feature_pre_filter=False so that
  min_data_in_leaf may vary) and its k fold subsets are constructed before the first trial and reused by
  every trial; binning parameters are fixed (params.BINNING_PARAMS cannot be tuned);
- the folds train interleaved and stop together when the mean validation AUC has not improved for
  ``patience`` rounds (lgb.cv-style early stopping, without re-slicing the data per trial); the best round
  count becomes ``num_boost_round`` of the best parameters;
- the validation AUC is read every `eval_every` rounds (patience // 10: at least ten readings within the
  patience window; 1 to 5 rounds), not after every round; a stop comes at the first reading ``patience`` or
  more rounds after the best one (up to ``every`` - 1 rounds late when ``every`` does not divide it). Each
  reading is LightGBM's sort of the validation rows, ~0.3 ms at 4,000 rows right after a boosting round: read
  every round it was 8% of the tuner's CPU on the 20k-row partition (1.55-1.66 s of ~19 s). Reading on the
  grid cut the tuner's ratio to its floor from 1.17-1.18 to 1.08-1.10 (benchmarks/tuning.py, 4 alternating
  pairs each), at a CV AUC of 0.83319 vs 0.83321 and 190 vs 188 rounds for the best trial;
- a trial that cannot catch up stops early: when even a linear extrapolation of its recent gain (an upper
  bound, since AUC curves flatten) cannot reach the best CV AUC so far, its best value is final;
- successive halving over folds: once there is a leader, a trial trains half the folds first and stops
  there when its best mean on them stays below the leader's on the same folds (a paired comparison, so
  fold noise cancels); else the other folds catch up and all train on. On the 20k-row partition (20
  evaluations, 5 folds) it halved the tuner's CPU time (10.2 vs 22.0 s at seed 42, 16.8 vs 20.0 s at
  seed 0) with the same best trial;
- the leader's out-of-fold predictions come back with the outcome (`CVOutcome.oof`), so the train stage's
  quality numbers need no refits of the tuning folds;
- folds can train in parallel threads (LightGBM releases the GIL), one LightGBM thread each, when the CPU
  budget gives more than one thread; results do not depend on it. Measured on the shared 2-core machine
  under load (load average 4-8), 2 threads did not beat 1 in wall time (62-69 s vs 54-67 s for 20
  evaluations on 20k rows); it pays only when cores are actually free.
Every LightGBM call gets an explicit ``num_threads`` (DESIGN section 9) and a seed.
"""

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from biodiv_core.errors import DataContractError
from biodiv_core.training.model import as_lgb_frame, train_params

# Rounds each fold trains between synchronisations when folds run in parallel threads; the stop decision
# is taken per reading on the recorded history, so this only bounds the few extra rounds trained (they are
# recorded too, and `rounds_trained` counts them).
_PARALLEL_CHUNK = 8


@dataclass(frozen=True)
class CVOutcome:
    auc: float  # mean validation AUC over folds at the best reading
    auc_std: float
    best_rounds: int  # 1-based number of rounds at the best mean AUC
    rounds_trained: int  # rounds each trained fold actually trained
    pruned: bool
    fold_aucs: tuple[float, ...] = ()  # AUC of each trained fold at the best reading
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


def eval_every(patience: int) -> int:
    """Rounds between two readings of the validation AUC: at least ten readings within the patience window."""
    return max(1, patience // 10)


@dataclass(frozen=True)
class Readings:
    """Where the validation AUC is read: after rounds ``every``, 2 ``every``, ... and after ``max_rounds``."""

    every: int
    max_rounds: int

    def __len__(self) -> int:
        return -(-self.max_rounds // self.every)

    def rounds(self, i: int) -> int:
        """Rounds trained at reading ``i`` (0-based)."""
        return min((i + 1) * self.every, self.max_rounds)

    def steps(self, start: int, count: int) -> list[int]:
        """Rounds to train before each of the readings ``start`` .. ``start + count - 1``."""
        return [self.rounds(i) - self.rounds(i - 1) for i in range(start, start + count)]  # rounds(-1) is 0


def _train_chunk(booster, steps: list[int]) -> np.ndarray:
    out = np.empty(len(steps))
    for j, rounds in enumerate(steps):
        for _ in range(rounds):
            booster.update()
        out[j] = booster.eval_valid()[0][2]
    return out


def _advance(boosters: list, steps: list[int], pool: ThreadPoolExecutor | None) -> list[np.ndarray]:
    if pool is None:
        return [_train_chunk(b, steps) for b in boosters]
    return list(pool.map(_train_chunk, boosters, [steps] * len(boosters)))


def rung_folds(n_folds: int) -> int:
    """Folds a trial trains first, before it may claim the others: half of them, from 4 folds up."""
    return n_folds // 2 if n_folds >= 4 else n_folds


def _train_until(
    boosters: list,
    history: list[np.ndarray],
    readings: Readings,
    patience: int,
    target: float | None,
    chunk: int,
    pool,
) -> tuple[int, str | None]:
    """Grow ``history`` (per reading: AUC of each booster's fold) until the mean curve stops improving for
    ``patience`` rounds ("stopped"), cannot reach ``target`` ("pruned") or the last reading; readings
    already in ``history`` are judged first. Returns (index of the best reading, why it stopped or None)."""
    best_mean, best = -np.inf, 0
    back = -(-patience // readings.every)  # readings at least ``patience`` rounds back

    def judge(i: int) -> str | None:
        nonlocal best_mean, best
        mean, rounds = float(history[i].mean()), readings.rounds(i)
        if mean > best_mean:
            best_mean, best = mean, i
        if rounds - readings.rounds(best) >= patience:
            return "stopped"
        if target is not None and i >= back:
            # Linear extrapolation of the recent gain over-estimates a flattening curve.
            gain = mean - float(history[i - back].mean())
            slope = max(0.0, gain / (rounds - readings.rounds(i - back)))
            if best_mean + slope * (readings.max_rounds - rounds) < target:
                return "pruned"
        return None

    for i in range(len(history)):
        if reason := judge(i):
            return best, reason
    while len(history) < len(readings):
        start = len(history)
        results = _advance(boosters, readings.steps(start, min(chunk, len(readings) - start)), pool)
        # Every reading the boosters trained goes into the history, also those after a stop inside the chunk: a
        # first rung's folds are then exactly as far as their history says, and the promoted folds catch up to
        # the same round (else later readings mixed AUCs of different rounds and threads changed results).
        history.extend(np.array([r[j] for r in results]) for j in range(len(results[0])))
        for i in range(start, len(history)):
            if reason := judge(i):
                return best, reason
    return best, None


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
    every: int | None = None,
) -> CVOutcome:
    """Mean validation AUC of ``params`` over the folds, with early stopping on the mean curve.

    With ``prune`` and the incumbent's per-fold AUCs (``incumbent_folds``, at its best round), the trial
    first trains only the first `rung_folds` folds: when its best mean there stays below the incumbent's
    mean on the same folds, it stops (``pruned``, ``folds_trained`` < the folds) and its AUC is the paired
    estimate incumbent + (its rung mean - the incumbent's rung mean), always below the incumbent; else the
    other folds catch up to the same round and all train on (successive halving over folds).
    ``oof_if_leading``: when the trial beats ``incumbent`` (or there is none), also return its out-of-fold
    probabilities at the best round (on call, see `CVOutcome.oof`), so the caller's quality numbers need no
    refits of the same folds. ``every``: rounds between readings of the validation AUC (default
    `eval_every` of the patience); the best round is one of the readings.
    """
    import lightgbm as lgb

    workers = max(1, min(num_threads, len(data)))
    lgb_threads = max(1, num_threads // workers)
    fold_params = train_params({**params, "metric": "auc"}, lgb_threads)
    if patience is None:
        patience = default_patience(fold_params.get("learning_rate", 0.1))
    every = eval_every(patience) if every is None else every
    if patience < 1 or every < 1 or max_rounds < 1:
        raise ValueError(f"patience={patience}, every={every} and max_rounds={max_rounds} must all be >= 1.")
    readings = Readings(every, max_rounds)

    def fold_booster(train_set, valid_set):
        booster = lgb.Booster(fold_params, train_set)
        booster.add_valid(valid_set, "valid")
        return booster

    target = incumbent if prune else None
    rung = rung_folds(len(data)) if prune and incumbent is not None and incumbent_folds is not None else len(data)
    boosters = [fold_booster(*fold) for fold in data.folds[:rung]]  # the other folds' only if promoted
    chunk = 1 if workers == 1 else max(1, _PARALLEL_CHUNK // readings.every)  # in readings
    pool = ThreadPoolExecutor(workers, initializer=_quiet_thread) if workers > 1 else None
    history: list[np.ndarray] = []  # per reading: AUC of each fold trained so far
    try:
        if rung < len(data):
            rung_target = float(np.mean(incumbent_folds[:rung]))
            best, _ = _train_until(boosters[:rung], history, readings, patience, rung_target, chunk, pool)
            rung_best = float(history[best].mean())
            if rung_best < rung_target:
                return CVOutcome(
                    auc=float(incumbent) + rung_best - rung_target,
                    auc_std=float(history[best].std()),
                    best_rounds=readings.rounds(best),
                    rounds_trained=readings.rounds(len(history) - 1),
                    pruned=True,
                    fold_aucs=tuple(float(v) for v in history[best]),
                    folds_trained=rung,
                )
            boosters += [fold_booster(*fold) for fold in data.folds[rung:]]
            caught_up = _advance(boosters[rung:], readings.steps(0, len(history)), pool)
            history[:] = [np.concatenate([row, [r[i] for r in caught_up]]) for i, row in enumerate(history)]
        best, reason = _train_until(boosters, history, readings, patience, target, chunk, pool)
        leading = incumbent is None or float(history[best].mean()) > incumbent
        oof = partial(_out_of_fold, boosters, data, readings.rounds(best)) if oof_if_leading and leading else None
    finally:
        if pool is not None:
            pool.shutdown()
        for booster in boosters:
            booster.free_dataset()
    fold_aucs = history[best]
    return CVOutcome(
        auc=float(fold_aucs.mean()),
        auc_std=float(fold_aucs.std()),
        best_rounds=readings.rounds(best),
        rounds_trained=readings.rounds(len(history) - 1),
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
