"""The rule language (SPEC §2): pydantic models, a line-aware YAML loader, rule-set checks, bundles."""

from __future__ import annotations
