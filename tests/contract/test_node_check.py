"""The Node.js implementation written from docs/CONTRACT.md alone reproduces every vector (so the
document suffices), and its check fails on a vector that is wrong (so the check can fail)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.contract.make_vectors import VECTORS_PATH

CHECK = Path(__file__).with_name("node") / "check_vectors.mjs"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not on PATH: the Node.js check of CONTRACT.md cannot run")


def _run_check(vectors: Path) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run([NODE, str(CHECK), str(vectors)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_node_implementation_reproduces_every_vector() -> None:
    document = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

    result = _run_check(VECTORS_PATH)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == (f"ok: {len(document['jobs'])} jobs, "
                                     f"{len(document['bundles'])} bundles, "
                                     f"{len(document['floats'])} doubles")


def test_the_node_check_reports_wrong_vectors(tmp_path: Path) -> None:
    document: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    unicode_job = next(v for v in document["jobs"] if v["name"] == "unicode-and-escapes")
    unicode_job["canonical"] = unicode_job["canonical"].replace("\\u001f", "\\u001F")
    document["jobs"][0]["config_hash"] = "0" * 64
    document["bundles"][0]["bundle_hash"] = "f" * 64
    document["floats"][0]["text"] = "0"
    corrupted = tmp_path / "vectors.json"
    corrupted.write_text(json.dumps(document), encoding="utf-8")

    result = _run_check(corrupted)

    assert result.returncode == 1
    lines = result.stdout.strip().split("\n")  # not splitlines(): a prompt holds U+2028
    assert [line.split(":")[0] for line in lines[:-1]] == [
        f"job {document['jobs'][0]['name']}", "job unicode-and-escapes",
        f"bundle {document['bundles'][0]['name']}", f"double {document['floats'][0]['bits']}"]
    assert lines[-1].startswith("FAILED: 4 mismatches")
