"""Bundle benchmark: a pack expanding to 10,000 normalized jobs (20 rows x 500 fanout variants)
is added to a draft, previewed (every page, 1,000 jobs a page) and enqueued, through the real
gRPC services: a queue and a bundle server in this process on loopback, SQLite on disk, the
client on a third channel. Prints the total and its split; asserts nothing.

    python -m benchmarks.bundle_bench [--rounds 5] [--page-size 1000] [--no-profile]

- add:     AddPackParts of all 20 rows (the bundle normalises the draft once and caches it).
- preview: PreviewDraft page by page until the last page (from the cached normalisation; each
           job is converted to its message once, and the enqueue sends those messages).
- enqueue: EnqueueDraft, which submits the 10,000 entries to the queue in one SubmitJob; the queue
           re-checks every entry's config hash, stores the job and logs its submitted event.
Also timed for the split of the enqueue: the same 10,000 entries submitted straight to the queue
(SubmitJob, a new request id), and each step alone with the functions the services use.

Target (issue 6): the whole (add + preview + enqueue) under 0.5 s.

The profile (on by default) runs one more round on fresh servers with cProfile in every thread
(the gRPC handler threads included) and prints the top functions by own time and by cumulative
time. Profiling slows everything down; read its shares, not its seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure, printed
from stablenew.contract.model import Job, JobState
from stablenew.queue import codec
from stablenew.queue.domain import summarize
from stablenew.queue.entries import entry_batch
from stablenew.v1 import job_pb2, pipeline_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as queue_pb
from tests.bundle_service.harness import BundleHarness, preset, write_pack
from tests.queue.harness import QueueHarness
from tests.service_harness import open_test_channel

ROWS = 20
WHO = [f"knight {number}" for number in range(25)]
WHERE = [f"castle gate {number}" for number in range(20)]  # 25 x 20 = 500 variants a row
PACK_ID = "bench_castles"
TARGET_SECONDS = 0.5
PAGE_SIZE = 1000


def write_bench_pack(packs_dir: Path) -> int:
    """The 10,000-job pack as a user keeps it: a .txt of rows and its sibling .json."""
    rows = [f"masterpiece, row {row}, a [[who]] guarding the [[where]] at dawn\n"
            f"neg: blurry, lowres, row {row}" for row in range(ROWS)]
    write_pack(packs_dir, f"{PACK_ID}.txt", "\n\n".join(rows) + "\n")
    write_pack(packs_dir, f"{PACK_ID}.json", {
        "pack_data": {"name": "Bench castles",
                      "matrix": {"enabled": True, "mode": "fanout",
                                 "slots": [{"name": "who", "values": WHO},
                                           {"name": "where", "values": WHERE}]}},
        "preset_data": preset(("txt2img", "adetailer")),
    })
    return ROWS * len(WHO) * len(WHERE)


@dataclass
class Services:
    queue: QueueHarness
    bundle: BundleHarness

    def stop(self) -> None:
        self.bundle.stop()
        self.queue.stop()


def start_services(root: Path) -> Services:
    queue = QueueHarness(root / "queue", {}).start()
    packs_dir = root / "packs"
    packs_dir.mkdir(parents=True, exist_ok=True)
    write_bench_pack(packs_dir)
    bundle = BundleHarness(root / "bundle", packs_dir, queue.address).start()
    return Services(queue, bundle)


@dataclass
class Round:
    add: float
    preview: float
    enqueue: float
    previewed: int
    queued: int
    pages: int
    entries: list[pipeline_pb2.NormalizedJob]
    job_id: str

    @property
    def total(self) -> float:
        return self.add + self.preview + self.enqueue


def one_round(services: Services, page_size: int) -> Round:
    bundle = services.bundle
    draft_id = bundle.new_draft("bench").draft_id
    started = time.perf_counter()
    bundle.add_pack(draft_id, PACK_ID)
    added = time.perf_counter()
    pages = bundle.preview_pages(draft_id, page_size)
    previewed = time.perf_counter()
    job = bundle.enqueue(draft_id, expected_revision=pages[-1].draft_revision, timeout=120)
    enqueued = time.perf_counter()
    jobs = [job for page in pages for job in page.jobs]  # for the checks, after the timing
    return Round(add=added - started, preview=previewed - added, enqueue=enqueued - previewed,
                 previewed=len(jobs), queued=job.entry_count, pages=len(pages), entries=jobs,
                 job_id=job.job_id)


def direct_submit_seconds(services: Services,
                          entries: list[pipeline_pb2.NormalizedJob]) -> float:
    """The queue's share: the same entries submitted straight to it."""
    request = queue_pb.SubmitJobRequest(
        entries=entries, origin=job_pb2.JobOrigin(run_mode=job_pb2.RUN_MODE_QUEUE),
        request_id=f"bench-direct-{time.monotonic_ns()}")
    with open_test_channel(services.queue.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        stub.GetQueueState(queue_pb.GetQueueStateRequest(), timeout=10)  # connected
        started = time.perf_counter()
        stub.SubmitJob(request, timeout=120)
        return time.perf_counter() - started


def _timed(work: Callable[[], object]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def enqueue_split(entries: list[pipeline_pb2.NormalizedJob]) -> list[tuple[str, float]]:
    """The steps a 10,000-entry enqueue goes through, each timed alone with the functions the
    services use (no gRPC, no locks): where the enqueue's time goes, without profiler overhead."""
    steps: list[tuple[str, float]] = []
    # The bundle sends the messages its preview already converted.
    seconds, request = _timed(lambda: queue_pb.SubmitJobRequest(entries=entries))
    steps.append(("bundle: copy the jobs' messages into the request", seconds))
    seconds, wire = _timed(request.SerializeToString)
    steps.append(("wire: serialize the request", seconds))
    seconds, parsed = _timed(lambda: queue_pb.SubmitJobRequest.FromString(wire))
    steps.append(("wire: parse the request", seconds))
    seconds, batch = _timed(lambda: entry_batch(parsed.entries))
    steps.append(("queue: entry_batch (every hash re-checked, summary, stored form)", seconds))
    job = Job(job_id="bench", state=JobState.QUEUED)
    summarize(job, batch)
    seconds, _ = _timed(lambda: codec.submitted_event(
        job, batch.encoded, datetime.now(UTC)).SerializeToString())
    steps.append(("queue: submitted event (job + stored entries merged, serialized)", seconds))
    return steps


def report_rounds(rounds: list[Round], direct: list[float],
                  split: list[tuple[str, float]]) -> None:
    print(f"{'round':>5} {'add':>8} {'preview':>8} {'enqueue':>8} {'total':>8}   (seconds)")
    for number, measured in enumerate(rounds, start=1):
        print(f"{number:>5} {measured.add:8.3f} {measured.preview:8.3f} {measured.enqueue:8.3f}"
              f" {measured.total:8.3f}")
    fields = ("add", "preview", "enqueue", "total")
    medians = {name: statistics.median(getattr(r, name) for r in rounds) for name in fields}
    best = {name: min(getattr(r, name) for r in rounds) for name in fields}
    print(f"{'median':>5} " + " ".join(f"{medians[name]:8.3f}" for name in fields))
    print(f"{'best':>5} " + " ".join(f"{best[name]:8.3f}" for name in fields))
    last = rounds[-1]
    print(f"jobs: {last.previewed:,} previewed in {last.pages} pages, {last.queued:,} queued")
    if last.previewed != last.queued:
        print("  !! the queue holds a different number of jobs than the preview showed")
    size = sum(entry.ByteSize() for entry in last.entries)
    print(f"SubmitJob payload: {size / 2**20:.2f} MiB of entries (gRPC default limit 4 MiB)")
    print(f"the queue's SubmitJob alone over gRPC (same entries, straight to the queue): "
          f"median {statistics.median(direct):.3f} s")
    print("split of the enqueue, each step timed alone on the same 10,000 entries:")
    for name, seconds in split:
        print(f"  {name:<66} {seconds:6.3f} s")
    print(f"  {'sum of the steps':<66} {sum(seconds for _, seconds in split):6.3f} s")
    verdict = "UNDER" if medians["total"] < TARGET_SECONDS else "OVER"
    print(f"total median {medians['total']:.3f} s: {verdict} the {TARGET_SECONDS} s target")


class ThreadProfiles:
    """cProfile in every thread started while installed (gRPC handler threads are)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _bootstrap(self, _frame: types.FrameType, _event: str, _arg: object) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()  # replaces this hook in the new thread

    def install(self) -> None:
        threading.setprofile(self._bootstrap)

    def uninstall(self) -> None:
        threading.setprofile(None)

    def stats(self, main: cProfile.Profile) -> pstats.Stats:
        stream = io.StringIO()
        stats = pstats.Stats(main, stream=stream)
        with self._lock:
            for profile in self.profiles:
                profile.create_stats()
                if profile.stats:
                    stats.add(profile)
        return stats


# Threads parked in these are idle (waiting for a call, a reply or a lock), not working.
IDLE = ("_serve", "_blocking", "_worker", "wait", "_wait_for_tstate_lock", "acquire",
        "<method 'acquire' of '_thread.lock' objects>",
        "<method 'get' of '_queue.SimpleQueue' objects>", "<built-in method time.sleep>")


def without_idle(stats: pstats.Stats) -> pstats.Stats:
    table = stats.stats  # type: ignore[attr-defined]
    for key in [key for key in table if key[2] in IDLE]:
        del table[key]
    return stats


def print_stats(stats: pstats.Stats, sort: str, restriction: tuple[str | int, ...],
                title: str) -> None:
    stream = io.StringIO()
    stats.stream = stream  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(*restriction)
    lines = stream.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    print(f"\n--- {title} ---")
    for line in lines[start:]:
        if line.strip():
            print(line.replace(str(Path.cwd()) + "/", ""))


def profile_round(page_size: int) -> None:
    profiles = ThreadProfiles()
    profiles.install()
    main = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        services = start_services(Path(tmp))
        try:
            main.enable()
            measured = one_round(services, page_size)
            main.disable()
        finally:
            profiles.uninstall()
            services.stop()
    print(f"\nprofiled round (slowed by cProfile): add {measured.add:.3f} preview "
          f"{measured.preview:.3f} enqueue {measured.enqueue:.3f} total {measured.total:.3f} s")
    stats = without_idle(profiles.stats(main))
    print_stats(stats, "tottime", (25,), "top functions by own time (all threads, idle waits "
                "left out; a `with lock:` wait counts as its caller's own time)")
    print_stats(stats, "cumulative", ("services/stablenew|SerializeToString|FromString", 40),
                "top service functions by cumulative time (all threads)")


def figures(rounds: int) -> list[Figure]:
    """The enqueue figures for `make bench`: the median of `rounds` rounds after a warm-up."""
    with tempfile.TemporaryDirectory() as tmp:
        services = start_services(Path(tmp))
        try:
            one_round(services, PAGE_SIZE)  # warm-up: imports, connections, caches
            measured = [one_round(services, PAGE_SIZE) for _ in range(rounds)]
        finally:
            services.stop()
    note = f"a pack of {measured[-1].queued:,} jobs, median of {rounds} rounds"
    found = [Figure(f"enqueue.10k_jobs.{name}",
                    statistics.median(getattr(r, name) for r in measured) * 1000, "ms",
                    TARGET_SECONDS * 1000 if name == "total" else None,
                    note=note if name == "total" else "",
                    limit="the bundle's and the queue's CPU on the shared cores: the total "
                          "moves by a tenth with the load (docs/PERFORMANCE.md)")
             for name in ("total", "add", "preview", "enqueue")]
    return printed(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    print(f"pack: {ROWS} rows x {len(WHO) * len(WHERE)} fanout variants = "
          f"{ROWS * len(WHO) * len(WHERE):,} normalized jobs; page size {args.page_size}")
    with tempfile.TemporaryDirectory() as tmp:
        services = start_services(Path(tmp))
        try:
            one_round(services, args.page_size)  # warm-up: imports, connections, caches
            rounds = [one_round(services, args.page_size) for _ in range(args.rounds)]
            direct = [direct_submit_seconds(services, rounds[-1].entries) for _ in range(3)]
            split = enqueue_split(rounds[-1].entries)
        finally:
            services.stop()
    report_rounds(rounds, direct, split)
    if not args.no_profile:
        profile_round(args.page_size)


if __name__ == "__main__":
    main()
