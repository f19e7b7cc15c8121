"""`biodiv batch-score`: score a table of features with a partition's deployed model, as its batch endpoint would."""

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch-score",
        help="Score features with the deployed model of a site x species partition.",
        description="Score a CSV/parquet of features (gbifid + feature columns) with the version deployed for "
        "SITE x SPECIES (registry alias 'deployed') and write gbifid, probability, predicted_class.",
    )
    parser.add_argument("--site", required=True, help="site name, e.g. yellowstone")
    parser.add_argument("--species", required=True, help='species name, e.g. "Cygnus buccinator"')
    parser.add_argument("--input", required=True, help="features: a .csv/.parquet file or a folder of them")
    parser.add_argument("--output", required=True, help="predictions file to write (.csv or .parquet)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability cut for predicted_class (default: the model's or 0.5)",
    )
    parser.add_argument(
        "--on-endpoint",
        action="store_true",
        help="azureml: run the partition's batch endpoint on --input (a folder) instead of scoring here; "
        "reports the files (mini-batches) the job could not score",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(handler=batch_score)


def batch_score(args: argparse.Namespace) -> int:
    from biodiv_core import naming
    from biodiv_core.errors import NotFoundError
    from biodiv_core.serving.batch_scoring import score_file
    from biodiv_dagster.backends import deployment_backend_from_env

    backend = deployment_backend_from_env()
    name = naming.model_name(args.site, args.species)
    deployed = _registry_call(lambda: backend.deployed_version(name))
    if deployed is None:
        raise NotFoundError(
            f"No version of model {name!r} is deployed: train and deploy it first, e.g. "
            f'`biodiv run --site {args.site} --species "{args.species}"`.'
        )
    if args.on_endpoint:
        return _score_on_endpoint(args, backend, name, deployed.version)
    location = _registry_call(lambda: backend.model_location(name, deployed.version))
    summary = score_file(location, args.input, args.output, args.threshold)
    endpoint = backend.endpoint_name(args.site, args.species)
    summary.update(model_name=name, version=deployed.version, endpoint=endpoint)
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"scored {summary['rows']} rows with {name} v{deployed.version} "
            f"({summary['predicted_present']} predicted PRESENT at threshold {summary['threshold']}) -> {args.output}"
        )
    return 0


def _score_on_endpoint(args: argparse.Namespace, backend, name: str, version: str) -> int:
    """The batch job's own answer: predictions copied to --output, every failed file named (exit 2 if it failed)."""
    import sys

    from biodiv_core.errors import ConfigError, DataContractError

    invoke = getattr(backend, "invoke_endpoint", None)
    if invoke is None:
        raise ConfigError("--on-endpoint needs the azureml deployment backend (BIODIV_DEPLOYMENT_BACKEND=azureml).")
    endpoint = backend.endpoint_name(args.site, args.species)
    report = invoke(endpoint, args.input, args.output)
    summary = {**report.summary(), "model_name": name, "version": version, "endpoint": endpoint}
    problem = report.failure_line()
    if report.status != "Completed":
        raise DataContractError(problem)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"batch job {report.job_name} on {endpoint} ({name} v{version}) Completed -> {args.output}")
    if problem:  # within the deployment's error_threshold, but never silent
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _registry_call(call):
    """A registry that cannot be read (a truncated MLflow database, a server down) is one ConfigError line."""
    from biodiv_core.errors import BiodivError, ConfigError
    from biodiv_core.settings import mlflow_tracking_uri

    try:
        return call()
    except BiodivError:
        raise
    except Exception as exc:  # the store's own error types vary by backend (SQLAlchemy, HTTP, Azure)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(
            f"The model registry cannot be read ({first}; MLflow store {mlflow_tracking_uri()}): check "
            "MLFLOW_TRACKING_URI or restore the store, then retry."
        ) from exc
