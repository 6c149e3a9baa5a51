"""``funnelcast validate PATH...``: check rule files and directories as one rule set."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="rule files or directories of *.yaml files")


def run(args: argparse.Namespace) -> int:
    """Exit 0 with a one-line summary, or 1 with every ``file:line:col: message`` line."""
    from funnelcast.errors import RuleError  # noqa: PLC0415 (CLI imports lazily)
    from funnelcast.rules.ruleset import load_ruleset  # noqa: PLC0415

    try:
        report = load_ruleset(args.paths)
    except RuleError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found; nothing was changed", file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(warning, file=sys.stderr)
    print(report.summary())
    return 0
