"""``funnelcast`` command line (SPEC §4). Each sub-command lives in ``funnelcast.commands.<name>``
and is imported only when run, so ``funnelcast validate`` never loads pandas."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from funnelcast.errors import FunnelcastError

COMMANDS: dict[str, str] = {
    "validate": "validate rule files; exit 1 with file:line:col: message lines on error",
    "schema": "print the JSON Schema of rule files",
    "generate": "write realistic synthetic customers and events in the data contract",
    "segments": "compute segments locally and write membership.parquet and manifest.json",
    "demo": "run the whole pipeline on an embedded moto AWS with a simulated clock",
    "report": "KPIs per campaign / variant / segment, with charts in the HTML",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funnelcast", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"funnelcast.commands.{name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the sub-command, turn domain errors into a one-line message and exit 2."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"funnelcast.commands.{args.command}")
    try:
        return int(module.run(args))
    except FunnelcastError as exc:
        print(f"funnelcast {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
