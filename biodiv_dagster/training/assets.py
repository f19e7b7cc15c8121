"""Training assets per site x species partition, each materialized by a step through the step launcher.

prepared_data -> best_parameters + train_test_split (one train step) -> scores
             \\-> deployable_model (prepared data + best parameters, as the seed's train_to_deploy)

An asset finds its inputs in the *metadata* (``path``) of the upstream materialization of the same
partition, never by recomputing paths: the launcher decides where outputs live (local folder or
AzureML datastore URI), and a reader never sees a half-written folder.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from biodiv_core import settings
from biodiv_core.errors import BiodivError, NotFoundError
from biodiv_core.naming import covariates_asset_name, features_asset_name, species_asset_name
from biodiv_core.step_args import DeployArgs, PrepArgs, ScoreArgs, StepArgs, TrainArgs
from biodiv_dagster import mlflow_links
from biodiv_dagster.correlation import correlation_id
from biodiv_dagster.data_versions import data_version_string
from biodiv_dagster.launcher.base import StepLauncher, with_metadata
from biodiv_dagster.launcher.spec import StepSpec
from biodiv_dagster.partitions import site_species_partitions, split_partition_key
from biodiv_dagster.retraction import usable_records
from biodiv_dagster.retry import STEP_RETRY_POLICY
from biodiv_dagster.training.config import TrainingConfig
from biodiv_dagster.training.sync import resolve_names

GROUP = "biodiv"
OWNERS = ["team:biodiv"]
PARAMS_CONFIG_FILE = "lgbm_params.yml"
# What every training asset shares: partitioned by site x species, retried on transient errors, grouped.
STEP_ASSET: dict[str, Any] = dict(
    partitions_def=site_species_partitions, retry_policy=STEP_RETRY_POLICY, group_name=GROUP, owners=OWNERS
)


# --- helpers -----------------------------------------------------------------------------------


def partition_names(context: dg.AssetExecutionContext) -> tuple[str, str, str, str]:
    """(site slug, species slug, site name, species name) of the partition being materialized."""
    site_slug, species_slug = split_partition_key(context.partition_key)
    site, species = resolve_names(site_slug, species_slug)
    return site_slug, species_slug, site, species


def upstream_metadata(context: dg.AssetExecutionContext, asset: str) -> Mapping[str, dg.MetadataValue]:
    """Metadata of the latest materialization of ``asset`` for this partition; Failure if there is none."""
    records = usable_records(
        context.instance,
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(context.partition_key)]),
        limit=1,
    )
    if not records or records[0].asset_materialization is None:
        raise dg.Failure(
            description=f"{asset} has not been materialized for partition {context.partition_key}: "
            f"materialize {asset} for this partition first (or select it in the same run).",
            allow_retries=False,
        )
    return records[0].asset_materialization.metadata


def upstream_path(context: dg.AssetExecutionContext, asset: str) -> str:
    metadata = upstream_metadata(context, asset)
    if "path" not in metadata:
        raise dg.Failure(description=f"The latest {asset} materialization of {context.partition_key} has no 'path'.")
    return str(metadata["path"].value)


def _value(metadata: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = metadata.get(key)
    if value is None:
        return default
    return value.value if isinstance(value, dg.MetadataValue) else value


def _with(result: dg.MaterializeResult, extra: Mapping[str, Any], checks=(), data_version=None) -> dg.MaterializeResult:
    return with_metadata(result, {**(result.metadata or {}), **extra}, checks, data_version)


def _common(args: StepArgs) -> dict[str, Any]:
    return {
        **{key: dg.MetadataValue.text(value) for key, value in args.context().items()},
        "correlation_id": dg.MetadataValue.text(str(args.correlation_id)),
    }


def _mlflow_links(result: dg.MaterializeResult) -> dict[str, Any]:
    """The clickable ``mlflow_run`` link of the step's MLflow run (biodiv_dagster.mlflow_links)."""
    return mlflow_links.run_link(result.metadata or {})


def _launch(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    step_launcher: StepLauncher,
    args_type: type[StepArgs],
    **values: Any,
) -> tuple[StepArgs, list[dg.MaterializeResult]]:
    """Build the step's arguments (partition, run settings, upstream and output locations, ``values``); run it."""
    site_slug, species_slug, site, species = partition_names(context)
    inputs = {name: upstream_path(context, asset) for name, asset in args_type.upstream_assets().items()}
    outputs = {
        name: step_launcher.output_location(asset, site_slug, species_slug, context.run_id)
        for name, asset in args_type.asset_keys().items()
    }
    try:
        args = args_type.from_settings(
            config.settings(),
            site=site,
            species=species,
            partition=str(context.partition_key),
            correlation_id=correlation_id(context),
            dagster_run_id=context.run_id,
            **inputs,
            **outputs,
            **values,
        )
        return args, step_launcher.launch(context, StepSpec(args))
    except BiodivError as exc:  # bad config/data found before the step ran: no traceback in the UI
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def _covariates_input(step_launcher: StepLauncher, site_slug: str) -> tuple[str | None, int | None]:
    """(location, version) of the site's latest covariate rasters (where prep may draw a presence-only
    species' background or thin its presences), or (None, None)."""
    try:
        return step_launcher.data_input(covariates_asset_name(site_slug))
    except NotFoundError:
        return None, None


# --- assets ------------------------------------------------------------------------------------


@dg.asset(
    **STEP_ASSET,
    kinds={"python", "parquet"},
    description="Features and PRESENT/ABSENT targets of one species at one site, joined on gbifid (step `prep`).",
    check_specs=[
        dg.AssetCheckSpec(
            "enough_rows_per_class",
            asset="prepared_data",
            blocking=True,
            description="Each class has at least n_folds rows, so every CV fold sees both classes.",
        ),
        dg.AssetCheckSpec(
            "no_duplicate_ids", asset="prepared_data", blocking=True, description="No gbifid appears twice."
        ),
    ],
)
def prepared_data(
    context: dg.AssetExecutionContext, config: TrainingConfig, step_launcher: StepLauncher
) -> dg.MaterializeResult:
    site_slug = partition_names(context)[0]
    run = config.settings()
    n_folds = run.n_folds
    try:
        features, features_version = step_launcher.data_input(features_asset_name(site_slug), run.features_version)
        gold, species_version = step_launcher.data_input(species_asset_name(site_slug), run.species_version)
    except BiodivError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    covariates, covariates_version = _covariates_input(step_launcher, site_slug)
    versions = {features_asset_name(site_slug): features_version, species_asset_name(site_slug): species_version}
    # Too few rows of a class for the folds fails prep itself: no output, nothing downstream.
    args, [result] = _launch(
        context,
        config,
        step_launcher,
        PrepArgs,
        features=features,
        species_dir=gold,
        covariates=covariates,
        min_rows_per_class=n_folds,
    )
    metadata = result.metadata or {}
    n_present, n_absent = int(_value(metadata, "n_present", 0)), int(_value(metadata, "n_absent", 0))
    duplicates = int(_value(metadata, "duplicate_ids", 0))
    if covariates is not None and _value(metadata, "covariates_used", False):  # what the output depends on
        versions[covariates_asset_name(site_slug)] = covariates_version
    checks = [
        dg.AssetCheckResult(
            check_name="enough_rows_per_class",
            passed=min(n_present, n_absent) >= n_folds,
            metadata={"n_present": n_present, "n_absent": n_absent, "n_folds": n_folds},
            description=f"smallest class has {min(n_present, n_absent)} rows; {n_folds} folds need at least {n_folds}",
        ),
        dg.AssetCheckResult(
            check_name="no_duplicate_ids", passed=duplicates == 0, metadata={"duplicate_ids": duplicates}
        ),
    ]
    extra = {
        **_common(args),
        "input_data_versions": dg.MetadataValue.json(versions),
        "features_input": dg.MetadataValue.path(features),
        "species_input": dg.MetadataValue.path(gold),
    }
    return _with(result, extra, checks, data_version=dg.DataVersion(data_version_string(versions)))


@dg.multi_asset(
    name="best_parameters_and_split",
    partitions_def=site_species_partitions,
    retry_policy=STEP_RETRY_POLICY,
    specs=[
        dg.AssetSpec(
            "best_parameters",
            deps=["prepared_data"],
            group_name=GROUP,
            owners=OWNERS,
            kinds={"python", "lightgbm", "hyperopt"},
            description="LightGBM parameters with the best k-fold CV ROC-AUC (hyperopt TPE), and the trial history.",
        ),
        dg.AssetSpec(
            "train_test_split",
            deps=["prepared_data"],
            group_name=GROUP,
            owners=OWNERS,
            kinds={"python", "parquet"},
            description="Stratified, seeded train/test split of the prepared data (x/y train/test parquet).",
        ),
    ],
    can_subset=False,
)
def best_parameters_and_split(
    context: dg.AssetExecutionContext, config: TrainingConfig, step_launcher: StepLauncher
) -> Iterator[dg.MaterializeResult]:
    args, results = _launch(
        context,
        config,
        step_launcher,
        TrainArgs,
        params_config=str(settings.config_dir() / PARAMS_CONFIG_FILE),
    )
    run_settings = {
        key: dg.MetadataValue.int(getattr(args, key)) for key in ("max_evals", "n_folds", "seed", "num_threads")
    }
    for result in results:
        yield _with(result, {**_common(args), **run_settings, **_mlflow_links(result)})


@dg.asset(
    **STEP_ASSET,
    kinds={"python", "lightgbm", "mlflow"},
    deps=list(ScoreArgs.upstream_assets().values()),
    description="Held-out ROC-AUC, accuracy, per-class report and confusion matrix of the tuned model (step `score`).",
    check_specs=[
        dg.AssetCheckSpec(
            "roc_auc_above_floor",
            asset="scores",
            description="Held-out ROC-AUC is at least the configured floor (config/run.yml auc_floor).",
        )
    ],
)
def scores(
    context: dg.AssetExecutionContext, config: TrainingConfig, step_launcher: StepLauncher
) -> dg.MaterializeResult:
    args, [result] = _launch(context, config, step_launcher, ScoreArgs)
    roc_auc = _value(result.metadata or {}, "roc_auc")
    check = dg.AssetCheckResult(
        check_name="roc_auc_above_floor",
        passed=roc_auc is not None and float(roc_auc) >= config.auc_floor,
        metadata={"roc_auc": float(roc_auc) if roc_auc is not None else -1.0, "auc_floor": config.auc_floor},
        description=f"ROC-AUC {roc_auc} vs floor {config.auc_floor}",
    )
    return _with(result, {**_common(args), **_mlflow_links(result)}, [check])


@dg.asset(
    **STEP_ASSET,
    kinds={"python", "lightgbm", "mlflow"},
    deps=list(DeployArgs.upstream_assets().values()),
    description="MLflow model `lgbm_gbif_model` fit on all prepared data with the best parameters "
    "(step `train_to_deploy`); registered and deployed by the registration sensor.",
)
def deployable_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, step_launcher: StepLauncher
) -> dg.MaterializeResult:
    args, [result] = _launch(context, config, step_launcher, DeployArgs)
    extra = {**_common(args), **_mlflow_links(result)}
    model_path = _value(result.metadata or {}, "model_path")
    if model_path:
        # The step saw its own (maybe mounted) folder; the URI must name the canonical location.
        extra["model_uri"] = dg.MetadataValue.text(model_uri_of(str(model_path)))
    return _with(result, extra)


def model_uri_of(model_path: str) -> str:
    """MLflow-loadable URI of a model folder: ``file://`` for local paths, datastore URIs unchanged."""
    from pathlib import Path

    return model_path if "://" in model_path else Path(model_path).resolve().as_uri()


training_assets = [prepared_data, best_parameters_and_split, scores, deployable_model]
TRAINING_ASSET_KEYS = ("prepared_data", "best_parameters", "train_test_split", "scores", "deployable_model")
