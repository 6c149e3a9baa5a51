"""scripts/check_sizes.py: a function plus its layers over 250 MB unzipped fails the build."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

BUILT_TEMPLATE = """\
Globals:
  Function:
    Layers:
      - !Ref CoreLayer
Resources:
  CoreLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: CoreLayer
  DataLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: DataLayer
  SendSmsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: SendSmsFunction
  PlanCampaignFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: PlanCampaignFunction
      Layers:
        - !Ref DataLayer
"""


@pytest.fixture
def check_sizes(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_sizes", ROOT / "scripts" / "check_sizes.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "check_sizes", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    """A miniature .aws-sam/build: 300 KB core layer, 600 KB data layer, 10 KB per function."""
    (tmp_path / "template.yaml").write_text(BUILT_TEMPLATE)
    for directory, size in (("CoreLayer", 300_000), ("DataLayer", 600_000)):
        (tmp_path / directory / "python").mkdir(parents=True)
        (tmp_path / directory / "python" / "lib.so").write_bytes(b"\0" * size)
    for function in ("SendSmsFunction", "PlanCampaignFunction"):
        (tmp_path / function).mkdir()
        (tmp_path / function / "handler.py").write_bytes(b"#" * 10_000)
    return tmp_path


def test_functions_under_the_limit_pass_and_sizes_are_printed(
    check_sizes: ModuleType, build_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a build far under 250 MB, when checked, then it passes and prints each layer and function
    assert check_sizes.main(["check_sizes.py", str(build_dir)]) == 0
    out = capsys.readouterr().out
    assert "CoreLayer" in out
    assert "PlanCampaignFunction" in out
    assert "CoreLayer,DataLayer" in out  # the Globals layer plus the function's own


def test_a_function_whose_layers_exceed_the_limit_fails_by_name(
    check_sizes: ModuleType, build_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a limit between the sender's size (core only) and the planner's (core + data)
    monkeypatch.setattr(check_sizes, "LIMIT_BYTES", 500_000)
    # When checked, then exit 1 naming the planner and not the sender
    assert check_sizes.main(["check_sizes.py", str(build_dir)]) == 1
    err = capsys.readouterr().err
    assert "PlanCampaignFunction" in err
    assert "SendSmsFunction" not in err


def test_a_missing_build_is_a_clear_error(check_sizes: ModuleType, tmp_path: Path) -> None:
    assert check_sizes.main(["check_sizes.py", str(tmp_path / "nothing")]) == 2


def test_the_zipped_size_is_smaller_for_compressible_content(check_sizes: ModuleType, build_dir: Path) -> None:
    assert 0 < check_sizes.zipped_size(build_dir / "CoreLayer") < 300_000
