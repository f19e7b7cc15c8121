"""Stage `train`: split the prepared data, tune LightGBM on the training part (hyperopt TPE over k-fold CV).

Writes best_parameters.json, trials.json and cv_quality.json (random vs spatial CV AUC, the TSS threshold)
into the best-parameters folder and x/y train/test parquet files into the split folder, both all-or-nothing
(`atomic.output_dir`);
one MLflow run tagged with the partition and the correlation id.
"""

import json
import logging
from pathlib import Path

from biodiv_core import tracking
from biodiv_core.atomic import output_dir
from biodiv_core.data.prep import load_prepared
from biodiv_core.data.split import split_train_test
from biodiv_core.evaluation.outputs import TUNING_HISTORY_FILE
from biodiv_core.evaluation.plots import plot_tuning_history
from biodiv_core.evaluation.quality import PREP_KEYS, cv_quality, training_folds, write_cv_quality
from biodiv_core.stages.common import (
    BEST_PARAMETERS_FILE,
    SPLIT_FILES,
    TARGET_COLUMN,
    TRIALS_FILE,
    step_summary,
    write_frame,
)
from biodiv_core.step_args import TrainArgs
from biodiv_core.training.lightgbm_check import check_with_lightgbm
from biodiv_core.training.params import load_params
from biodiv_core.training.progress import tuning_progress
from biodiv_core.training.tuning import tune

logger = logging.getLogger(__name__)
TEST_SIZE = 0.2


def _each(*callbacks):
    def call(record: dict) -> None:
        for callback in callbacks:
            callback(record)

    return call


def run_train(args: TrainArgs) -> dict:
    """Split (stratified, seeded) and tune; ``args.cv_strategy`` picks the tuning folds."""
    config = load_params(args.params_config)  # fail on a bad config before reading data
    check_with_lightgbm(config)
    data = load_prepared(Path(args.prepared))
    split = split_train_test(data.features, data.targets, test_size=TEST_SIZE, seed=args.seed)
    logger.info(
        "train %s: %d train / %d test rows, %d folds, %d evaluations, %d threads",
        args.partition,
        len(split.x_train),
        len(split.x_test),
        args.n_folds,
        args.max_evals,
        args.num_threads,
    )
    with tracking.step_run(args) as run:
        tracking.log_params(
            {k: getattr(args, k) for k in ("n_folds", "max_evals", "seed", "num_threads", "cv_strategy")}
            | {"block_size_km": args.block_size_km, "train_rows": len(split.x_train), "test_rows": len(split.x_test)}
        )
        folds = None
        if args.cv_strategy != "random":
            folds = training_folds(
                split.x_train, split.y_train, data.coords, args.cv_strategy, args.n_folds, args.block_size_km, args.seed
            )
        result = tune(
            split.x_train,
            split.y_train,
            config,
            n_folds=args.n_folds,
            max_evals=args.max_evals,
            seed=args.seed,
            num_threads=args.num_threads,
            on_trial=_each(tracking.log_trial, tuning_progress(f"tuning {args.partition}", args.max_evals)),
            folds=folds,
        )
        tracking.log_params(result.best_params, prefix="best_")
        tracking.log_metrics({"best_cv_auc": result.best_cv_auc})
        quality = cv_quality(
            split.x_train,
            split.y_train,
            data.coords,
            result.best_params,
            cv_strategy=args.cv_strategy,
            n_folds=args.n_folds,
            block_size_km=args.block_size_km,
            seed=args.seed,
            num_threads=args.num_threads,
            tuned_oof=result.oof,
        )
        quality |= {key: data.stats.get(key) for key in PREP_KEYS}
        tracking.log_metrics({k: v for k, v in quality.items() if isinstance(v, float)})
        with output_dir(args.best_parameters) as best_tmp, output_dir(args.split) as split_tmp:
            (best_tmp / BEST_PARAMETERS_FILE).write_text(json.dumps(result.best_params, indent=2) + "\n")
            (best_tmp / TRIALS_FILE).write_text(json.dumps(result.trials, indent=2) + "\n")
            write_cv_quality(best_tmp, quality)
            plot_tuning_history(result.trials, best_tmp / TUNING_HISTORY_FILE)
            frames = (
                split.x_train,
                split.x_test,
                split.y_train.to_frame(TARGET_COLUMN),
                split.y_test.to_frame(TARGET_COLUMN),
            )
            for name, frame in zip(SPLIT_FILES, frames, strict=True):
                write_frame(frame, split_tmp / name)
            tracking.log_artifact(best_tmp / BEST_PARAMETERS_FILE)
            tracking.log_artifact(best_tmp / TRIALS_FILE)
            tracking.log_artifact(best_tmp / TUNING_HISTORY_FILE)
        run_id = run.info.run_id
    logger.info(
        "train: best CV AUC %.4f after %d trials -> %s", result.best_cv_auc, len(result.trials), args.best_parameters
    )
    return step_summary(
        args,
        run_id,
        mlflow_experiment_id=run.info.experiment_id,
        best_parameters=result.best_params,
        best_cv_auc=result.best_cv_auc,
        trials=[{"trial": t["trial"], "loss": t["loss"], "auc": t["auc"]} for t in result.trials],
        train_rows=len(split.x_train),
        test_rows=len(split.x_test),
        n_folds=args.n_folds,
        max_evals=args.max_evals,
        seed=args.seed,
        num_threads=args.num_threads,
        cv_quality=quality,
        **{k: quality.get(k) for k in ("cv_strategy", "threshold", "roc_auc_random_cv", "roc_auc_spatial_cv")},
        best_parameters_path=str(args.best_parameters),
        split_path=str(args.split),
    )
