"""Load one rule file: YAML with line/column for every node, validated against the rule models.

Every problem is reported as ``file:line:col: message`` in words a marketer understands; pydantic
error locations are mapped back to the YAML node that caused them. Lines and columns are 1-based.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from funnelcast.errors import RuleError
from funnelcast.rules import models
from funnelcast.rules.models import NODE_KEYS, RuleFile

MAX_FILE_BYTES = 1024 * 1024
Path = tuple[str | int, ...]
Position = tuple[int, int]

# Tags the YAML resolver gives plain scalars and collections; anything else (``!!python/...``,
# ``!Custom``, ``!!binary``, ``!!set``) is rejected: rule files carry data, never objects.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
)
_RULE_FILE = TypeAdapter[Any](RuleFile)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file, at 1-based ``line`` / ``column``."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass
class LoadedYaml:
    """Plain Python values of a YAML document plus where each value and key was written."""

    data: Any
    value_positions: dict[Path, Position] = field(default_factory=dict)
    key_positions: dict[Path, Position] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """The position of ``path`` (its key when ``key``), falling back to the closest parent."""
        while True:
            table = self.key_positions if key else self.value_positions
            if path in table:
                return table[path]
            if key and path in self.value_positions:
                return self.value_positions[path]
            if not path:
                return (1, 1)
            path = path[:-1]


@dataclass
class LoadedFile:
    """A validated rule file: the model, where it came from and its YAML positions."""

    name: str
    rule: models.Segment | models.Campaign | models.Policy
    source: LoadedYaml


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns a composed YAML node tree into plain values, recording positions and problems."""

    def __init__(self, name: str, loader: yaml.SafeLoader) -> None:
        self.name = name
        self.loader = loader
        self.problems: list[Problem] = []
        self.result = LoadedYaml(data=None)

    def problem(self, position: Position, message: str) -> None:
        self.problems.append(Problem(self.name, position[0], position[1], message))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.result.value_positions[path] = _mark(node)
        if node.tag not in _PLAIN_TAGS:
            self.problem(_mark(node), f"YAML tag {node.tag!r} is not allowed: rule files hold plain values only")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, index)) for index, child in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problem(_mark(node), f"cannot read value {node.value!r}: {getattr(exc, 'problem', exc)}")
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problem(_mark(key_node), "merge keys '<<' are not supported: write the keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(_mark(key_node), "a key must be a plain word, not a list or mapping")
                continue
            key = self.build(key_node, (*path, "<key>"))
            self.result.value_positions.pop((*path, "<key>"), None)
            if isinstance(key, (int, bool)) or key is None:
                key = str(key_node.value)  # ``on:`` / ``yes:`` / ``1:`` stay the words the author wrote
            key = str(key)
            if key in result:
                first = self.result.key_positions[(*path, key)]
                self.problem(_mark(key_node), f"duplicate key {key!r} (first written at line {first[0]})")
                continue
            self.result.key_positions[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result


def parse_yaml(text: str, name: str) -> LoadedYaml:
    """Parse one YAML document into plain values with positions, or raise :class:`RuleError`."""
    problems: list[Problem] = []
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                line, column = token.start_mark.line + 1, token.start_mark.column + 1
                problems.append(
                    Problem(
                        name, line, column, "anchors and aliases (&name, *name) are not supported: repeat the value"
                    )
                )
    except yaml.MarkedYAMLError as exc:
        raise RuleError([str(_yaml_problem(exc, name))]) from None
    if problems:
        raise RuleError([str(problem) for problem in problems])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.composer.ComposerError as exc:
        if "single document" in str(exc):
            mark = exc.problem_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise RuleError(
                [f"{name}:{line}:{column}: one rule per file: found a second YAML document ('---')"]
            ) from None
        raise RuleError([str(_yaml_problem(exc, name))]) from None
    except yaml.MarkedYAMLError as exc:
        raise RuleError([str(_yaml_problem(exc, name))]) from None
    finally:
        loader.dispose()
    if node is None:
        raise RuleError([f"{name}:1:1: the file holds no rule (it is empty or only comments)"])
    builder = _Builder(name, yaml.SafeLoader(""))
    builder.result.data = builder.build(node, ())
    if builder.problems:
        raise RuleError([str(problem) for problem in builder.problems])
    return builder.result


def _yaml_problem(exc: yaml.MarkedYAMLError, name: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = " ".join(part for part in (exc.context, exc.problem) if part)
    return Problem(name, line, column, f"YAML syntax error: {what}")


def decode(body: bytes, name: str) -> str:
    """Check size and encoding of a rule file's bytes; raise :class:`RuleError` when unusable."""
    if len(body) > MAX_FILE_BYTES:
        raise RuleError([f"{name}:1:1: file is {len(body):,} bytes; a rule file may be at most 1 MiB"])
    if b"\x00" in body:
        raise RuleError([f"{name}:1:1: this is a binary file, not YAML text"])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        column = exc.start - (body.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RuleError([f"{name}:{line}:{column}: file is not UTF-8 text (save it as UTF-8)"]) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise RuleError([f"{name}:1:1: the file is empty"])
    return text


def load_rule_bytes(body: bytes, name: str) -> LoadedFile:
    """Decode, parse and validate one rule file; raise :class:`RuleError` with every problem."""
    source = parse_yaml(decode(body, name), name)
    if not isinstance(source.data, dict):
        raise RuleError([f"{name}:1:1: a rule file is a mapping of keys (kind, id, ...), not a single value or list"])
    try:
        rule = _RULE_FILE.validate_python(source.data)
    except ValidationError as exc:
        raise RuleError([str(problem) for problem in explain(exc, source, name)]) from None
    return LoadedFile(name=name, rule=rule, source=source)


def load_rule_file(path: str) -> LoadedFile:
    """Read and validate the rule file at ``path``."""
    try:
        with open(path, "rb") as handle:
            body = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RuleError([f"{path}:1:1: cannot read file: {exc.strerror}"]) from None
    return load_rule_bytes(body, path)


# --- pydantic errors -> marketer words ------------------------------------------------------------


def resolve_loc(loc: Sequence[str | int], data: Any) -> Path:
    """Map a pydantic ``loc`` onto a path of real keys/indices in ``data``.

    pydantic puts union tags in the loc (the file kind, then e.g. ``'all'`` before the ``all``
    field of an all-node); components that are tags of the current node, or are not keys or
    indices of the current value, are skipped.
    """
    path: list[str | int] = []
    value = data
    tag_skipped = False
    for index, component in enumerate(loc):
        if isinstance(value, dict):
            node_kind = value.get("kind") if not path else _node_kind(value)
            if not tag_skipped and component == node_kind:
                tag_skipped = True
                continue
            if component in value:
                path.append(component)
                value = value[component]
                tag_skipped = False
                continue
            if index == len(loc) - 1:
                path.append(component)  # a missing key: remember its name, point at the parent
                value = None
            continue
        if isinstance(value, list) and isinstance(component, int) and 0 <= component < len(value):
            path.append(component)
            value = value[component]
            tag_skipped = False
    return tuple(path)


def _node_kind(value: dict[Any, Any]) -> str | None:
    present = [key for key in NODE_KEYS if key in value]
    return present[0] if len(present) == 1 else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _rule_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for value in vars(models).values():
        if isinstance(value, type) and issubclass(value, models.Rule) and value is not models.Rule:
            found.append(value)
    return found


def _expected_keys(written: dict[Any, Any], unknown: str) -> list[str]:
    """Fields of the smallest rule model that accepts every other key written beside ``unknown``."""
    others = {key for key in written if key != unknown}
    candidates = [
        _field_names(model)
        for model in _rule_models()
        if model is not models.RuleSet and others <= set(_field_names(model))
    ]
    if not candidates:
        return sorted(others)
    # Prefer a model with a key close to the typo ('withn' -> event node, not not_followed_by).
    candidates.sort(key=lambda names: (not difflib.get_close_matches(unknown, names, n=1), len(names)))
    return candidates[0]


def _value_at(data: Any, path: Path) -> Any:
    value = data
    for component in path:
        if isinstance(value, dict) and component in value:  # noqa: SIM114 (separate for mypy narrowing)
            value = value[component]
        elif isinstance(value, list) and isinstance(component, int) and component < len(value):
            value = value[component]
        else:
            return None
    return value


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "date_type": "a date such as 2026-12-01",
    "date_parsing": "a date such as 2026-12-01",
    "date_from_datetime_inexact": "a date such as 2026-12-01",
    "datetime_type": "a date and time such as 2026-12-24T09:00",
    "datetime_parsing": "a date and time such as 2026-12-24T09:00",
    "datetime_from_date_parsing": "a date and time such as 2026-12-24T09:00",
}


def message_for(error: Any, path: Path, data: Any) -> tuple[str, bool]:
    """Plain words for one pydantic error; the flag says whether to point at the key itself."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = _value_at(data, path)
    if kind == "extra_forbidden":
        unknown = str(path[-1]) if path else "?"
        parent = _value_at(data, path[:-1])
        expected = _expected_keys(parent if isinstance(parent, dict) else {}, unknown)
        close = difflib.get_close_matches(unknown, expected, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {unknown!r}{hint} (expected one of: {', '.join(expected)})", True
    if kind == "missing":
        return f"missing required key {str(path[-1])!r}" if path else "missing required key", False
    if kind in {"union_tag_not_found", "union_tag_invalid"} and not path[:-1] and isinstance(data, dict):
        if "kind" not in data:
            return "missing required key 'kind' (expected one of: segment, campaign, policy)", False
        return f"unknown kind {_describe(data['kind'])} (expected one of: segment, campaign, policy)", False
    if kind in {"literal_error", "enum"}:
        return f"expected one of {ctx.get('expected', '')}, got {_describe(got)}", False
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        if pattern == models.ID_PATTERN:
            return (
                f"expected an id of lower-case letters, digits and '_' starting with a letter "
                f"(such as cart_abandoners), got {_describe(got)}"
            ), False
        if pattern == models.RFM_CODE_PATTERN:
            return f'expected an RFM code of three scores 1-5 such as "555", got {_describe(got)}', False
        return f"{_describe(got)} does not have the expected form {pattern}", False
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_describe(got)}", False
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        words = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(ctx.values()), "")
        return f"must be {words} {limit}, got {_describe(got)}", False
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s)", False
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, "), False
    return f"{error['msg']} (got {_describe(got)})", False


def explain(exc: ValidationError, source: LoadedYaml, name: str) -> list[Problem]:
    """Every pydantic error as a :class:`Problem`; one per location (union members repeat themselves)."""
    problems: list[Problem] = []
    seen: set[Path] = set()
    for error in exc.errors():
        path = resolve_loc(error["loc"], source.data)
        if path in seen:
            continue
        seen.add(path)
        message, at_key = message_for(error, path, source.data)
        if not path and error["type"] == "value_error":
            # A whole-file check (campaign consistency): point at the key the message is about.
            path, at_key = _key_named_in(message, source.data), True
        line, column = source.position(path, key=at_key)
        problems.append(Problem(name, line, column, message))
    problems.sort(key=lambda p: (p.line, p.column))
    return problems


# Whole-campaign checks name what they are about; the first fragment found picks the key to point at.
_MESSAGE_KEYS = (
    ("never carries advertising", "purpose"),
    ("channels lists", "channels"),
    ("variant", "variants"),
    ("weights", "variants"),
)


def _key_named_in(message: str, data: Any) -> Path:
    for fragment, key in _MESSAGE_KEYS:
        if fragment in message and isinstance(data, dict) and key in data:
            return (key,)
    return ()


def type_name(annotation: Any) -> str:
    """Readable name of a type annotation (used in docs and tests)."""
    return getattr(annotation, "__name__", None) or str(typing.get_origin(annotation) or annotation)
