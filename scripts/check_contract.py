"""`buf breaking` against the released contract, less the recorded contract changes.

buf checks protos/ against the buf image of the released contract (protos/released/v1.binpb)
with the WIRE rules of buf.yaml. buf also flags, on purpose, changes that keep the wire form but
deserve a decision, such as an int32 field becoming an enum. Those that were decided are recorded,
each with why, in protos/released/recorded_changes.json. This check fails on any other finding,
and on a recorded change buf no longer finds (its record must go), so the record stays exact.

`python scripts/check_contract.py` (or `make contract-check`, which also installs buf).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RELEASED = Path("protos/released/v1.binpb")
RECORDED = Path("protos/released/recorded_changes.json")
BUF = Path("node_modules/.bin/buf")


class Finding(NamedTuple):
    """One buf breaking finding, without its line and column (comments move lines)."""

    path: str
    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.type}: {self.message}"


def breaking_findings(buf: Path, root: Path, against: Path) -> list[Finding]:
    """What `buf breaking` finds in the workspace at `root` against the image `against`."""
    try:
        done = subprocess.run(
            [str(buf), "breaking", "--against", str(against), "--error-format", "json"],
            cwd=root, capture_output=True, text=True, check=False)
    except OSError as error:
        raise SystemExit(f"cannot run buf ({error}): run `make contract-check`") from None
    # buf exits 100 with findings (a proto that does not compile is one, of type COMPILE);
    # anything else but 0 is a failure to check.
    if done.returncode not in (0, 100):
        raise SystemExit(f"buf breaking could not run:\n{done.stderr}{done.stdout}")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [Finding(record["path"], record["type"], record["message"]) for record in records]


def recorded_changes(path: Path) -> list[Finding]:
    return [Finding(change["path"], change["type"], change["message"])
            for change in json.loads(path.read_text(encoding="utf-8"))]


def problems(found: list[Finding], recorded: list[Finding]) -> list[str]:
    """Every finding that is not recorded, and every record that buf no longer finds."""
    unrecorded = [f"not recorded: {finding}" for finding in found if finding not in recorded]
    stale = [f"recorded change not found any more (remove its record): {change}"
             for change in recorded if change not in found]
    return unrecorded + stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the buf workspace (buf.yaml)")
    parser.add_argument("--buf", type=Path, default=None, help=f"default: ROOT/{BUF}")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    buf = (args.buf or root / BUF).resolve()
    found = breaking_findings(buf, root, root / RELEASED)
    recorded = recorded_changes(root / RECORDED)
    unexpected = problems(found, recorded)
    for problem in unexpected:
        print(problem, file=sys.stderr)
    if unexpected:
        print(f"the contract changed against {RELEASED}: keep the wire form (docs/API.md, "
              f"'Contract checks'), or record a deliberate change in {RECORDED}",
              file=sys.stderr)
        return 1
    print(f"contract: wire-compatible with {RELEASED} ({len(recorded)} recorded changes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
