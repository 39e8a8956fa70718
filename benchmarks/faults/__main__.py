"""`python -m benchmarks.faults [--only NAME ...] [--fuzz-examples N] [--seed S]`: run the
fault scenarios one after the other, each on fresh processes in a temporary directory, print
the table of rounds, jobs, lost, duplicated and stuck, and exit 1 unless every figure is 0."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import psutil

from benchmarks.faults import crashes, load, webui
from benchmarks.faults.fuzz import rpc_fuzz
from benchmarks.faults.ledger import Outcome, table

Scenario = Callable[[Path, random.Random, int], tuple[Outcome, str]]


def _plain(run: Callable[[Path, random.Random], Outcome]) -> Scenario:
    return lambda root, chaos, _: (run(root, chaos), "")


SCENARIOS: dict[str, Scenario] = {
    "queue-kill": _plain(crashes.queue_sigkill),
    "history-kill": _plain(crashes.history_sigkill),
    "runner-kill": _plain(webui.runner_sigkill),
    "emulator-kill": _plain(webui.emulator_sigkill),
    "partition": _plain(lambda root, _: crashes.partitioned_runner(root)),
    "stalled-watcher": _plain(lambda root, _: crashes.stalled_watcher(root)),
    "disk-full": _plain(lambda root, _: load.history_disk_full(root)),
    "webui-errors": _plain(lambda root, _: webui.webui_errors(root)),
    "crowd": _plain(lambda root, _: load.crowd(root)),
    "fuzz": lambda root, _, examples: rpc_fuzz(root, examples),
}


def run(name: str, chaos: random.Random, examples: int) -> tuple[Outcome, str]:
    """One scenario on its own temporary directory; one that raises counts as an error."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as root:
        try:
            outcome, details = SCENARIOS[name](Path(root), chaos, examples)
        except Exception:  # reported, and the other scenarios still run
            outcome, details = Outcome(name, errors=1), f"{name}:\n{traceback.format_exc()}"
        finally:
            _end_children()
    outcome.seconds = time.monotonic() - started
    print(f"{outcome.scenario}: {outcome.seconds:.0f} s", file=sys.stderr, flush=True)
    return outcome, details


def _end_children() -> None:
    """Kill any service process a scenario left behind (one that failed half-way), so the
    next scenario starts on a quiet machine."""
    leftovers = psutil.Process().children(recursive=True)
    for child in leftovers:
        child.kill()
    psutil.wait_procs(leftovers, timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=[])
    parser.add_argument("--fuzz-examples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args(argv)
    chaos = random.Random(args.seed)
    results = [run(name, chaos, args.fuzz_examples) for name in args.only or SCENARIOS]
    outcomes = [outcome for outcome, _ in results]
    print(table(outcomes))
    for details in (details for _, details in results if details):
        print(f"\n{details}")
    return 0 if all(outcome.clean for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
