"""What ships to Lambda imports only what the layers and the runtime provide.

The CoreLayer holds ``funnelcast`` minus the CLI, the demo and the moto helpers (see
layers/core/Makefile); every other module, and every handler, may import only the standard
library, the CoreLayer's pinned packages, boto3/botocore (the Lambda runtime has them) and
pandas/numpy/pyarrow (the DataLayer). A dev-only import (rich, moto, duckdb...) would pass every
test here and fail only in AWS, so it is caught statically.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "core" / "funnelcast"
NOT_SHIPPED = ("commands", "demo", "local", "cli.py")
# Import names of the CoreLayer requirements (distribution name -> import name where they differ).
IMPORT_NAMES = {
    "aws-lambda-powertools": "aws_lambda_powertools",
    "aws-xray-sdk": "aws_xray_sdk",
    "pydantic-core": "pydantic_core",
    "annotated-types": "annotated_types",
    "typing-extensions": "typing_extensions",
    "typing-inspection": "typing_inspection",
    "pyyaml": "yaml",
    "python-liquid": "liquid",
    "importlib-resources": "importlib_resources",
    "python-dateutil": "dateutil",
}
RUNTIME = {"boto3", "botocore"}
DATA_LAYER = {"pandas", "numpy", "pyarrow"}


def _core_requirements() -> set[str]:
    names = set()
    for raw in (ROOT / "layers" / "core" / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            distribution = re.split(r"[=<>\[ ]", line, maxsplit=1)[0].lower()
            names.add(IMPORT_NAMES.get(distribution, distribution.replace("-", "_")))
    return names


def _shipped_files() -> list[Path]:
    files = [*sorted((ROOT / "functions").glob("*/*.py"))]
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] not in NOT_SHIPPED:
            files.append(path)
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_the_core_layer_makefile_drops_exactly_the_unshipped_parts() -> None:
    makefile = (ROOT / "layers" / "core" / "Makefile").read_text()
    for part in NOT_SHIPPED:
        assert f"$(SITE)/funnelcast/{part}" in makefile


def test_shipped_code_imports_only_what_lambda_will_have() -> None:
    # Given every handler and every shipped funnelcast module
    allowed = _core_requirements() | RUNTIME | DATA_LAYER | set(sys.stdlib_module_names) | {"funnelcast", "__future__"}
    problems = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}, which no layer or the runtime provides"
        for path in _shipped_files()
        for line, name in _imports(path)
        if name not in allowed
    ]
    # Then nothing needs a dev-only package
    assert not problems, "\n".join(problems)


def test_shipped_code_never_imports_what_is_left_out() -> None:
    problems = []
    for path in _shipped_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if (
                    parts[0] == "funnelcast"
                    and len(parts) > 1
                    and f"{parts[1]}" in {"commands", "demo", "local", "cli"}
                ):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {node.module}")
    assert not problems, "\n".join(problems)


def test_the_scan_sees_a_forbidden_import(tmp_path: Path) -> None:
    # Given a module importing rich inside a function, then the scanner reports it (the test can fail)
    module = tmp_path / "bad.py"
    module.write_text("def show():\n    from rich.table import Table\n    return Table\n")
    assert _imports(module) == [(2, "rich")]
