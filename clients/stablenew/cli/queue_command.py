"""`stablenew queue ...`: the active queue (list, pause, resume, cancel, move, retry, runners)
and the durable consumers of its event log."""

from __future__ import annotations

import argparse

from stablenew.cli import text
from stablenew.cli.output import print_json, table
from stablenew.sdk import (
    Client,
    Consumer,
    Job,
    JobState,
    MovePosition,
    QueueState,
    Runner,
    WebuiState,
)

MOVES = ("front", "back", "up", "down")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `queue` to the command parser."""
    queue = commands.add_parser("queue", help="the active queue")
    actions = queue.add_subparsers(dest="queue_action", required=True, metavar="ACTION")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="one JSON object on stdout")

    listing = actions.add_parser("list", parents=[json_flag],
                                 help="running and queued jobs, in run order")
    listing.set_defaults(run=run_list)
    for action, helptext in (("pause", "hold back queued jobs (running and run-now go on)"),
                             ("resume", "lease queued jobs again")):
        parser = actions.add_parser(action, parents=[json_flag], help=helptext)
        parser.set_defaults(run=run_pause_or_resume)

    cancel = actions.add_parser("cancel", parents=[json_flag], help="cancel a job")
    cancel.add_argument("job", help="the job id")
    cancel.add_argument("--return", dest="return_to_queue", action="store_true",
                        help="a running job goes back to the queue instead of ending")
    cancel.set_defaults(run=run_cancel)

    move = actions.add_parser("move", parents=[json_flag], help="change a queued job's place")
    move.add_argument("job", help="the job id")
    move.add_argument("position", choices=MOVES)
    move.set_defaults(run=run_move)

    retry = actions.add_parser("retry", parents=[json_flag],
                               help="queue a finished job again, as a new job")
    retry.add_argument("job", help="the finished job's id")
    retry.add_argument("--failed-only", action="store_true",
                       help="only the entries that did not complete")
    retry.set_defaults(run=run_retry)

    runners = actions.add_parser("runners", parents=[json_flag],
                                 help="the runners the queue has seen recently")
    runners.set_defaults(run=run_runners)

    consumers = actions.add_parser(
        "consumers", help="the durable consumers of the event log (list, create, delete)")
    consumer_actions = consumers.add_subparsers(dest="consumer_action", required=True,
                                                metavar="ACTION")
    consumer_actions.add_parser("list", parents=[json_flag], help="every durable consumer"
                                ).set_defaults(run=run_consumers)
    create = consumer_actions.add_parser(
        "create", parents=[json_flag],
        help="register one: the events after --after are kept until it acknowledges them")
    create.add_argument("consumer", help="the consumer id")
    create.add_argument("--after", type=int, default=0, metavar="SEQUENCE",
                        help="keep the events after this sequence (default: all kept)")
    create.set_defaults(run=run_create_consumer)
    delete = consumer_actions.add_parser(
        "delete", help="remove one: the events it held are pruned as they age")
    delete.add_argument("consumer", help="the consumer id")
    delete.set_defaults(run=run_delete_consumer)


def _state_line(state: QueueState) -> str:
    counts = ", ".join(f"{count} {text.name(job_state)}"
                       for job_state, count in sorted(state.counts.items()) if count)
    left = f", about {text.duration(state.estimated_time_left)} left" \
        if state.estimated_time_left else ""
    unrunnable = (f", {state.unrunnable_job_count} job(s) no connected runner can run"
                  if state.unrunnable_job_count else "")
    return (f"queue {'PAUSED' if state.paused else 'running'}: {counts or 'no jobs'}, "
            f"{state.runner_count} runner(s){unrunnable}{left}")


def run_list(args: argparse.Namespace) -> int:
    """The queue's state, then its active jobs in run order."""
    with Client() as client:
        state = client.queue.state()
        jobs = list(client.queue.list())
    if args.json:
        print_json({"state": state, "jobs": jobs})
        return 0
    print(_state_line(state))
    table(([job.queue_position, *text.job_line(job), _now_text(job)] for job in jobs),
          ["POS", *text.JOB_HEADER, "PROGRESS"])
    return 0


def _now_text(job: Job) -> str:
    """A running job's progress; why a queued job is not running yet, when the queue says."""
    if job.state == JobState.QUEUED:
        return f"waiting: {job.waiting_reason}" if job.waiting_reason else ""
    return text.progress(job.progress) if job.progress.entry_count else ""


def run_pause_or_resume(args: argparse.Namespace) -> int:
    """Pause or resume; both are idempotent."""
    with Client() as client:
        state = client.queue.pause() if args.queue_action == "pause" else client.queue.resume()
    if args.json:
        print_json({"state": state})
    else:
        print(_state_line(state))
    return 0


def _print_job(job: Job, args: argparse.Namespace, what: str) -> None:
    if args.json:
        print_json({"job": job})
    else:
        print(f"job {job.job_id} {what}: {text.name(job.state)}"
              + (f", position {job.queue_position}" if job.state == JobState.QUEUED else ""))


def run_cancel(args: argparse.Namespace) -> int:
    """Cancel: a queued job at once, a running one through its runner."""
    with Client() as client:
        job = client.queue.cancel(args.job, return_to_queue=args.return_to_queue)
    pending = job.cancel_requested and not job.state.is_terminal
    _print_job(job, args, "cancel requested (its runner stops it)" if pending else "cancelled")
    return 0


def run_move(args: argparse.Namespace) -> int:
    """Move a queued job within its run mode."""
    with Client() as client:
        job = client.queue.move(args.job, MovePosition[args.position.upper()])
    _print_job(job, args, f"moved {args.position}")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    """A new job from a finished one."""
    with Client() as client:
        job = client.queue.retry(args.job, failed_only=args.failed_only)
    _print_job(job, args, f"queued (a retry of {args.job})")
    return 0


def run_runners(args: argparse.Namespace) -> int:
    """The runners with their WebUI's state, models and current job."""
    with Client() as client:
        runners = client.queue.runners()
    if args.json:
        print_json({"runners": runners})
        return 0
    table((_runner_line(runner) for runner in runners),
          ["RUNNER", "ADDRESS", "WEBUI", "LOADED MODEL", "LAST SEEN", "JOB", "PROGRESS",
           "HELD AHEAD"])
    if not runners:
        print("no runners seen recently")
    return 0


def _runner_line(runner: Runner) -> list[object]:
    """The job it runs and its progress (none before the first report), and the job it holds
    ahead; a runner that shut down or went silent is `stopped` or `lost`, with no jobs."""
    info = runner.info
    gone = "stopped" if info.stopped else "" if runner.connected else "lost"
    progress = runner.proto.HasField("progress") and runner.current_job_id
    return [info.runner_id, info.address or "-", gone or _webui_state(info.webui_state),
            info.loaded_model or "-", text.moment(runner.last_heartbeat_time),
            "-" if gone else runner.current_job_id or "idle",
            text.progress(runner.progress) if progress and not gone else "",
            "-" if gone else runner.held_job_id or "-"]


def _consumer_line(consumer: Consumer) -> list[object]:
    expires = "watching" if consumer.watching else text.moment(consumer.expire_time)
    return [consumer.consumer_id, consumer.acknowledged_sequence,
            text.moment(consumer.last_active_time), expires]


_CONSUMER_HEADER = ["CONSUMER", "ACKNOWLEDGED", "LAST ACTIVE", "EXPIRES"]


def run_consumers(args: argparse.Namespace) -> int:
    """The durable consumers by id."""
    with Client() as client:
        consumers = list(client.queue.consumers())
    if args.json:
        print_json({"consumers": consumers})
        return 0
    table((_consumer_line(consumer) for consumer in consumers), _CONSUMER_HEADER)
    if not consumers:
        print("no durable consumers")
    return 0


def run_create_consumer(args: argparse.Namespace) -> int:
    """Register a durable consumer."""
    with Client() as client:
        consumer = client.queue.create_consumer(args.consumer, after_sequence=args.after)
    if args.json:
        print_json({"consumer": consumer})
    else:
        print(f"consumer {consumer.consumer_id} created: the events after "
              f"{consumer.acknowledged_sequence} are kept until it acknowledges them "
              f"(expires {text.moment(consumer.expire_time)} unless active)")
    return 0


def run_delete_consumer(args: argparse.Namespace) -> int:
    """Remove a durable consumer."""
    with Client() as client:
        client.queue.delete_consumer(args.consumer)
    print(f"consumer {args.consumer} deleted")
    return 0


def _webui_state(state: WebuiState) -> str:
    """"disconnected"; "-" for a runner that does not announce it."""
    return "-" if state == WebuiState.UNSPECIFIED else text.name(state)
