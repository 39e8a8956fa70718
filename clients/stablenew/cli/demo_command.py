"""`stablenew demo`: the whole system on this machine with the built-in WebUI emulator.

Starts the emulator and the four services the way `stablenew up` does (its supervision: no
orphans, whatever happens), on free loopback ports, runs the example pack through draft ->
preview -> queue -> runner -> history, prints where the images and the history are, and stops
everything (or keeps it running with --keep-running, until Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from stablenew.cli import local, up_command
from stablenew.cli.output import EXIT_OK, CliError
from stablenew.cli.watch_command import follow, report
from stablenew.cli.watch_display import LinesDisplay
from stablenew.contract.endpoints import SERVICE_NAMES
from stablenew.sdk import Client, JobNotFoundError

HISTORY_WAIT_SECONDS = 30.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `demo` to the command parser."""
    demo = commands.add_parser("demo", help="run the example pack end to end with the emulator",
                               description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--data-dir", default=".stablenew/demo", type=Path,
                      help="databases, packs and images of the demo (default: %(default)s)")
    demo.add_argument("--packs", default="examples/packs", type=Path,
                      help="prompt packs to copy into the demo (default: %(default)s)")
    demo.add_argument("--pack", default="castles", help="the pack to run (default: %(default)s)")
    demo.add_argument("--keep-running", action="store_true",
                      help="leave the services running until Ctrl-C")
    demo.set_defaults(run=run)


def _environment(data_dir: Path) -> dict[str, str]:
    """This environment without its STABLENEW_* settings, on free ports, with a fast emulator."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STABLENEW_")}
    env |= {f"STABLENEW_{name.upper()}_ADDR": f"127.0.0.1:{local.free_port()}"
            for name in (*SERVICE_NAMES, "emulator")}
    return env | {"STABLENEW_PACKS_DIR": str(data_dir / "packs"),
                  "STABLENEW_EMULATOR_STEP_SECONDS": "0.01",
                  "STABLENEW_RUNNER_ID": "demo-runner"}


def run(args: argparse.Namespace) -> int:
    """The demo; exit code as `run --wait` (0 when the job completed)."""
    data_dir: Path = args.data_dir.resolve()
    if not args.packs.is_dir():
        raise CliError(f"no packs folder at {args.packs}")
    shutil.copytree(args.packs, data_dir / "packs", dirs_exist_ok=True)
    env = _environment(data_dir)
    deployment = up_command.plan(env, data_dir)
    print(f"StableNew demo in {data_dir}")
    try:
        with (up_command.stop_signals(),
              up_command.services_running(deployment, env, up_command.READY_SECONDS),
              Client(env=env) as client):
            up_command.print_deployment(deployment)
            code, job_id = _run_pack(client, args.pack)
            _print_locations(data_dir, job_id)
            if args.keep_running:
                print("services keep running; Ctrl-C stops them", flush=True)
                while True:
                    time.sleep(3600)
    except up_command.StopRequestedError:
        return EXIT_OK
    return code


def _run_pack(client: Client, pack_id: str) -> tuple[int, str]:
    draft = client.drafts.create(f"demo: {pack_id}")
    draft = client.drafts.add_pack(draft.draft_id, pack_id)
    preview = client.drafts.preview(draft.draft_id)
    summary = preview.summary
    print(f"draft: {summary.job_count} jobs, {summary.estimated_images} images, "
          f"{summary.stage_summary}; first prompt: {summary.positive_preview}")
    start = client.queue.state().last_sequence
    job = client.drafts.enqueue(draft.draft_id, expected_revision=preview.draft_revision,
                                request_id=f"demo/{draft.draft_id}")
    print(f"queued job {job.job_id} ({summary.job_count} previewed = {job.entry_count} queued)")
    code = report(follow(client, job.job_id, LinesDisplay(), start), json_output=False)
    _print_history(client, job.job_id)
    return code, job.job_id


def _print_locations(data_dir: Path, job_id: str) -> None:
    folders = sorted((data_dir / "images").glob(f"*/{job_id}"))
    print()
    print(f"Images:  {folders[0] if folders else data_dir / 'images'}")
    if folders:
        print(f"         (manifest: {folders[0] / 'manifest.json'})")
    print(f"History: {data_dir / 'history.sqlite3'} (or: stablenew history list, with the "
          "addresses above)")


def _print_history(client: Client, job_id: str) -> None:
    """The history's record, once it has caught up with the queue."""
    deadline = time.monotonic() + HISTORY_WAIT_SECONDS
    while True:
        try:
            record = client.history.get(job_id)
            if record.job.state.is_terminal:
                break
        except JobNotFoundError:
            pass
        if time.monotonic() > deadline:
            print("history: not recorded yet (see `stablenew history show`)")
            return
        time.sleep(0.2)
    images = sum(len(result.images) for result in record.job.results)
    print(f"history: {record.job.state.name.lower()}, {len(record.transitions)} transitions, "
          f"{images} images recorded")
