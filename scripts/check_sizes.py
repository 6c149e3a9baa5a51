"""Fail when any function of the built template exceeds Lambda's 250 MB (code + layers, unzipped).

Usage: ``python scripts/check_sizes.py [.aws-sam/build]``. Reads the built template that ``sam build``
wrote, sums every file under each function's code directory and under each layer it attaches
(Globals layers included), prints a table of sizes (layers also zipped, as they are uploaded),
and exits 1 naming every function over the limit, or 2 when the build is missing.
"""

from __future__ import annotations

import os
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LIMIT_BYTES = 262_144_000  # Lambda: deployment package + layers, unzipped
MB = 1024 * 1024


class _Loader(yaml.SafeLoader):
    """Reads the built template's CloudFormation short tags as plain {"Ref": ...} mappings."""


def _intrinsic(loader: yaml.Loader, suffix: str, node: yaml.Node) -> Any:
    key = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {key: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {key: loader.construct_sequence(node, deep=True)}
    return {key: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True)
class Tree:
    """Size of one directory tree: unzipped bytes, file count and (when measured) zipped bytes."""

    path: Path
    unzipped: int
    files: int


def measure(path: Path) -> Tree:
    total = count = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
                count += 1
    return Tree(path, total, count)


def zipped_size(path: Path) -> int:
    """Bytes of a deflate zip of ``path`` (as sam deploy uploads it), without writing the archive."""

    class _Counter:
        def __init__(self) -> None:
            self.size = 0

        def write(self, data: bytes) -> int:
            self.size += len(data)
            return len(data)

        def flush(self) -> None:
            return None

    counter = _Counter()
    with zipfile.ZipFile(counter, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=zlib.Z_BEST_SPEED) as archive:  # type: ignore[call-overload]
        for root, _dirs, names in os.walk(path):
            for name in sorted(names):
                file = Path(root, name)
                if not file.is_symlink():
                    archive.write(file, file.relative_to(path))
    return counter.size


def _layer_ids(properties: dict[str, Any], global_layers: list[Any]) -> list[str]:
    ids = []
    for layer in [*global_layers, *properties.get("Layers", [])]:
        if isinstance(layer, dict) and "Ref" in layer:
            ids.append(str(layer["Ref"]))
        else:
            ids.append(str(layer))  # a literal ARN: not built here, reported as external
    return ids


def main(argv: list[str]) -> int:
    build_dir = Path(argv[1] if len(argv) > 1 else ".aws-sam/build")
    template_path = build_dir / "template.yaml"
    if not template_path.is_file():
        print(f"{template_path} not found: run `sam build` first", file=sys.stderr)
        return 2
    template = yaml.load(template_path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (SafeLoader subclass)
    resources: dict[str, Any] = template["Resources"]
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])

    layers: dict[str, Tree] = {}
    for logical_id, definition in resources.items():
        if definition["Type"] in {"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"}:
            properties = definition["Properties"]
            content = properties.get("ContentUri") or properties.get("Content")
            layers[logical_id] = measure(build_dir / str(content))

    print(f"{'layer':<22}{'files':>8}{'unzipped MB':>14}{'zipped MB':>12}")
    for logical_id, tree in layers.items():
        print(f"{logical_id:<22}{tree.files:>8}{tree.unzipped / MB:>14.1f}{zipped_size(tree.path) / MB:>12.1f}")
    print()

    over: list[str] = []
    print(f"{'function':<30}{'code MB':>9}{'layers MB':>11}{'total MB':>10}  layers")
    for logical_id, definition in resources.items():
        if definition["Type"] != "AWS::Serverless::Function":
            continue
        properties = definition["Properties"]
        code_dir = build_dir / str(properties.get("CodeUri", logical_id))
        if not code_dir.exists():
            print(f"{logical_id:<30} code missing at {code_dir}", file=sys.stderr)
            over.append(logical_id)
            continue
        code = measure(code_dir).unzipped
        ids = _layer_ids(properties, global_layers)
        layer_bytes = sum(layers[i].unzipped for i in ids if i in layers)
        total = code + layer_bytes
        flag = "  OVER 250 MB" if total >= LIMIT_BYTES else ""
        print(f"{logical_id:<30}{code / MB:>9.2f}{layer_bytes / MB:>11.1f}{total / MB:>10.1f}  {','.join(ids)}{flag}")
        if total >= LIMIT_BYTES:
            over.append(logical_id)
    if over:
        print(f"\nsize check FAILED (limit {LIMIT_BYTES / MB:.0f} MB unzipped): {', '.join(over)}", file=sys.stderr)
        return 1
    print(f"\nsize check passed: every function + layers < {LIMIT_BYTES / MB:.0f} MB unzipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
