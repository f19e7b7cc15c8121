"""`biodiv sync | run | main`: the Dagster platform from the command line, no daemon needed.

(`biodiv ui` lives in cli/ui.py, `biodiv batch-score` in cli/deploy.py: each registered in cli/__init__.py.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time


def register(subparsers) -> None:
    sync = subparsers.add_parser(
        "sync",
        help="Add site x species partitions from config/*.csv and the data store (never deletes).",
        description="Add a partition for every site of config/sites.csv with features in the data store, crossed "
        "with every species of config/candidate_species.csv with gold data there; print what was skipped and why.",
    )
    _data_root_option(sync)
    sync.set_defaults(handler=cmd_sync)

    run = subparsers.add_parser(
        "run",
        help="Train, score, register and deploy one site x species partition through Dagster.",
        description="Materialize prepared_data -> best_parameters/train_test_split -> scores -> deployable_model "
        "for SITE x SPECIES through Dagster (same definitions and step launcher as the UI), then register the "
        "model, deploy it if it passes the quality gate and make its habitat map. No daemon needed. "
        'Example: biodiv run --site yellowstone --species "Lynx canadensis" --json',
    )
    run.add_argument("--site", required=True, help="site name, e.g. yellowstone")
    run.add_argument("--species", required=True, help='species name, e.g. "Cygnus buccinator"')
    _data_root_option(run)
    _training_options(run)
    run.add_argument("--json", action="store_true", help="print one JSON object with the outcome (default: a line)")
    _verbose_option(run)
    run.set_defaults(handler=cmd_run)

    main = subparsers.add_parser(
        "main",
        help="The main job: sample data if none, sync, train+deploy every partition, print a table (`make run`).",
        description="Generate sample data into BIODIV_HOME/data when BIODIV_DATA_ROOT is unset and it is empty, add "
        "the partitions of config/*.csv, train every partition through Dagster (--parallel at a time), register, "
        "deploy past the quality gate and map each deployed model, then print a table. Example: biodiv main "
        "--max-evals 10",
    )
    _training_options(main)
    main.add_argument(
        "--rows",
        type=int,
        default=4000,
        help="points per site of generated sample data, when there is none (default 4000)",
    )
    main.add_argument("--parallel", type=int, default=2, help="partitions trained at once (default 2)")
    _verbose_option(main)
    main.set_defaults(handler=cmd_main)


def _verbose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also print Dagster's warnings and errors, step warnings and stack traces (all are in the Dagster "
        "event log either way)",
    )


def _step_output(verbose: bool) -> bool:
    """A failure is the CLI's one `error:` line: steps print their error line and tracebacks only with --verbose,
    and in-process runs print Dagster's events only then. Returns whether in-process runs stay quiet."""
    _quiet_terminal()
    if not verbose:
        os.environ.setdefault("BIODIV_STEP_QUIET_ERRORS", "1")  # azureml_steps._cli.QUIET_ERRORS_ENV
    return not verbose


def _data_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, help="data store root (default: $BIODIV_DATA_ROOT or sample data)")


def _training_options(parser: argparse.ArgumentParser) -> None:
    """One flag per run setting (biodiv_core.run_settings): unset flags keep config/run.yml / BIODIV_<KEY>."""
    from biodiv_core.errors import BiodivError
    from biodiv_core.run_settings import env_var, load_run_settings, setting_fields, setting_types, value_type

    types = setting_types()
    try:
        current = load_run_settings().as_dict()  # what an unset flag means now, shown in --help
    except BiodivError:
        current = {}  # a broken run.yml is reported when a command runs, not by --help
    for f in setting_fields():
        parser.add_argument(
            f.metadata.get("flag") or "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=value_type(types[f.name]),
            default=None,
            choices=f.metadata.get("choices"),
            help=f"{f.metadata['help']} (default: {current.get(f.name, '?')}, from config/run.yml or env "
            f"{env_var(f.name)})",
        )


def _settings(args: argparse.Namespace) -> dict:
    from biodiv_core.run_settings import setting_fields

    return {f.name: getattr(args, f.name) for f in setting_fields()}


def lone_run_threads(instance, settings: dict) -> dict:
    """``settings`` with the LightGBM threads of one `biodiv run`: when they are automatic (0), the cores divided
    by the runs actually in progress (this one and those the instance shows), not by the configured maximum of
    concurrent runs, which is for the daemon's queue. Alone on 2 cores, a run's steps get both."""
    import dagster as dg

    from biodiv_core.run_settings import load_run_settings

    resolved = load_run_settings(settings)
    if resolved.num_threads:  # set by a flag, config/run.yml or BIODIV_NUM_THREADS: kept as it is
        return settings
    in_progress = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
    running = len(instance.get_run_ids(filters=dg.RunsFilter(statuses=list(in_progress))))
    return {**settings, "num_threads": resolved.threads(concurrent_runs=running + 1)}


def _quiet_terminal() -> None:
    """Warnings, errors and progress lines on the terminal; the full INFO log stays in each Dagster run's log."""
    os.environ.setdefault("BIODIV_STEP_LOG_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no "Creating initial MLflow database tables"


def _use_data_root(value: str | None) -> None:
    # Steps and sync read BIODIV_DATA_ROOT through biodiv_core.settings; set it for this process and its steps.
    if value:
        from pathlib import Path

        os.environ["BIODIV_DATA_ROOT"] = str(Path(value).expanduser().resolve())


def cmd_sync(args: argparse.Namespace) -> int:
    from biodiv_dagster.training.sync import sync_partitions

    _use_data_root(args.data_root)
    result = sync_partitions(open_instance())
    print(
        f"sites:   {', '.join(result.plan.sites.values()) or 'none'} (new: {', '.join(result.added_sites) or 'none'})"
    )
    print(
        f"species: {', '.join(result.plan.species.values()) or 'none'} "
        f"(new: {', '.join(result.added_species) or 'none'})"
    )
    for reason in result.plan.skipped:
        print(f"skipped {reason}")
    return 0


def open_instance():
    """The instance, after failing the runs a killed `biodiv run`/`main` left STARTED (training/orphans.py)."""
    from biodiv_dagster.instance import get_instance
    from biodiv_dagster.training.orphans import fail_orphaned_runs

    instance = get_instance()
    for run_id in fail_orphaned_runs(instance):
        print(f"marked run {run_id} FAILED: the process that ran it was killed", file=sys.stderr)
    return instance


def cmd_run(args: argparse.Namespace) -> int:
    from biodiv_dagster.training.preflight import preflight
    from biodiv_dagster.training.runner import check_inputs, import_in_background, run_partition

    _use_data_root(args.data_root)
    check_inputs(args.site, args.species)  # names and data first: the cheapest checks, and the likeliest mistakes
    from biodiv_dagster.launcher import warm

    warm.start()  # a cold step server imports while preflight and the instance get ready, not while prep waits
    quiet = _step_output(args.verbose)
    preflight()  # may import LightGBM (a changed lgbm_params.yml) or MLflow (a store other than SQLite) itself
    import_in_background()  # from here on the process mostly waits for the steps
    # With --json, stdout carries exactly one JSON object: anything else (steps, libraries) goes to stderr.
    with _stdout_to_stderr(args.json):
        instance = open_instance()
        outcome = run_partition(
            instance,
            args.site,
            args.species,
            quiet=quiet,
            **lone_run_threads(instance, _settings(args)),
        )
    summary = outcome.summary
    if args.json:
        print(json.dumps(summary, default=str), flush=True)
    else:
        print(
            f"{outcome.partition}: {summary['rows']} rows, ROC-AUC {summary['roc_auc']:.4f}, "
            f"accuracy {summary['accuracy']:.4f}, registered v{summary['registered_version']}, "
            f"{'deployed' if summary['deployed'] else 'not deployed'} to {summary['endpoint']} "
            f"(correlation id {summary['correlation_id']})"
        )
    return 0


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool):
    """Point file descriptor 1 (and sys.stdout) at stderr, for this process and the steps it starts."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def ensure_sample_data(rows: int) -> str | None:
    """Generate sample data into settings.data_root() when BIODIV_DATA_ROOT is unset and the store is empty."""
    from biodiv_core import settings
    from biodiv_core.data import datastore
    from biodiv_core.data.generate import generate_datastore
    from biodiv_dagster.training.sync import read_name_column

    if os.environ.get("BIODIV_DATA_ROOT"):
        return None
    root = settings.data_root()
    if datastore.list_assets(root):
        return None
    sites = read_name_column(settings.config_dir() / "sites.csv", "site")
    species = read_name_column(settings.config_dir() / "candidate_species.csv", "species")
    generate_datastore(root, sites=sites, species=species, rows=rows, seed=0)
    return str(root)


def cmd_main(args: argparse.Namespace) -> int:
    from biodiv_core import settings
    from biodiv_dagster.partitions import partition_key
    from biodiv_dagster.training.preflight import preflight
    from biodiv_dagster.training.runner import (
        latest_storage_id,
        map_new_deployments,
        partition_summary,
        register_new_models,
    )
    from biodiv_dagster.training.sync import sync_partitions

    quiet = _step_output(args.verbose)
    started = time.monotonic()
    preflight()
    generated = ensure_sample_data(args.rows)
    if generated:
        print(f"generated sample data in {generated}")
    instance = open_instance()
    synced = sync_partitions(instance)
    for reason in synced.plan.skipped:
        print(f"skipped {reason}")
    pairs = [
        (site_slug, site, species_slug, species)
        for site_slug, site in synced.plan.sites.items()
        for species_slug, species in synced.plan.species.items()
    ]
    if not pairs:
        print("error: no partition to train: check config/sites.csv, config/candidate_species.csv and the data store")
        return 2
    before = latest_storage_id(instance, "deployable_model")
    before_deployment = latest_storage_id(instance, "batch_deployment")
    options = _settings(args)
    failures = _train_all([(site, species) for _, site, _, species in pairs], options, args.parallel, quiet)
    keys = {str(partition_key(a, b)) for a, _, b, _ in pairs}
    print("registering, deploying and mapping the new models ...", flush=True)
    register_new_models(instance, before, partitions=keys, quiet=quiet)
    map_new_deployments(instance, before_deployment, partitions=keys, quiet=quiet)

    rows = [partition_summary(instance, str(partition_key(a, b))) for a, _, b, _ in pairs]
    print()
    print(_table(rows))
    print()
    print(f"Dagster state:  {instance.root_directory}  (open it with `make ui`)")
    local_ui = " with `make ui`" if settings.mlflow_tracking_uri().startswith("sqlite:") else ""
    print(f"MLflow store:   {settings.mlflow_tracking_uri()}  (UI: {settings.mlflow_ui_url()}{local_ui})")
    print(f"Step outputs:   {settings.storage_root()}")
    print(f"Endpoints:      {settings.endpoints_dir()}")
    print(f"Data store:     {settings.data_root()}")
    print(f"Wall time:      {time.monotonic() - started:.0f}s")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def _train_all(pairs: list[tuple[str, str]], options: dict, parallel: int, quiet: bool = True) -> list[str]:
    """Train every (site, species) through Dagster, ``parallel`` partitions at a time; returns the failures.

    Each worker is its own process with its own in-process Dagster run on the shared instance (as
    `dagster dev` runs do, bounded like run_queue.max_concurrent_runs), so a 2-core machine trains two
    single-threaded partitions at once instead of one.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from biodiv_core.tracking import ensure_experiment
    from biodiv_dagster.training.runner import import_in_background

    ensure_experiment()  # create the MLflow store once, before workers race to migrate it
    import_in_background()  # after MLflow's import here; the workers are spawned: no import lock crosses into them
    failures = []
    print(f"training {len(pairs)} partitions through Dagster, {max(1, parallel)} at a time ...", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, parallel), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(_train_worker, site, species, options, quiet): (site, species) for site, species in pairs
        }
        for future in as_completed(futures):
            site, species = futures[future]
            error, seconds = future.result()
            if error:
                failures.append(f"{site} x {species}: {error}")
                print(f"  {site} x {species}: FAILED after {seconds:.0f}s: {error}", flush=True)
            else:
                print(f"  {site} x {species}: trained in {seconds:.0f}s", flush=True)
    return failures


def _train_worker(site: str, species: str, options: dict, quiet: bool = True) -> tuple[str | None, float]:
    from biodiv_dagster.instance import get_instance
    from biodiv_dagster.training.runner import train_partition

    started = time.monotonic()
    try:
        train_partition(get_instance(), site, species, quiet=quiet, **options)
    except Exception as exc:  # reported by the parent; one bad partition must not stop the others
        return f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc), time.monotonic() - started
    return None, time.monotonic() - started


def _table(rows: list[dict]) -> str:
    header = ["partition", "rows", "ROC-AUC", "deployed version", "endpoint"]
    body = [
        [
            r["partition"],
            str(r["rows"] if r["rows"] is not None else "-"),
            f"{r['roc_auc']:.4f}" if isinstance(r["roc_auc"], int | float) else "-",
            str(r["deployed_version"] or "-"),
            str(r["endpoint"] or "-"),
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
