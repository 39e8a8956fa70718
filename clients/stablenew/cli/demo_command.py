"""`stablenew demo`: the whole system on this machine with the built-in WebUI emulator.

Starts the emulator and the four services as separate processes on free loopback ports, runs
the example pack through draft -> preview -> queue -> runner -> history, prints where the images
and the history are, and stops everything (or keeps it running with --keep-running).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stablenew.cli.local_services import free_port, wait_serving
from stablenew.contract.model import JobState
from stablenew.sdk import Client, StableNewError
from stablenew.v1 import job_pb2, pipeline_pb2

SERVICES = ("queue", "history", "runner", "bundle")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = commands.add_parser("demo", help="run the example pack end to end with the emulator")
    demo.add_argument("--data-dir", default=".stablenew/demo", type=Path,
                      help="databases, packs and images of the demo (default: %(default)s)")
    demo.add_argument("--packs", default="examples/packs", type=Path,
                      help="prompt packs to copy into the demo (default: %(default)s)")
    demo.add_argument("--pack", default="castles", help="the pack to run (default: %(default)s)")
    demo.add_argument("--keep-running", action="store_true",
                      help="leave the services running until Ctrl-C")
    demo.set_defaults(run=run)


def _environment(data_dir: Path) -> dict[str, str]:
    ports = {name: free_port() for name in (*SERVICES, "emulator")}
    env = {key: value for key, value in os.environ.items() if not key.startswith("STABLENEW_")}
    env |= {f"STABLENEW_{name.upper()}_ADDR": f"127.0.0.1:{ports[name]}" for name in SERVICES}
    env |= {"STABLENEW_DATA_DIR": str(data_dir),
            "STABLENEW_PACKS_DIR": str(data_dir / "packs"),
            "STABLENEW_EMULATOR_ADDR": f"127.0.0.1:{ports['emulator']}",
            "STABLENEW_WEBUI_URL": f"http://127.0.0.1:{ports['emulator']}",
            "STABLENEW_EMULATOR_STEP_SECONDS": "0.01",
            "STABLENEW_RUNNER_ID": "demo-runner"}
    return env


@contextmanager
def _services(env: dict[str, str], logs: Path) -> Iterator[None]:
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("emulator", *SERVICES):
            log = (logs / f"{name}.log").open("wb")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "stablenew.cli.main", "serve", name],
                env=env, stdout=log, stderr=subprocess.STDOUT))
            if name != "emulator":
                wait_serving(env[f"STABLENEW_{name.upper()}_ADDR"])
            print(f"  started {name:<8} (log: {logs / (name + '.log')})")
        yield
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=15)


def _follow(client: Client, job_id: str) -> None:
    shown: tuple[int, int] | None = None
    for event in client.watch_jobs(job_ids=[job_id]):
        kind = event.WhichOneof("payload")
        if kind == "progress":
            p = event.progress.progress
            if (p.entry_index, p.stage) != shown:
                shown = (p.entry_index, p.stage)
                stage = pipeline_pb2.StageType.Name(p.stage).removeprefix("STAGE_TYPE_").lower()
                print(f"    entry {p.entry_index + 1}/{p.entry_count}: {stage}")
        elif kind == "state_changed":
            change = event.state_changed
            state = job_pb2.JobState.Name(change.to_state).removeprefix("JOB_STATE_")
            print(f"    {state}: {change.reason}")
            if JobState(change.to_state).is_terminal:
                return


def _history_record(client: Client, job_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            job, transitions = client.history_job(job_id)
            if job.state.is_terminal or time.monotonic() > deadline:
                break
        except StableNewError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
    print(f"  history: {job.state.name}, {len(transitions)} transitions, "
          f"{sum(len(r.images) for r in job.results)} images recorded")


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    if not args.packs.is_dir():
        print(f"stablenew demo: no packs folder at {args.packs}", file=sys.stderr)
        return 2
    shutil.copytree(args.packs, data_dir / "packs", dirs_exist_ok=True)
    env = _environment(data_dir)
    print(f"StableNew demo in {data_dir}")
    with _services(env, data_dir / "logs"):
        client = Client(env)
        try:
            job_id = _run_pack(client, args.pack)
            _history_record(client, job_id)
            _print_locations(data_dir, job_id)
            if args.keep_running:
                _wait_for_ctrl_c()
        finally:
            client.close()
    return 0


def _wait_for_ctrl_c() -> None:
    print("  services keep running; Ctrl-C stops them")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print()


def _run_pack(client: Client, pack_id: str) -> str:
    draft = client.create_draft(f"demo: {pack_id}")
    draft = client.add_pack(draft.draft_id, pack_id)
    summary = draft.summary
    print(f"  draft: {summary.job_count} jobs, {summary.estimated_images} images, "
          f"{summary.stage_summary}")
    print(f"  first prompt: {summary.positive_preview}")
    previewed = list(client.preview(draft.draft_id))
    job = client.enqueue(draft.draft_id, request_id=f"demo/{draft.draft_id}")
    print(f"  queued job {job.job_id} ({len(previewed)} previewed = {job.entry_count} queued)")
    _follow(client, job.job_id)
    return job.job_id


def _print_locations(data_dir: Path, job_id: str) -> None:
    folders = sorted((data_dir / "images").glob(f"*/{job_id}"))
    print()
    print(f"Images:  {folders[0] if folders else data_dir / 'images'}")
    print(f"         (manifest: {folders[0] / 'manifest.json' if folders else 'none'})")
    print(f"History: {data_dir / 'history.sqlite3'} "
          f"(or: stablenew history export, with STABLENEW_HISTORY_ADDR set)")
