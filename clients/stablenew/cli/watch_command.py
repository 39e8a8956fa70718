"""`stablenew watch [JOB]` and `stablenew run PACK`.

watch: live progress of every running job until Ctrl-C; with a job id, of that job until it
ends, exiting with its exit code (0 completed, 1 failed or cancelled).
run: a new draft with the pack's rows, enqueued as previewed; with `--wait`, watched until it
ends (exit code as watch JOB), else the job id is printed and the job goes on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import PurePosixPath

from stablenew.cli import draft_command, overrides, text
from stablenew.cli.output import EXIT_FAILED, EXIT_OK, print_json
from stablenew.cli.watch_display import Display, display_for
from stablenew.sdk import Client, Job, JobNotFoundError, JobSource, JobState


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `watch` and `run` to the command parser."""
    watch = commands.add_parser("watch", help="live progress of the running jobs (or one job)",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    watch.add_argument("job", nargs="?", help="follow this job until it ends")
    watch.add_argument("--json", action="store_true", help="every event as one JSON line")
    watch.set_defaults(run=run_watch)

    run = commands.add_parser("run", help="draft, enqueue and (with --wait) watch a pack",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    draft_command.add_pack_options(run)
    draft_command.enqueue_options(run)
    run.add_argument("--wait", action="store_true",
                     help="watch the job until it ends and exit with its exit code")
    run.add_argument("--json", action="store_true",
                     help="the job as JSON (with --wait: every event as a JSON line, then "
                     "the finished job)")
    run.set_defaults(run=run_pack)


def job_exit_code(job: Job) -> int:
    """0 for a completed job, 1 for a failed or cancelled one."""
    return EXIT_OK if job.state == JobState.COMPLETED else EXIT_FAILED


def current(client: Client, job_id: str) -> Job:
    """The job, full: from the queue, or from the history once the queue has let it go."""
    try:
        return client.queue.get(job_id)
    except JobNotFoundError:
        return client.history.get(job_id).job


def follow(client: Client, job_id: str, display: Display,
           after_sequence: int | None = None) -> Job:
    """Show the job's events until it ends; the finished job (full). Without
    `after_sequence`, from now on, after showing where the job stands."""
    try:
        if after_sequence is None:
            after_sequence = client.queue.state().last_sequence
            job = current(client, job_id)
            if job.state.is_terminal:
                return job
            display.running(job)
        for event in client.watch(after_sequence=after_sequence, job_ids=[job_id],
                                  reconnect_for=None):
            display.event(event)
            if event.state_changed is not None and event.state_changed.to_state.is_terminal:
                break
    finally:
        display.close()
    return current(client, job_id)


def report(job: Job, json_output: bool) -> int:
    """The finished job: its outcome and where its images are; its exit code."""
    if json_output:
        print_json({"job": job}, lines=True)
        return job_exit_code(job)
    images = [image.path for result in job.results for image in result.images]
    folders = sorted({str(PurePosixPath(path).parent) for path in images})
    done = sum(1 for result in job.results if result.status.name == "COMPLETED")
    where = (f" in {', '.join(folders)} (under the runner's output directory)" if folders
             else "")
    print(f"job {job.job_id} {text.name(job.state)}: {done}/{job.entry_count} entries, "
          f"{text.count(len(images), 'image file')}{where}")
    for result in job.results:
        if result.error_message:
            print(f"  entry {result.entry_index}: {text.name(result.status)}: "
                  f"{result.error_message}", file=sys.stderr)
    if job.error_message:
        print(f"stablenew: job {job.job_id} {text.name(job.state)}: {job.error_message}",
              file=sys.stderr)
    return job_exit_code(job)


def run_watch(args: argparse.Namespace) -> int:
    """Follow one job to its end, or every job until Ctrl-C."""
    display = display_for(args.json)
    with Client() as client:
        if args.job:
            return report(follow(client, args.job, display), args.json)
        try:
            start = client.queue.state().last_sequence
            for job in client.queue.list():
                display.running(job)
            for event in client.watch(after_sequence=start, reconnect_for=None):
                display.event(event)
        finally:
            display.close()
    return EXIT_OK


def run_pack(args: argparse.Namespace) -> int:
    """Draft, enqueue and, with --wait, watch."""
    settings = overrides.parse(args.settings) or None
    with Client() as client:
        start = client.queue.state().last_sequence  # the job's every event is watched
        draft = client.drafts.create(f"run {args.pack}")
        client.drafts.add_pack(draft.draft_id, args.pack, args.rows, args.prepend, settings)
        job = draft_command.enqueue(client, draft.draft_id, args, JobSource.RUN)
        if not args.wait:
            if args.json:
                print_json({"job": job})
            else:
                print(draft_command.describe_queued(job))
            return EXIT_OK
        if not args.json:
            print(draft_command.describe_queued(job), flush=True)
        return report(follow(client, job.job_id, display_for(args.json), start), args.json)
