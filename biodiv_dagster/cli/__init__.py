"""The `biodiv` console script.

One module per command group registers its subcommands; imports of heavy libraries happen inside
the command functions so `biodiv --help` stays instant.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from biodiv_core.errors import BiodivError

DESCRIPTION = """\
biodiv trains one species-distribution model per site x species (LightGBM tuned with hyperopt), scores it,
registers it in MLflow and deploys it to a batch endpoint, as partitioned Dagster assets. Everything runs
on the local state under BIODIV_HOME (default .biodiv/) unless AzureML is configured."""

EPILOG = """\
examples:
  biodiv main                                   sample data, train + deploy every partition (make run)
  biodiv ui                                     Dagster UI on :3000, MLflow UI on :5000 (make ui)
  biodiv run --site yellowstone --species "Lynx canadensis" --json
  biodiv batch-score --site yellowstone --species "Lynx canadensis" \\
      --input .biodiv/data/yellowstone-training-features/1 --output predictions.csv

`biodiv COMMAND --help` lists a command's options and their defaults."""

# Modules that define `register(subparsers)`; each adds its own subcommands.
_COMMAND_MODULES = ("data", "platform", "ui", "azureml", "deploy")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="biodiv",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"biodiv_dagster.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"biodiv_dagster.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


# Commands that run Dagster, MLflow and the map in this process: the console script hands them to a fork of the
# warm `run` server (biodiv_dagster/launcher/warm.py), which has those libraries imported, instead of importing
# them itself (3-4 s of `biodiv run`'s wall on 2 cores). The fork gets this process's argv, environment, working
# folder and stdio; its exit code and death by signal are this process's; Ctrl-C reaches it.
WARM_COMMANDS = ("run", "main")
FORKED_ENV = "BIODIV_CLI_FORKED"  # set in the fork (and a cold re-exec): do not hand off again


def _in_warm_fork(argv: Sequence[str]) -> int | None:
    """The exit code of ``argv`` run in a warm fork, or None to run it here (no server up, or not worth one).

    A server still importing is not waited for: this run goes the plain way and the next one is warm. The
    server is started when this process exits, so it imports while nobody waits for it.
    """
    if not argv or argv[0] not in WARM_COMMANDS or os.environ.get(FORKED_ENV):
        return None
    from biodiv_dagster.launcher import warm

    path = warm.ready("run")
    if path is None:
        if warm.enabled():
            import atexit

            atexit.register(warm.start, "run")
        return None
    from azureml_steps import _warm

    os.environ[FORKED_ENV] = "1"
    return _warm.run(path, "biodiv_dagster.cli", list(argv), wait=0.0)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the console script; calls from Python (tests, benchmarks) run in their own process
        code = _in_warm_fork(sys.argv[1:])
        if code is not None:
            return code
    args = build_parser().parse_args(argv)
    try:
        code = int(args.handler(args) or 0)
    except BiodivError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    if argv is None and args.command in WARM_COMMANDS:
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> None:
    """End `biodiv run`/`main` as their warm fork ends (azureml_steps._exit), after what an interpreter's
    exit does first: threads joined, atexit handlers run. The teardown skipped frees every module and object of
    Dagster, MLflow, LightGBM, pandas and scikit-learn one by one: 1.3-1.7 s of wall on this VM, after the output is
    final. Not in a warm fork, which its server ends without running the server's atexit handlers, nor under a
    profiler or tracer, which write their results at the interpreter's exit."""
    import atexit
    import threading

    from azureml_steps import _exit

    if _exit.in_fork() or sys.getprofile() is not None or sys.gettrace() is not None:
        return
    threading._shutdown()  # what the interpreter does first: executors' exit hooks, then non-daemon threads joined
    atexit._run_exitfuncs()
    _exit.exit_now(code)


if __name__ == "__main__":
    sys.exit(main())
