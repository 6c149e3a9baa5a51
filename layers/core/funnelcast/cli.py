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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Parser listing every command; only ``command``'s module is imported to add its arguments.

    Importing every command up front would make ``funnelcast validate`` pay for pandas and moto.
    """
    parser = argparse.ArgumentParser(prog="funnelcast", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(f"funnelcast.commands.{name}").add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the sub-command, turn domain errors into a one-line message and exit 2."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(arguments)
    module = importlib.import_module(f"funnelcast.commands.{args.command}")
    try:
        return int(module.run(args))
    except FunnelcastError as exc:
        print(f"funnelcast {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
