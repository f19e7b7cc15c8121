"""The `biodiv` console script.

One module per command group registers its subcommands; imports of heavy libraries happen inside
the command functions so `biodiv --help` stays instant.
"""

import argparse
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except BiodivError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
