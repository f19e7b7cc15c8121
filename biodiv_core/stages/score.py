"""Stage `score`: fit on the training part with the best parameters, evaluate on the held-out part.

Writes metrics.json with the seed's heatmaps and the ROC curve, then quality.json (threshold metrics, the
baseline, calibration) and explanations; one MLflow run tagged with the partition. Every cut-off metric
(accuracy, the per-class report, the confusion matrix, TSS, kappa, sensitivity, specificity) uses the
TSS-maximising threshold chosen on the training folds: the presence cut-off the deployed model applies.
"""

import json
import logging
from pathlib import Path

from biodiv_core import tracking
from biodiv_core.atomic import output_dir
from biodiv_core.evaluation import figures
from biodiv_core.evaluation.metrics import evaluate, flat_metrics, write_results
from biodiv_core.evaluation.outputs import QUALITY_FILE, ROC_CURVE_FILE
from biodiv_core.evaluation.plots import plot_roc_curve
from biodiv_core.evaluation.quality import held_out_quality, read_cv_quality, read_threshold
from biodiv_core.stages.common import read_best_parameters, read_split, step_summary
from biodiv_core.step_args import ScoreArgs
from biodiv_core.training.model import fit_model, predict_proba

logger = logging.getLogger(__name__)


def run_score(args: ScoreArgs) -> dict:
    params = read_best_parameters(args.best_parameters)
    x_train, x_test, y_train, y_test = read_split(args.split)
    with tracking.step_run(args) as run:
        tracking.log_params(params)
        booster = fit_model(x_train, y_train, params, args.num_threads)
        threshold = read_threshold(args.best_parameters)
        probability = predict_proba(booster, x_test)
        metrics = evaluate(y_test.to_numpy(), probability, threshold=threshold)
        tracking.log_metrics(flat_metrics(metrics))
        with output_dir(args.output) as tmp:
            # With two or more threads, forked workers draw the figures while this process computes the rest.
            with figures.written_beside(args.num_threads):
                paths = write_results(metrics, tmp)
                plot_roc_curve(y_test.to_numpy(), probability, threshold, tmp / ROC_CURVE_FILE)
                quality = held_out_quality(
                    booster,
                    x_train,
                    y_train,
                    x_test,
                    y_test,
                    tmp,
                    threshold=threshold,
                    cv=read_cv_quality(args.best_parameters),
                    num_threads=args.num_threads,
                )
            (tmp / QUALITY_FILE).write_text(json.dumps(quality, indent=2) + "\n")
            tracking.log_metrics({k: v for k, v in quality.items() if isinstance(v, float)})
            tracking.log_artifacts(tmp, artifact_path="scores")
        run_id = run.info.run_id
    logger.info(
        "score: ROC-AUC %.4f, accuracy %.4f at cut-off %.3g on %d test rows -> %s",
        metrics["roc_auc"],
        metrics["accuracy"],
        threshold,
        len(y_test),
        args.output,
    )
    final = Path(args.output)
    return step_summary(
        args,
        run_id,
        mlflow_experiment_id=run.info.experiment_id,
        roc_auc=metrics["roc_auc"],
        accuracy=metrics["accuracy"],
        metrics=metrics,
        confusion_matrix=str(final / paths["confusion_matrix"].name),
        classification_report=str(final / paths["classification_report"].name),
        metrics_path=str(final / paths["metrics"].name),
        **{k: v for k, v in quality.items() if k not in ("images", "calibration")},
        images={name: str(final / relative) for name, relative in quality["images"].items()},
        test_rows=len(y_test),
    )
