"""History benchmark: with N job records (1,000,000 by default), how fast are the queries a GUI
makes, measured at the server? Prints p50/p99 in milliseconds and the database size per job;
asserts nothing.

    python -m benchmarks.history_bench [--jobs 1000000] [--samples 500] [--keep DIR]

The records are written straight into the history's SQLite file through its store (bulk
executemany in large transactions), with what ingestion would have stored for a job that ran:
its entry, result, image reference, three transitions and three events. Then a history server
starts in this process on that file (not following any queue) and each query is timed twice:
inside the servicer (the handler called directly, without gRPC) and as a gRPC round trip on
loopback (client and server share this process).

Targets (issue 4): the newest page filtered by state within 10 ms p99; page 10,000 costs what
page 1 costs; GetJob under 2 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from benchmarks.figures import Figure, printed
from stablenew.contract.config_hash import config_hash
from stablenew.contract.job_row import to_micros
from stablenew.contract.model import (
    EntryOrigin,
    EntryResult,
    EntryStatus,
    ImageRef,
    Job,
    JobOrigin,
    JobSource,
    JobState,
    JobTransition,
    NormalizedJob,
    Priority,
    PromptSource,
    RunMode,
    StageType,
)
from stablenew.history import app, codec, domain, mapping
from stablenew.history.core import HistoryCore, fingerprint
from stablenew.history.servicer import HistoryServicer
from stablenew.history.store import HistoryStore
from stablenew.history.store.bulk import BulkRecord
from stablenew.runtime.server import Server, ServiceSpec
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import history_service_pb2_grpc, job_pb2

BATCH = 20_000
ENTRY_POOL = 5_000
PACKS = 200
WORDS = [f"{stem}{n}" for stem in ("castle", "forest", "ocean", "portrait", "city", "dragon",
                                    "garden", "robot", "winter", "desert") for n in range(40)]
RARE_WORD = "zebracorn"
STATES = ([JobState.COMPLETED] * 86 + [JobState.FAILED] * 9 + [JobState.CANCELLED] * 4
          + [JobState.QUEUED])


@dataclass
class Pools:
    entries: list[NormalizedJob]


def make_pools(rng: random.Random) -> Pools:
    entries = []
    for index in range(ENTRY_POOL):
        words = rng.sample(WORDS, rng.randint(8, 20))
        pack = index % PACKS
        entry = NormalizedJob(
            index=0, prompt=", ".join(words), negative_prompt="blurry, lowres",
            stage_plan=[StageType.TXT2IMG, StageType.ADETAILER] if index % 3 else
            [StageType.TXT2IMG], seed=rng.randrange(2**32), model="sd15", sampler_name="Euler a",
            width=512, height=768, steps=24, cfg_scale=6.5, batch_size=1, n_iter=1,
            origin=EntryOrigin(prompt_source=PromptSource.PACK, prompt_pack_id=f"pack-{pack}",
                               pack_name=f"Pack {pack}", row_index=index % 37))
        entry.config_hash = config_hash(entry)
        entries.append(entry)
    return Pools(entries)


class EventTemplates:
    """What ingestion stores per job (three events), built from templates per job."""

    def __init__(self) -> None:
        self.submitted = job_pb2.JobEvent()
        self.submitted.submitted.job.state = job_pb2.JOB_STATE_QUEUED
        self.changed = job_pb2.JobEvent()

    def events(self, job: Job, first_sequence: int, times: list[datetime]
               ) -> list[tuple[int, int, bytes]]:
        out = []
        submitted = self.submitted
        submitted.sequence = first_sequence
        submitted.job_id = job.job_id
        submitted.submitted.job.job_id = job.job_id
        submitted.submitted.job.payload_summary = job.payload_summary
        submitted.time.FromDatetime(times[0])
        out.append((first_sequence, codec.CUT_ENTRIES, submitted.SerializeToString()))
        previous = job_pb2.JOB_STATE_QUEUED
        for offset, (state, moment) in enumerate(
                zip((JobState.RUNNING, job.state), times[1:], strict=False), start=1):
            changed = self.changed
            changed.sequence = first_sequence + offset
            changed.job_id = job.job_id
            changed.time.FromDatetime(moment)
            changed.state_changed.from_state = previous
            changed.state_changed.to_state = int(state)  # type: ignore[assignment]
            changed.state_changed.runner_id = job.runner_id
            changed.state_changed.attempt = 1
            cut = codec.CUT_RESULTS if state.is_terminal else 0
            out.append((first_sequence + offset, cut, changed.SerializeToString()))
            previous = int(state)  # type: ignore[assignment]
        return out


def make_record(number: int, rng: random.Random, pools: Pools, events: EventTemplates,
                start: datetime) -> BulkRecord:
    entry = pools.entries[rng.randrange(ENTRY_POOL)]
    state = JobState.COMPLETED if number % 5 else STATES[rng.randrange(len(STATES))]
    created = start + timedelta(milliseconds=number * 300 + rng.randrange(300))
    started = created + timedelta(seconds=1)
    finished = started + timedelta(seconds=8)
    direct = number % 10 == 0
    pack = number % 3 != 0
    job = Job(
        job_id=f"{rng.getrandbits(128):032x}", state=state,
        origin=JobOrigin(run_mode=RunMode.DIRECT if direct else RunMode.QUEUE,
                         source=JobSource.RUN_NOW if direct else JobSource.ADD_TO_QUEUE,
                         prompt_source=PromptSource.PACK if pack else PromptSource.MANUAL,
                         prompt_pack_id=entry.origin.prompt_pack_id if pack else ""),
        priority=Priority.NORMAL, label="favourite" if number % 20 == 0 else "",
        stage_count=len(entry.stage_plan), has_adetailer=len(entry.stage_plan) > 1,
        config_hash=entry.config_hash, create_time=created,
        start_time=None if state == JobState.QUEUED else started,
        complete_time=finished if state.is_terminal else None,
        update_time=finished if state.is_terminal else created,
        error_message="CUDA out of memory" if state == JobState.FAILED else "",
        payload_summary=f"1 entry, 1 images: {entry.prompt[:57]}... (txt2img)",
        runner_id="gpu-1" if state != JobState.QUEUED else "", attempt=int(
            state != JobState.QUEUED), entry_count=1, estimated_images=1,
        entries=[entry], queue_position=-1 if state.is_terminal else 0,
        bookmarked=number % 100 == 0)
    if state.is_terminal:
        job.results = [EntryResult(
            entry_index=0, prompt_pack_id=entry.origin.prompt_pack_id,
            pack_name=entry.origin.pack_name, row_index=entry.origin.row_index,
            prompt=entry.prompt, stage_plan=list(entry.stage_plan),
            status=EntryStatus.COMPLETED if state == JobState.COMPLETED else EntryStatus.FAILED,
            executed_config_hash=entry.config_hash, duration=timedelta(seconds=8),
            images=[] if state != JobState.COMPLETED else [ImageRef(
                path=f"2026/06/{job.job_id}-0.png", sha256=job.job_id * 2, width=512,
                height=768, seed=entry.seed, stage=entry.stage_plan[-1], size_bytes=612_345,
                runner_id="gpu-1")])]
    if number % 10_000 == 7:
        job.label = f"{RARE_WORD} test"
    transitions = [JobTransition(sequence=number * 3 + 1, from_state=JobState.UNSPECIFIED,
                                 to_state=JobState.QUEUED, time=created, reason="submitted")]
    times = [created]
    if state != JobState.QUEUED:
        transitions += [
            JobTransition(sequence=number * 3 + 2, from_state=JobState.QUEUED,
                          to_state=JobState.RUNNING, time=started, reason="leased",
                          runner_id="gpu-1", attempt=1),
            JobTransition(sequence=number * 3 + 3, from_state=JobState.RUNNING, to_state=state,
                          time=finished, reason=state.name.lower(), runner_id="gpu-1",
                          attempt=1)]
        times += [started, finished]
    stored_events = events.events(job, number * 3 + 1, times)
    return BulkRecord(job, transitions, domain.search_text(job), stored_events)


def seed(path: Path, count: int) -> float:
    """Write `count` records; returns the seconds it took."""
    started = time.perf_counter()
    store = HistoryStore(path)
    # A large page cache for the load: the job_id index takes keys in random order.
    store.db.execute("PRAGMA cache_size = -1048576")
    rng = random.Random(20260601)
    pools = make_pools(rng)
    events = EventTemplates()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        records = [make_record(done + i, rng, pools, events, start) for i in range(size)]
        with store.transaction():
            store.bulk_insert(records)
        done += size
        if done % 100_000 == 0 or done == count:
            print(f"  seeded {done:>9,} records  {time.perf_counter() - started:6.1f} s",
                  flush=True)
    with store.transaction():
        store.set_cursor(count * 3)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(call: Callable[[], object], samples: int) -> tuple[float, float]:
    for _ in range(min(20, samples)):
        call()  # warm the page cache and the code paths
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings)


def each_once(call: Callable[[str], object], ids: list[str]) -> tuple[float, float]:
    timings = []
    for job_id in ids:
        started = time.perf_counter()
        call(job_id)
        timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings)


class Handler:
    """The servicer's handlers called directly (no gRPC): the time inside the server."""

    def __init__(self, servicer: HistoryServicer) -> None:
        self.servicer = servicer

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        method = getattr(self.servicer, name)
        return lambda request: method(request, None)


@dataclass(frozen=True)
class Timing:
    """One query's p50 and p99 in milliseconds, in the servicer and over gRPC."""

    key: str  # its figure's name: history.{key}.p99
    name: str
    inside: tuple[float, float]
    wire: tuple[float, float]


def report(timing: Timing) -> Timing:
    inside, wire = timing.inside, timing.wire
    print(f"{timing.name:<44} servicer p50 {inside[0]:7.3f} p99 {inside[1]:7.3f} ms   "
          f"gRPC p50 {wire[0]:7.3f} p99 {wire[1]:7.3f} ms", flush=True)
    return timing


def run_benchmarks(data_dir: Path, count: int, samples: int) -> tuple[list[Timing], float]:
    """Every query's timing, and the database's bytes per job."""
    env = {"STABLENEW_HISTORY_ADDR": "127.0.0.1:0", "STABLENEW_DATA_DIR": str(data_dir)}
    settings = ServerSettings.load("history", env=env)
    core = HistoryCore(HistoryStore(data_dir / app.DATABASE_NAME))
    servicer = HistoryServicer(core)
    server = Server(settings, ServiceSpec(
        name="history", proto_services=[app.SERVICE.full_name],
        register=lambda grpc_server: history_service_pb2_grpc.add_HistoryServiceServicer_to_server(
            servicer, grpc_server)))
    port = server.start()
    handler = Handler(servicer)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = history_service_pb2_grpc.HistoryServiceStub(channel)
    timings: list[Timing] = []
    try:
        for key, name, request in list_requests(core, count):
            # Text searches are slower: fewer samples keep the run short.
            n = max(20, samples // 10) if request.filter.text else samples
            timings.append(report(Timing(
                key, name, timed(lambda r=request: handler.ListJobs(r), n),  # type: ignore[misc]
                timed(lambda r=request: stub.ListJobs(r), n))))  # type: ignore[misc]
        # Random jobs: the first read of each finds its pages outside SQLite's cache (in the
        # OS's, at best); the second finds them warm. Servicer and gRPC get different jobs.
        ids = sample_ids(core, samples * 2)
        mine, wire = ids[:samples], ids[samples:]
        first = (each_once(lambda i: handler.GetJob(pb.HistoryServiceGetJobRequest(job_id=i)),
                           mine),
                 each_once(lambda i: stub.GetJob(pb.HistoryServiceGetJobRequest(job_id=i)),
                           wire))
        again = (each_once(lambda i: handler.GetJob(pb.HistoryServiceGetJobRequest(job_id=i)),
                           mine),
                 each_once(lambda i: stub.GetJob(pb.HistoryServiceGetJobRequest(job_id=i)),
                           wire))
        timings.append(report(Timing("get_job.first_read", "GetJob (first read of a random job)",
                                     *first)))
        timings.append(report(Timing("get_job.again", "GetJob (the same jobs again)", *again)))
        latest = pb.GetLatestJobRequest(filter=pb.JobFilter(states=[job_pb2.JOB_STATE_FAILED]))
        timings.append(report(Timing(
            "get_latest_job.failed", "GetLatestJob (state FAILED)",
            timed(lambda: handler.GetLatestJob(latest), samples),
            timed(lambda: stub.GetLatestJob(latest), samples))))
    finally:
        channel.close()
        server.stop(grace=1)
        core.store.close()
    database = data_dir / app.DATABASE_NAME
    size = sum(path.stat().st_size for path in data_dir.glob(f"{app.DATABASE_NAME}*"))
    print(f"database {size / 2**20:,.1f} MiB for {count:,} jobs: {size / count:,.0f} bytes per "
          f"job ({database.name} {database.stat().st_size / 2**20:,.1f} MiB + WAL/SHM)")
    return timings, size / count


def sample_ids(core: HistoryCore, samples: int) -> list[str]:
    rng = random.Random(7)
    total = core.store.count()
    picks = rng.sample(range(1, total + 1), min(samples, total))
    marks = ", ".join("?" * len(picks))
    rows = core.store.db.execute(f"SELECT job_id FROM jobs WHERE id IN ({marks})", picks)
    return [str(row[0]) for row in rows]


def page_token_at(core: HistoryCore, job_filter: pb.JobFilter, offset: int) -> str:
    """The token ListJobs hands out after `offset` records (computed, not paged to)."""
    domain_filter = mapping.filter_from_proto(job_filter)
    stored = core.store.list_jobs(domain_filter, None, offset)
    last = stored[-1].job
    return core.list_tokens.encode([to_micros(last.create_time), last.job_id,
                                    fingerprint(domain_filter)])


def list_requests(core: HistoryCore, count: int
                  ) -> list[tuple[str, str, pb.HistoryServiceListJobsRequest]]:
    """(figure key, printed name, request) of every ListJobs query timed."""
    completed = pb.JobFilter(states=[job_pb2.JOB_STATE_COMPLETED])
    failed = pb.JobFilter(states=[job_pb2.JOB_STATE_FAILED])
    finished = pb.JobFilter(states=[job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED,
                                    job_pb2.JOB_STATE_CANCELLED])
    far = min(9_999 * 50, count // 2)
    requests = [
        ("list.all", "ListJobs page 1, no filter", pb.HistoryServiceListJobsRequest()),
        ("list.completed", "ListJobs page 1, state COMPLETED",
         pb.HistoryServiceListJobsRequest(filter=completed)),
        ("list.failed", "ListJobs page 1, state FAILED",
         pb.HistoryServiceListJobsRequest(filter=failed)),
        ("list.terminal", "ListJobs page 1, 3 terminal states",
         pb.HistoryServiceListJobsRequest(filter=finished)),
        ("list.far_completed", f"ListJobs page {far // 50 + 1:,}, state COMPLETED",
         pb.HistoryServiceListJobsRequest(
             filter=completed, page_token=page_token_at(core, completed, far))),
        ("list.far_all", f"ListJobs page {far // 50 + 1:,}, no filter",
         pb.HistoryServiceListJobsRequest(page_token=page_token_at(core, pb.JobFilter(), far))),
        ("list.failed_direct", "ListJobs page 1, FAILED + DIRECT",
         pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(
             states=[job_pb2.JOB_STATE_FAILED], run_mode=job_pb2.RUN_MODE_DIRECT))),
        ("list.pack", "ListJobs page 1, pack pack-17", pb.HistoryServiceListJobsRequest(
            filter=pb.JobFilter(prompt_pack_id="pack-17"))),
        ("list.bookmarked", "ListJobs page 1, bookmarked", pb.HistoryServiceListJobsRequest(
            filter=pb.JobFilter(bookmarked=True))),
        ("list.text_common", "ListJobs page 1, text common ('castle1')",
         pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(text="castle1"))),
        ("list.text_medium", "ListJobs page 1, text medium ('dragon17, robot3')",
         pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(text="dragon17, robot3"))),
        ("list.text_rare", f"ListJobs page 1, text rare ('{RARE_WORD}')",
         pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(text=RARE_WORD))),
        ("list.text_absent", "ListJobs page 1, text absent ('unicorn')",
         pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(text="unicorn"))),
        ("list.text_and_state", "ListJobs page 1, text 'favourite' + FAILED",
         pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(
             text="favourite", states=[job_pb2.JOB_STATE_FAILED]))),
    ]
    return requests


# Targets (issue 4), on the servicer's p99 in milliseconds.
TARGETS_MS = {"list.completed": 10.0, "list.failed": 10.0, "get_job.first_read": 2.0}
LIMITS = {"get_job.first_read": "a random job's pages are outside SQLite's cache of a large "
                                "file: a disk read each"}
# Page 10,000 costs what page 1 costs: their medians' ratio (a p99 of a 2 ms query on a shared
# machine measures the neighbours), with room for noise.
FAR_PAGE_RATIO = 2.0


def figures(count: int, samples: int) -> list[Figure]:
    """The history's figures for `make bench`, with `count` records (seeded first)."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        seconds = seed(data_dir / app.DATABASE_NAME, count)
        print(f"seeded {count:,} history records in {seconds:.1f} s", flush=True)
        timings, bytes_per_job = run_benchmarks(data_dir, count, samples)
    note = f"{count:,} records, in the servicer"
    found = [Figure(f"history.{t.key}.p99", t.inside[1], "ms", TARGETS_MS.get(t.key), note=note,
                    limit=LIMITS.get(t.key, ""))
             for t in timings]
    by_key = {t.key: t for t in timings}
    ratio = by_key["list.far_completed"].inside[0] / by_key["list.completed"].inside[0]
    found += [Figure("history.far_page_ratio", ratio, "x", FAR_PAGE_RATIO,
                     note=f"{by_key['list.far_completed'].name} p50 / page 1's"),
              Figure("history.bytes_per_job", bytes_per_job, "B", None, note=note)]
    return printed(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--keep", type=Path, help="seed into (or reuse) this data directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.keep or Path(tmp) / "data"
        if not (data_dir / app.DATABASE_NAME).exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            print(f"seeding {args.jobs:,} job records ...")
            seconds = seed(data_dir / app.DATABASE_NAME, args.jobs)
            print(f"seeded {args.jobs:,} job records in {seconds:.1f} s "
                  f"({args.jobs / seconds:,.0f} per second)")
        run_benchmarks(data_dir, args.jobs, args.samples)


if __name__ == "__main__":
    main()
