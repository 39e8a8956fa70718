"""`stablenew history ...`: the durable record of every job.

list/export take the same filters (--state, --mode, --source, --pack, --text, --since, --until;
times as 2026-12-01, 2026-12-01T14:30 or ago as 30m, 12h, 7d, 2w). export writes every matching
record as JSON lines (with --out the file appears only once complete); import reads such a file
back, or the desktop app's history file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format

from stablenew.cli import desktop_history, text
from stablenew.cli.output import (
    EXIT_FAILED,
    CliError,
    error_line,
    exit_code_for,
    print_json,
    table,
)
from stablenew.cli.watch_display import change_text
from stablenew.sdk import Client, HistoryRecord, JobEvent, StableNewError

T = TypeVar("T")

STATES = ("queued", "running", "completed", "failed", "cancelled")
MODES = ("direct", "queue")
SOURCES = ("run", "run-now", "add-to-queue")
AGO_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DEFAULT_LIMIT = 20


def moment(value: str) -> datetime | timedelta:
    """An argparse type: an ISO date or time (local time unless it names a zone), or an age."""
    ago = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if ago:
        return timedelta(**{AGO_UNITS[ago.group(2)]: float(ago.group(1))})
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a time (2026-12-01, 2026-12-01T14:30) nor an age "
            "(30m, 12h, 7d, 2w)") from None


def states(value: str) -> list[str]:
    """An argparse type: one state or several, comma-separated."""
    wanted = [item.strip().lower() for item in value.split(",") if item.strip()]
    unknown = [item for item in wanted if item not in STATES]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(f"{value!r}: states are {', '.join(STATES)}")
    return wanted


def _filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", type=states, action="extend", metavar="STATE[,STATE]",
                        help=f"only these states ({', '.join(STATES)}); repeatable")
    parser.add_argument("--mode", choices=MODES, help="only run-now (direct) or queued jobs")
    parser.add_argument("--source", choices=SOURCES, help="only jobs from this user action")
    parser.add_argument("--pack", help="only jobs with rows from this pack")
    parser.add_argument("--text", help="a piece of a prompt or the label (any case)")
    parser.add_argument("--since", type=moment, help="created at or after (a time, or an age)")
    parser.add_argument("--until", type=moment, help="created before (a time, or an age)")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"state": args.state, "run_mode": args.mode, "source": args.source,
            "pack": args.pack, "text": args.text, "since": args.since, "until": args.until}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `history` to the command parser."""
    history = commands.add_parser("history", help="the record of every job",
                                  description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = history.add_subparsers(dest="history_action", required=True, metavar="ACTION")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="one JSON object on stdout")

    listing = actions.add_parser("list", parents=[json_flag], help="jobs, newest first")
    _filter_options(listing)
    listing.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                         help="at most this many (0: all; default %(default)s)")
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", parents=[json_flag],
                              help="a job's record: entries, results, images, transitions")
    show.add_argument("job", help="the job id")
    show.set_defaults(run=run_show)

    events = actions.add_parser("events", parents=[json_flag],
                                help="a job's events as the queue logged them")
    events.add_argument("job", help="the job id")
    events.set_defaults(run=run_events)

    bookmark = actions.add_parser("bookmark", parents=[json_flag], help="bookmark a job")
    bookmark.add_argument("job", help="the job id")
    bookmark.add_argument("--off", action="store_true", help="remove the bookmark")
    bookmark.set_defaults(run=run_bookmark)

    exporter = actions.add_parser("export", help="write matching records as JSON lines")
    _filter_options(exporter)
    exporter.add_argument("--out", type=Path, help="the file to write (default: stdout)")
    exporter.set_defaults(run=run_export)

    importer = actions.add_parser(
        "import", help="read records back (an export, or the desktop app's history file)")
    importer.add_argument("file", type=Path, help="a .jsonl file")
    importer.set_defaults(run=run_import)

    ingestion = actions.add_parser(
        "ingestion", parents=[json_flag],
        help="how the history follows the queue: lag, the queue's reachability, the last error")
    ingestion.set_defaults(run=run_ingestion)

    quarantine = actions.add_parser("quarantine", parents=[json_flag],
                                    help="the queue's events the history could not record")
    quarantine.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                            help="at most this many, oldest first (0: all; default "
                                 "%(default)s)")
    quarantine.set_defaults(run=run_quarantine)

    prune = actions.add_parser("prune", parents=[json_flag], help="remove finished records")
    prune.add_argument("--older-than", type=moment, metavar="AGE_OR_TIME",
                       help="only jobs created before this (default: any age)")
    prune.add_argument("--state", type=states, action="extend", metavar="STATE[,STATE]",
                       help="only these states (default: completed, failed, cancelled)")
    prune.add_argument("--keep-bookmarked", action="store_true", help="leave bookmarked jobs")
    prune.add_argument("--dry-run", action="store_true", help="count only")
    prune.set_defaults(run=run_prune)


def run_list(args: argparse.Namespace) -> int:
    """Matching jobs, newest first, at most --limit."""
    limit = _limit(args)
    with Client() as client:
        found = client.history.list(**_filters(args))
        jobs = _first(found, limit)
    if args.json:
        print_json({"jobs": jobs})
        return 0
    table(([*text.job_line(job, images_made=True)[:6], text.moment(job.create_time),
            "*" if job.bookmarked else "", job.payload_summary] for job in jobs),
          [*text.JOB_HEADER[:6], "CREATED", "BOOKMARK", "SUMMARY"])
    if not jobs:
        print("no jobs match")
    return 0


def _limit(args: argparse.Namespace) -> int:
    """--limit, checked: 0 (all) or more."""
    if args.limit < 0:
        raise CliError(f"--limit {args.limit}: must be 0 (all) or more")
    limit: int = args.limit
    return limit


def _first(items: Iterable[T], limit: int) -> list[T]:
    """The first `limit` items (0: all), read before the client closes."""
    return list(islice(items, limit) if limit else items)


def run_ingestion(args: argparse.Namespace) -> int:
    """The ingestion's status; a read: exit 0 however far behind it is."""
    with Client() as client:
        status = client.history.ingestion()
    if args.json:
        print_json({"status": status})
        return 0
    if not status.enabled:
        print(f"ingestion off: the history follows no queue; recorded up to event "
              f"{status.recorded_sequence}")
    else:
        print(f"ingestion {'caught up' if status.caught_up else 'BEHIND'}: recorded event "
              f"{status.recorded_sequence} of {status.queue_last_sequence} "
              f"({status.lag_events} behind), acknowledged {status.acknowledged_sequence}; "
              f"queue {'reachable' if status.queue_reachable else 'UNREACHABLE'}")
    if status.last_error:
        print(f"  last error ({text.moment(status.last_error_time)}): {status.last_error}")
    print(f"  {status.quarantined_count} quarantined event(s)"
          + (" (stablenew history quarantine)" if status.quarantined_count else ""))
    return 0


def run_quarantine(args: argparse.Namespace) -> int:
    """The quarantined events, oldest first, at most --limit."""
    limit = _limit(args)
    with Client() as client:
        found = client.history.quarantined()
        events = _first(found, limit)
    if args.json:
        print_json({"events": events})
        return 0
    table(([event.sequence, event.job_id or "-", text.moment(event.quarantine_time),
            event.error] for event in events), ["SEQUENCE", "JOB", "QUARANTINED", "ERROR"])
    if not events:
        print("no quarantined events")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """One job's record."""
    with Client() as client:
        record = client.history.get(args.job)
    if args.json:
        print_json(record)
        return 0
    _print_record(record)
    return 0


def _print_record(record: HistoryRecord) -> None:
    job = record.job
    print(f"job {job.job_id}: {text.name(job.state)}, {text.name(job.origin.run_mode)}, "
          f"{text.count(job.entry_count, 'entry')}, {job.image_count} of "
          f"{text.count(job.estimated_images, 'image')} made"
          + (f", label {job.label!r}" if job.label else "") + (", bookmarked"
                                                                if job.bookmarked else ""))
    print(f"  created {text.moment(job.create_time)}, started {text.moment(job.start_time)}, "
          f"finished {text.moment(job.complete_time)}, runner {job.runner_id or '-'}")
    if job.error_message:
        print(f"  error: {job.error_message}")
    results = {result.entry_index: result for result in job.results}
    for entry in job.entries:
        result = results.get(entry.index)
        status = text.name(result.status) if result else "not run"
        print(f"  #{entry.index} {status} seed {entry.seed} {text.stages(entry.stage_plan)} "
              f"hash {entry.config_hash}")
        print(f"      {entry.prompt}")
        if result is None:
            continue
        if result.executed_config_hash and result.executed_config_hash != entry.config_hash:
            print(f"      EXECUTED A DIFFERENT CONFIG: {result.executed_config_hash}")
        if result.error_message:
            print(f"      error: {result.error_message}")
        for image in result.images:
            print(f"      image {image.path}")
        for outcome in result.adetailer_outcomes:
            print(f"      adetailer pass {outcome.pass_index + 1} {outcome.model} on image"
                  f" {outcome.image_index}: {text.name(outcome.outcome)}")
    print("  transitions:")
    for change in record.transitions:
        print(f"    {text.moment(change.time)} {text.name(change.from_state)} -> "
              f"{text.name(change.to_state)}" + (f": {change.reason}" if change.reason else ""))


def run_events(args: argparse.Namespace) -> int:
    """One job's events in sequence order; those the history trimmed say what they hold."""
    with Client() as client:
        events = list(client.history.events(args.job))
    if args.json:
        # As ListJobEvents names them (proto3 JSON: 64-bit integers as strings).
        print_json({"events": events,
                    "truncated_sequences": [str(e.sequence) for e in events if e.trimmed]})
        return 0
    for event in events:
        line = change_text(event)
        if line is not None:
            note = f" [{_trimmed_note(event)}]" if event.trimmed else ""
            print(f"{event.sequence:>8} {text.moment(event.time)} {line}{note}")
    return 0


def _trimmed_note(event: JobEvent) -> str:
    """What a trimmed event still holds: the history left out what did not fit a message."""
    if event.submitted is not None:
        return (f"trimmed: {len(event.submitted.entries)} of {event.submitted.entry_count} "
                "entries sent")
    results = event.state_changed.results if event.state_changed is not None else []
    return f"trimmed: {len(results)} results sent"


def run_bookmark(args: argparse.Namespace) -> int:
    """Set or remove the bookmark."""
    with Client() as client:
        job = client.history.update(args.job, bookmarked=not args.off)
    if args.json:
        print_json({"job": job})
    else:
        print(f"job {job.job_id} {'bookmarked' if job.bookmarked else 'not bookmarked'}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Remove (or count) records."""
    with Client() as client:
        count = client.history.prune(older_than=args.older_than, states=args.state,
                                     keep_bookmarked=args.keep_bookmarked,
                                     dry_run=args.dry_run)
    if args.json:
        print_json({"removed_count": count, "dry_run": args.dry_run})
    else:
        print(f"{count} jobs {'would be removed' if args.dry_run else 'removed'}")
    return 0


def _service_failure(action: str, error: StableNewError) -> CliError:
    return CliError(f"history {action} failed: {error_line(error)}", exit_code_for(error))


def run_export(args: argparse.Namespace) -> int:
    """Every matching record as one JSON line each."""
    out_path: Path | None = args.out
    with Client() as client:
        try:
            if out_path is None:
                count = client.history.export(sys.stdout, **_filters(args))
                sys.stdout.flush()
            else:
                with _replacing(out_path) as out:
                    count = client.history.export(out, **_filters(args))
        except StableNewError as error:
            raise _service_failure("export", error) from None
        except OSError as error:
            raise CliError(f"cannot write {out_path}: {error.strerror or error}",
                           EXIT_FAILED) from None
    print(f"exported {count} jobs" + (f" to {out_path}" if out_path else ""), file=sys.stderr)
    return 0


class _replacing:  # noqa: N801 - a context manager, like open()
    """A temporary file beside `path` that replaces it once complete: no half-written file."""

    def __init__(self, path: Path) -> None:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.resolve().parent)
        self._path, self._temporary = path, Path(name)
        self._file = os.fdopen(handle, "w", encoding="utf-8")

    def __enter__(self) -> Any:
        return self._file

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self._file.close()
        if kind is None:
            os.replace(self._temporary, self._path)
        else:
            self._temporary.unlink(missing_ok=True)


def _desktop_format(path: Path) -> bool:
    """Whether `path` is the desktop app's history (a line per status change) rather than an
    export (a line per job: {"job": ..., "transitions": [...]}), judged by its first line."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        first = next((line for line in lines if line.strip()), "")
    try:
        record = json.loads(first)
    except ValueError:
        return True  # the desktop reader reports malformed lines one by one
    return not (isinstance(record, dict) and "job" in record)


def _desktop_records(path: Path) -> tuple[io.StringIO, int, int, int]:
    """The desktop file as export lines (what the SDK imports); its malformed lines are
    reported on standard error. (lines, jobs, lines read, malformed lines)."""
    parsed = desktop_history.parse_file(path)
    for problem in parsed.problems:
        print(f"{path}:{problem.line}: skipped: {problem.message}", file=sys.stderr)
    lines = io.StringIO("".join(
        json_format.MessageToJson(record, indent=None) + "\n" for record in parsed.records))
    return lines, len(parsed.records), parsed.lines, len(parsed.problems)


def run_import(args: argparse.Namespace) -> int:
    """Import a file; exit 1 when some of its lines were malformed (the rest is imported)."""
    path: Path = args.file
    try:
        if _desktop_format(path):
            source, jobs, lines, malformed = _desktop_records(path)
        else:
            content = path.read_text(encoding="utf-8")
            lines = jobs = sum(1 for line in content.splitlines() if line.strip())
            source, malformed = io.StringIO(content), 0
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}", EXIT_FAILED) from None
    with Client() as client, source:
        try:
            result = client.history.import_(source)
        except StableNewError as error:
            raise _service_failure("import", error) from None
    print(f"{path}: {jobs} jobs in {lines} lines: {result.added_count} added, "
          f"{result.updated_count} updated, {result.unchanged_count} unchanged, "
          f"{len(result.skipped_job_ids)} already recorded from the queue (left as they are), "
          f"{malformed} malformed lines skipped")
    return EXIT_FAILED if malformed else 0
