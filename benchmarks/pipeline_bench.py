"""Pipeline benchmark: what the queue and the runner add to a WebUI's own time per image.

Every figure compares, in the same run, the same txt2img requests sent by a plain `requests`
loop straight to the emulator with the same requests run as jobs through a queue process and a
runner process (SubmitJob, as the bundle's EnqueueDraft sends it):

- `overhead.jobs_ratio.<ms>ms`: N one-entry jobs queued at once; throughput ratio direct / system;
- `overhead.entries_ratio.<ms>ms`: one N-entry job; throughput ratio;
- `overhead.added_per_job_0ms` / `added_per_entry_0ms`: the extra milliseconds at 0 ms per image;
- `overhead.webui_idle_between_jobs|direct.<ms>ms`, `overhead.generation_slowdown.<ms>ms`: by
  the emulator's clock, the WebUI's wait between two one-entry jobs and between two direct
  requests (the mean, with the p50 and the longest in the note), and its time on the jobs'
  requests over its time on the direct ones;
- `latency.*`: one job at a time at 0 ms per image, p50/p99: submit to RUNNING (the lease),
  submit to the first WebUI request (when the emulator received it), the WebUI's reply to
  COMPLETED (when the emulator answered to the COMPLETED event), and submit to COMPLETED less
  the direct request time;
- `runners.scaling.<n>`: n runners against n of 4 emulators at 200 ms per image; throughput of n
  runners divided by n times one runner's.

    python -m benchmarks.pipeline_bench [--quick]

Never asserts; the figures come back as `Figure`s (benchmarks/figures.py) for `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import requests

from benchmarks.figures import Figure, percentile
from stablenew.contract.model import NormalizedJob
from stablenew.runner.payloads import txt2img_request
from stablenew.v1 import job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.processes import QueueProcess
from tests.runner.harness import EmulatorProcess, RunnerProcess, make_job, submit

STEPS = 4  # make_job's steps: the emulator's step time is the image time over these
TERMINAL = {job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
# What limits the throughput figures (docs/PERFORMANCE.md), printed when one misses its target.
RUNNER_PATH = ("the WebUI waits longer between two jobs than between two direct requests "
               "(webui_idle_between_*): the runner's path from a reply to the next request")
SHARED_CORES = "every runner, emulator and the queue share the same cores"


@dataclass(frozen=True)
class Sizes:
    """How much each measurement runs."""

    jobs: int  # N of the N-jobs / N-entries comparisons
    latency_samples: int
    scaling_jobs: int  # jobs per runner in the scaling figure


FULL = Sizes(jobs=30, latency_samples=60, scaling_jobs=12)
QUICK = Sizes(jobs=10, latency_samples=15, scaling_jobs=4)


class EventClock:
    """Watches the queue and records when each job reached each state (the event's time)."""

    def __init__(self, channel: grpc.Channel) -> None:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        self._stream = stub.WatchJobs(pb.WatchJobsRequest(exclude_progress=True))
        self._lock = threading.Condition()
        self.times: dict[tuple[str, int], float] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for reply in self._stream:
                event = reply.event
                if event.WhichOneof("payload") != "state_changed":
                    continue
                with self._lock:
                    key = (event.job_id, event.state_changed.to_state)
                    self.times[key] = event.time.ToNanoseconds() / 1e9
                    self._lock.notify_all()

    def wait_terminal(self, job_ids: Sequence[str], timeout: float = 600.0) -> float:
        """The time the last of `job_ids` ended."""
        def ended(job_id: str) -> float | None:
            found = [self.times[key] for key in ((job_id, state) for state in TERMINAL)
                     if key in self.times]
            return found[0] if found else None
        with self._lock:
            self._lock.wait_for(lambda: all(ended(job) for job in job_ids), timeout)
            return max(ended(job) or 0.0 for job in job_ids)

    def at(self, job_id: str, state: int) -> float:
        with self._lock:
            return self.times[(job_id, state)]

    def close(self) -> None:
        self._stream.cancel()  # type: ignore[no-untyped-call]  # grpc stubs leave it untyped
        self._thread.join(5)


class System:
    """A queue process, runner processes and their emulators, for one image time."""

    def __init__(self, root: Path, image_ms: float, runners: int = 1) -> None:
        root.mkdir(parents=True)
        step = f"{image_ms / 1000 / STEPS:.4f}"
        self.emulators = [EmulatorProcess(root, "--step-seconds", step) for _ in range(runners)]
        self.queue = QueueProcess(root / "queue", env={"STABLENEW_GRACE_SECONDS": "0.5"})
        self.runners = [RunnerProcess(root / f"runner-{index}", self.queue.address,
                                      emulator.url, f"bench-{index}")
                        for index, emulator in enumerate(self.emulators)]

    def __enter__(self) -> System:
        for emulator in self.emulators:
            emulator.start()
        self.queue.start()
        self.channel = grpc.insecure_channel(self.queue.address)
        self.stub = queue_service_pb2_grpc.QueueServiceStub(self.channel)
        self.clock = EventClock(self.channel)
        for runner in self.runners:
            runner.start()
        self.warm_up()
        return self

    def warm_up(self) -> None:
        """One job per runner first: start-up (connections, the first capabilities) is not what
        the figures measure."""
        jobs = [submit(self.stub, [make_job(0, prompt=f"warm-up {index}")]).job_id
                for index in range(len(self.runners))]
        self.clock.wait_terminal(jobs)

    def __exit__(self, *exc: object) -> None:
        self.clock.close()
        self.channel.close()
        for runner in self.runners:
            runner.close_channel()
            runner.end()
        self.queue.stop()
        for emulator in self.emulators:
            emulator.end()


def local_session() -> requests.Session:
    """A session to the local emulator: no proxy from the environment in the way."""
    session = requests.Session()
    session.trust_env = False
    return session


def direct_seconds(url: str, entries: Sequence[NormalizedJob]) -> list[float]:
    """Each entry's txt2img request sent straight to the WebUI, one after the other: the
    seconds each took."""
    taken = []
    with local_session() as session:
        for entry in entries:
            body = txt2img_request(entry).body
            started = time.perf_counter()
            reply = session.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=60)
            reply.raise_for_status()
            taken.append(time.perf_counter() - started)
    return taken


def entries(count: int, tag: str) -> list[NormalizedJob]:
    return [make_job(index, prompt=f"{tag} {index}") for index in range(count)]


def through_system(system: System, jobs: Sequence[Sequence[NormalizedJob]]) -> float:
    """Seconds from submitting `jobs` (all at once) until the last one ended."""
    started = time.time()
    ids = [submit(system.stub, job).job_id for job in jobs]
    return system.clock.wait_terminal(ids) - started


def overhead(root: Path, image_ms: float, sizes: Sizes) -> Iterator[Figure]:
    """Throughput ratios of N one-entry jobs and one N-entry job against N direct requests."""
    n = sizes.jobs
    with System(root / f"overhead-{image_ms:g}", image_ms) as system:
        url = system.emulators[0].url
        direct = sum(direct_seconds(url, entries(n, "direct")))
        many = through_system(system, [[entry] for entry in entries(n, "jobs")])
        one = through_system(system, [entries(n, "entries")])
        with local_session() as admin:
            recent = webui_records(admin, url)
    yield from webui_split(recent, image_ms, n)
    if image_ms > 0:  # at 0 ms the figures are the added times below
        yield Figure(f"overhead.jobs_ratio.{image_ms:g}ms", direct / many, "ratio",
                     {200: 0.99, 50: 0.97}.get(int(image_ms)), higher_is_better=True,
                     note=f"{n} one-entry jobs queued at once", limit=RUNNER_PATH)
        yield Figure(f"overhead.entries_ratio.{image_ms:g}ms", direct / one, "ratio",
                     0.995 if image_ms >= 200 else None, higher_is_better=True,
                     note=f"one {n}-entry job", limit=RUNNER_PATH)
    if image_ms == 0:
        yield Figure("overhead.added_per_job_0ms", (many - direct) / n * 1000, "ms", None,
                     note=f"{n} one-entry jobs")
        yield Figure("overhead.added_per_entry_0ms", (one - direct) / n * 1000, "ms", None,
                     note=f"one {n}-entry job")


def latency(root: Path, sizes: Sizes) -> Iterator[Figure]:
    """One job at a time at 0 ms per image: where the time between submit and COMPLETED goes.
    The emulator's own times of each request (received, answered) split it; every clock is
    this machine's."""
    with System(root / "latency", 0) as system, local_session() as admin:
        url = system.emulators[0].url
        direct = statistics.median(direct_seconds(url, entries(sizes.latency_samples, "direct")))
        spans: dict[str, list[float]] = {"submit_to_running": [], "submit_to_webui_request": [],
                                         "webui_reply_to_completed": []}
        added = []
        for index in range(sizes.latency_samples):
            prompt = f"latency {index:03d}"  # none a part of another: found by containment
            started = time.time()
            job_id = submit(system.stub, [make_job(index, prompt=prompt)]).job_id
            ended = system.clock.wait_terminal([job_id])
            request = webui_request(admin, url, prompt)
            spans["submit_to_running"].append(
                (system.clock.at(job_id, job_pb2.JOB_STATE_RUNNING) - started) * 1000)
            spans["submit_to_webui_request"].append((request["received"] - started) * 1000)
            spans["webui_reply_to_completed"].append((ended - request["answered"]) * 1000)
            added.append((ended - started - direct) * 1000)
    for name, values in spans.items():
        for q in (50, 99):
            yield Figure(f"latency.{name}.p{q}", percentile(values, q), "ms", None)
    yield Figure("latency.added_per_job.p50", percentile(added, 50), "ms", 10.0,
                 note="submit to COMPLETED less the direct request, 0 ms per image",
                 limit="one job at a time leaves nothing to overlap: the synced image file, "
                       "the synced manifest and CompleteJob follow the reply in turn")
    yield Figure("latency.added_per_job.p90", percentile(added, 90), "ms", None)


def webui_records(session: requests.Session, url: str) -> list[dict[str, Any]]:
    """The emulator's records of its latest requests, in the order they ended (each with its
    received and answered times)."""
    records: list[dict[str, Any]] = session.get(f"{url}/emulator/v1/stats",
                                                timeout=10).json()["recent"]
    return records


def webui_request(session: requests.Session, url: str, prompt: str) -> dict[str, Any]:
    """The emulator's record of the request that generated `prompt`."""
    return next(item for item in reversed(webui_records(session, url))
                if prompt in item["prompt"])


def webui_split(records: Sequence[dict[str, Any]], image_ms: float, n: int) -> Iterator[Figure]:
    """Where the one-entry jobs' time went, by the emulator's clock: how long the WebUI waited
    between two jobs, and how much slower it generated than for the direct loop (the CPU the
    system's processes take from it on the same cores)."""
    def of(tag: str) -> list[dict[str, Any]]:
        return [item for item in records if item["prompt"].startswith(f"{tag} ")]
    def idle(items: list[dict[str, Any]]) -> list[float]:
        return [(after["received"] - before["answered"]) * 1000
                for before, after in itertools.pairwise(items)]
    def busy(items: list[dict[str, Any]]) -> float:
        return sum(float(item["answered"] - item["received"]) for item in items)
    jobs, direct = of("jobs"), of("direct")
    for name, waits in (("jobs", idle(jobs)), ("direct", idle(direct))):
        # The mean, as the throughput pays it; the longest wait tells a stall from a cost.
        yield Figure(f"overhead.webui_idle_between_{name}.{image_ms:g}ms",
                     statistics.fmean(waits), "ms", None,
                     note=f"mean wait between two of the {n} requests, "
                          f"p50 {percentile(waits, 50):.1f} ms, longest {max(waits):.1f} ms")
    yield Figure(f"overhead.generation_slowdown.{image_ms:g}ms", busy(jobs) / busy(direct), "x",
                 None, note="the WebUI's time on the jobs' requests / on the direct ones")


def scaling(root: Path, sizes: Sizes) -> Iterator[Figure]:
    """n runners, each with its own emulator at 200 ms per image, against one runner."""
    rates: dict[int, float] = {}
    for count in (1, 2, 4):
        jobs = sizes.scaling_jobs * count
        with System(root / f"scaling-{count}", 200, runners=count) as system:
            seconds = through_system(system, [[entry] for entry in entries(jobs, "scale")])
        rates[count] = jobs / seconds
        yield Figure(f"runners.throughput.{count}", rates[count], "jobs/s", None)
    for count in (2, 4):
        yield Figure(f"runners.scaling.{count}", rates[count] / (count * rates[1]), "ratio",
                     0.9, higher_is_better=True,
                     note=f"{count} runners / ({count} x one)", limit=SHARED_CORES)


def run(quick: bool) -> list[Figure]:
    """Every figure of this benchmark, each printed as it is measured."""
    sizes = QUICK if quick else FULL
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="stablenew-bench-") as tmp:
        root = Path(tmp)
        for measured in (*(overhead(root, image_ms, sizes) for image_ms in (200, 50, 0)),
                         latency(root, sizes), scaling(root, sizes)):
            for figure in measured:
                print(figure.line(), flush=True)
                figures.append(figure)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer jobs: about a minute")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
