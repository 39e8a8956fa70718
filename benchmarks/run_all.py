"""`make bench`: every benchmark against real processes and the emulator. Prints one line per
figure (name, value, unit, target, met or MISSED) and writes them to `.bench/results.json`.

    python -m benchmarks.run_all [--quick] [--out .bench/results.json]

Never asserts: a missed target is printed as MISSED; docs/PERFORMANCE.md says what limits it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import (
    big_job_bench,
    bundle_bench,
    history_bench,
    pipeline_bench,
    queue_bench,
    watch_bench,
)
from benchmarks.figures import Figure, write_results


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 2 minutes")
    parser.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    figures: list[Figure] = []
    figures += big_job_bench.run(args.quick)
    figures += queue_bench.figures(queued=10_000 if args.quick else 100_000,
                                   samples=100 if args.quick else 500)
    figures += bundle_bench.figures(rounds=2 if args.quick else 5)
    figures += watch_bench.run(args.quick)
    figures += pipeline_bench.run(args.quick)
    # Last: the disk still writes back the gigabytes it seeds and removes after it ends (the
    # watch delivery p99 measured after it was 146 ms, 47 ms before it).
    # The quick mode seeds a tenth of the records: its figures' notes say how many.
    figures += history_bench.figures(count=100_000 if args.quick else 1_000_000,
                                     samples=100 if args.quick else 500)
    write_results(figures, args.out, machine())
    print(f"{len(figures)} figures in {time.perf_counter() - started:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
