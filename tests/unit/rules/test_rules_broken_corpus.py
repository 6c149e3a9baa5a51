"""Every file of the broken-rule corpus is rejected with ``file:line:col`` and plain words, never a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from funnelcast.commands import validate
from funnelcast.errors import RuleError
from funnelcast.rules.loader import MAX_FILE_BYTES, load_rule_bytes
from funnelcast.rules.ruleset import load_ruleset

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "broken_rules"
MANIFEST: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))


def test_corpus_is_large_and_fully_described() -> None:
    # Given the corpus directory / Then every entry has a manifest line and there are at least 40
    on_disk = {path.name for path in CORPUS.iterdir() if path.name != "expected.yaml"}
    assert on_disk == set(MANIFEST)
    assert len(MANIFEST) >= 40


@pytest.mark.parametrize("case", sorted(MANIFEST))
def test_broken_rule_is_reported_at_its_position(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given one broken file (or a rule-set directory with one cross-file mistake)
    expected = MANIFEST[case]
    target = CORPUS / case / expected["file"] if "file" in expected else CORPUS / case
    # When it is validated
    with pytest.raises(RuleError) as caught:
        load_ruleset([str(CORPUS / case)])
    # Then one problem names the file, line and column and says what is wrong
    prefix = f"{target}:{expected['at']}: "
    matching = [p for p in caught.value.problems if p.startswith(prefix) and expected["message"] in p]
    assert matching, f"expected {prefix}...{expected['message']}... in {caught.value.problems}"
    # And the CLI exits 1 printing the same lines, no traceback
    assert validate.run(argparse.Namespace(paths=[str(CORPUS / case)])) == 1
    err = capsys.readouterr().err
    assert matching[0] in err
    assert "Traceback" not in err


def test_huge_file_is_rejected_before_parsing() -> None:
    # Given a file just over 1 MiB / When loaded / Then it is rejected by size at 1:1
    body = b"# padding\n" * (MAX_FILE_BYTES // 10 + 1)
    with pytest.raises(RuleError) as caught:
        load_rule_bytes(body, "huge.yaml")
    assert caught.value.problems[0].startswith("huge.yaml:1:1: ")
    assert "at most 1 MiB" in caught.value.problems[0]


def test_binary_file_is_rejected(tmp_path: Path) -> None:
    # Given a PNG-like binary upload / When validated / Then it is named as binary at 1:1
    path = tmp_path / "logo.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(RuleError) as caught:
        load_ruleset([str(path)])
    assert f"{path}:1:1: this is a binary file, not YAML text" in caught.value.problems
