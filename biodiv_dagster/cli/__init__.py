"""The `biodiv` console script.

One module per command group registers its subcommands; imports of heavy libraries happen inside
the command functions so `biodiv --help` stays instant.
"""

import argparse
import sys
from collections.abc import Sequence

from biodiv_core.errors import BiodivError

# Modules that define `register(subparsers)`; each adds its own subcommands.
_COMMAND_MODULES = ("data", "platform", "ui", "azureml", "deploy")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="biodiv", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
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
