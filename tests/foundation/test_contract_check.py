"""The contract check (scripts/check_contract.py): buf breaking against the released contract,
less the recorded changes. Runs the buf that `make contract-check` installs (`make test` runs
that first); only copies of the workspace are altered."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUF = REPO / "node_modules" / ".bin" / "buf"

pytestmark = pytest.mark.skipif(not BUF.exists(),
                                reason="buf is not installed: run `make contract-check`")


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_contract.py"), "--root", str(root),
         "--buf", str(BUF)],
        capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the buf workspace (buf.yaml, protos/ with the released contract)."""
    shutil.copy(REPO / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(REPO / "protos", tmp_path / "protos")
    return tmp_path


def edit(workspace: Path, proto: str, old: str, new: str) -> None:
    path = workspace / "protos" / "stablenew" / "v1" / proto
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_committed_contract_passes() -> None:
    done = run_check(REPO)
    assert done.returncode == 0, done.stderr
    assert "(2 recorded changes)" in done.stdout


def test_a_renumbered_field_fails(workspace: Path) -> None:
    edit(workspace, "pipeline.proto", "string config_hash = 27;", "string config_hash = 28;")
    done = run_check(workspace)
    assert done.returncode == 1
    assert "not recorded: protos/stablenew/v1/pipeline.proto" in done.stderr
    assert 'Previously present field "27" with name "config_hash"' in done.stderr


def test_a_type_change_that_is_not_recorded_fails(workspace: Path) -> None:
    edit(workspace, "job.proto", "  int32 entry_count = 18;", "  string entry_count = 18;")
    done = run_check(workspace)
    assert done.returncode == 1
    assert "FIELD_WIRE_COMPATIBLE_TYPE" in done.stderr and '"entry_count"' in done.stderr


def test_a_recorded_change_that_buf_no_longer_finds_fails(workspace: Path) -> None:
    edit(workspace, "job.proto", "  Priority priority = 2;", "  int32 priority = 2;")
    done = run_check(workspace)
    assert done.returncode == 1
    assert "recorded change not found any more" in done.stderr
    assert '"JobUpdatedEvent"' in done.stderr


def test_protos_that_do_not_compile_fail(workspace: Path) -> None:
    edit(workspace, "job.proto", "  int32 entry_count = 18;", "  Unknown entry_count = 18;")
    done = run_check(workspace)
    assert done.returncode == 1
    assert "COMPILE: cannot find `Unknown`" in done.stderr


def test_a_missing_buf_is_an_error_not_a_pass(workspace: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_contract.py"), "--root", str(workspace),
         "--buf", str(workspace / "no-buf")],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "cannot run buf" in done.stderr
