"""Stage `train_to_deploy`: fit on all prepared data, save the MLflow model folder and model_metadata.json.

The decision threshold (TSS-maximising, chosen on the training folds) travels in model_metadata.json and
in the MLmodel metadata, where batch scoring reads it.
"""

import logging
from pathlib import Path

from biodiv_core import tracking
from biodiv_core.atomic import output_dir
from biodiv_core.data.prep import load_prepared
from biodiv_core.evaluation.quality import read_threshold
from biodiv_core.naming import model_name
from biodiv_core.serving import mlflow_model
from biodiv_core.stages.common import read_best_parameters, step_summary
from biodiv_core.step_args import DeployArgs
from biodiv_core.training.model import fit_model

logger = logging.getLogger(__name__)


def run_train_to_deploy(args: DeployArgs) -> dict:
    params = read_best_parameters(args.best_parameters)
    threshold = read_threshold(args.best_parameters)
    data = load_prepared(Path(args.prepared))
    registry_name = model_name(args.site, args.species)
    with tracking.step_run(args) as run:
        tracking.log_params(params)
        booster = fit_model(data.features, data.targets, params, args.num_threads)
        run_id = run.info.run_id
        with output_dir(args.output) as tmp:
            model_dir = mlflow_model.save_model(
                booster,
                tmp,
                sample=data.features,
                threshold=threshold,
                metadata={"registry_name": registry_name, **args.context()},
            )
            tracking.log_artifacts(model_dir, artifact_path=mlflow_model.MODEL_DIR_NAME)
            metadata = mlflow_model.write_metadata(
                tmp,
                run_id,
                registry_name=registry_name,
                features=list(booster.feature_name()),
                threshold=threshold,
                num_boost_round=params["num_boost_round"],
                rows=len(data.features),
                **args.context(),
            )
    model_path = Path(args.output) / mlflow_model.MODEL_DIR_NAME
    logger.info("train_to_deploy: model on %d rows saved to %s (run %s)", len(data.features), model_path, run_id)
    return step_summary(
        args,
        run_id,
        mlflow_experiment_id=run.info.experiment_id,
        model_uri=str(model_path),
        model_path=str(model_path),
        model_name=metadata["model_name"],
        registry_name=registry_name,
        mlflow_run_uri=metadata["run_uri"],
        rows=len(data.features),
        threshold=threshold,
    )
