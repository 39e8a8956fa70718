"""`stablenew history import FILE.jsonl` and `stablenew history export [--out FILE]`.

Both talk to the history service (STABLENEW_HISTORY_ADDR, or --address), so they work the same
against a local service and one in a container.

import: reads the desktop app's history file, reports every malformed line with its number on
standard error, sends the rest in batches and prints what happened. Importing the same file
again changes nothing. Exit code 0 when every line was imported, 1 when some lines were
malformed (the rest is imported) or the service failed.

export: every record with its transitions, one JSON object per line (the proto3 JSON form of
ExportHistoryResponse, field names as in the .proto), newest first. With --out the file appears
only once the export is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict

from stablenew.history import import_jsonl, mapping
from stablenew.runtime.channel import open_channel
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import history_service_pb2_grpc

IMPORT_BATCH = 500
EXIT_FAILED = 1
T = TypeVar("T")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser("history", help="import and export the job history")
    actions = history.add_subparsers(dest="history_action", required=True, metavar="ACTION")
    importer = actions.add_parser(
        "import", help="bring in the desktop app's history file (JSON lines)",
        description="Import the desktop app's history (one JSON line per status change; the "
        "latest line of a job wins). Malformed lines are reported with their numbers and "
        "skipped; importing the same file twice changes nothing. Exit code 1 if any line was "
        "malformed.")
    importer.add_argument("file", type=Path, help="the history .jsonl file")
    importer.add_argument("--address", help="the history service (default: "
                          "STABLENEW_HISTORY_ADDR)")
    importer.set_defaults(run=run_import)
    exporter = actions.add_parser("export", help="write every record as JSON lines")
    exporter.add_argument("--out", type=Path, help="the file to write (default: stdout)")
    exporter.add_argument("--address", help="the history service (default: "
                          "STABLENEW_HISTORY_ADDR)")
    exporter.set_defaults(run=run_export)


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _failed(action: str, error: grpc.RpcError) -> int:
    details = details_of(error)
    print(f"stablenew: history {action} failed: {details.code.name}: {details.message}",
          file=sys.stderr)
    return EXIT_FAILED


def run_import(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        parsed = import_jsonl.parse_file(path)
    except OSError as error:
        print(f"stablenew: cannot read {path}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    for problem in parsed.problems:
        print(f"{path}:{problem.line}: skipped: {problem.message}", file=sys.stderr)
    added = updated = unchanged = 0
    skipped: list[str] = []
    with open_channel("history", args.address) as channel:
        stub = history_service_pb2_grpc.HistoryServiceStub(channel)
        try:
            for batch in _batches(parsed.records, IMPORT_BATCH):
                reply = stub.ImportHistory(pb.ImportHistoryRequest(
                    jobs=[mapping.imported_to_proto(record) for record in batch]), timeout=120)
                added += reply.added_count
                updated += reply.updated_count
                unchanged += reply.unchanged_count
                skipped += reply.skipped_job_ids
        except grpc.RpcError as error:
            return _failed("import", error)
    print(f"{path}: {len(parsed.records)} jobs in {parsed.lines} lines: {added} added, "
          f"{updated} updated, {unchanged} unchanged, {len(skipped)} already recorded from the "
          f"queue (left as they are), {len(parsed.problems)} malformed lines skipped")
    return EXIT_FAILED if parsed.problems else 0


def _write_export(stub: history_service_pb2_grpc.HistoryServiceStub, out: IO[str]) -> int:
    count = 0
    for reply in stub.ExportHistory(pb.ExportHistoryRequest()):
        record = MessageToDict(reply, preserving_proto_field_name=True)
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def run_export(args: argparse.Namespace) -> int:
    out_path: Path | None = args.out
    with open_channel("history", args.address) as channel:
        stub = history_service_pb2_grpc.HistoryServiceStub(channel)
        try:
            if out_path is None:
                count = _write_export(stub, sys.stdout)
                sys.stdout.flush()
            else:
                count = _export_to_file(stub, out_path)
        except grpc.RpcError as error:
            return _failed("export", error)
        except OSError as error:
            print(f"stablenew: cannot write {out_path}: {error.strerror or error}",
                  file=sys.stderr)
            return EXIT_FAILED
    print(f"exported {count} jobs" + (f" to {out_path}" if out_path else ""), file=sys.stderr)
    return 0


def _export_to_file(stub: history_service_pb2_grpc.HistoryServiceStub, out_path: Path) -> int:
    """Write next to the target and rename once complete: no half-written export."""
    directory = out_path.resolve().parent
    handle, temporary = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            count = _write_export(stub, out)
        os.replace(temporary, out_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count
