"""`stablenew demo` (what `make demo` runs): the example pack end to end with the emulator,
everything stopped afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from tests.cli.up_process import run_cli

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_example_pack_and_stops_everything(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.process_iter()}
    done = run_cli("demo", "--data-dir", str(tmp_path / "demo"), env={}, cwd=REPO_ROOT,
                   timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "(5 previewed = 5 queued)" in done.stdout
    assert "history: completed, 3 transitions, 15 images recorded" in done.stdout
    folder = Path(done.stdout.split("Images:")[1].split()[0])
    assert len(list(folder.glob("*.png"))) == 15
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest
    # Every service the demo started was a child tied to it (`serve ... --stop-with-fd`).
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if p.pid not in before and "--stop-with-fd" in (p.info["cmdline"] or [])]
    assert left == []
