"""`stablenew history import` of the desktop app's history file (with malformed lines) and
`stablenew history export`, run as a user runs them (the CLI's main) against a real history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from stablenew.cli.main import main
from stablenew.contract.errors import Code
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2, pipeline_pb2
from tests.history.harness import HistoryHarness
from tests.history.queue_helpers import submit
from tests.queue.harness import QueueHarness
from tests.queue.protocol_runner import ProtocolRunner

SAMPLE = Path(__file__).parent / "data" / "desktop_history.jsonl"
MALFORMED = {5: "not JSON", 9: "not a JSON object", 12: "job_id", 13: "status",
             17: "created_at", 18: "run_mode", 21: "duration_ms"}
JOBS = ["f6c7d8e9", "e5a0b0c0", "d4b1c2e3", "c3d9e0f1", "b2e7aa10", "a1f0c2d4"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def served(archive: HistoryHarness, monkeypatch: pytest.MonkeyPatch) -> HistoryHarness:
    monkeypatch.setenv("STABLENEW_HISTORY_ADDR", archive.address)
    return archive


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        micros: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)


def test_import_reports_malformed_lines_and_imports_the_rest(
        served: HistoryHarness, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "import", str(SAMPLE))
    assert code == 1  # some lines were malformed
    assert "Traceback" not in err
    reported = {int(line.split(":")[1]): line for line in err.splitlines()
                if line.startswith(str(SAMPLE))}
    assert set(reported) == set(MALFORMED)
    for number, words in MALFORMED.items():
        assert f"{SAMPLE}:{number}: skipped: " in reported[number]
        assert words in reported[number], reported[number]
    assert f"{SAMPLE}: 6 jobs in 22 lines: 6 added, 0 updated, 0 unchanged" in out
    assert "7 malformed lines skipped" in out
    assert served.list_ids() == JOBS


def test_the_imported_records(served: HistoryHarness,
                              capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "history", "import", str(SAMPLE))
    old = served.get("a1f0c2d4")  # an older file's eight fields
    job = old.job
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert job.create_time.ToDatetime(tzinfo=UTC) == utc(2025, 5, 2, 8, 15, 0, 250000)
    assert job.start_time.ToDatetime(tzinfo=UTC) == utc(2025, 5, 2, 8, 15, 1, 500000)
    assert job.complete_time.ToDatetime(tzinfo=UTC) == utc(2025, 5, 2, 8, 16, 10)
    assert job.update_time == job.complete_time
    assert (job.runner_id, job.error_message, job.queue_position) == ("local", "", -1)
    assert job.payload_summary == "castle on a cliff, dramatic light | dreamshaper_8"
    assert job.origin.run_mode == job_pb2.RUN_MODE_UNSPECIFIED  # not in older files
    assert dict(job.metadata) == {"imported_from": "desktop-jsonl"}
    assert [(t.from_state, t.to_state, t.sequence) for t in old.transitions] == [
        (job_pb2.JOB_STATE_UNSPECIFIED, job_pb2.JOB_STATE_QUEUED, 0),
        (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING, 0),
        (job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_COMPLETED, 0)]
    assert [t.time for t in old.transitions] == [job.create_time, job.start_time,
                                                 job.complete_time]

    direct_pack = served.get("b2e7aa10").job  # the newer fields
    assert direct_pack.state == job_pb2.JOB_STATE_FAILED
    assert direct_pack.error_message == "WebUI returned 500: CUDA out of memory"
    assert direct_pack.origin.run_mode == job_pb2.RUN_MODE_DIRECT
    assert direct_pack.origin.prompt_source == pipeline_pb2.PROMPT_SOURCE_PACK
    assert direct_pack.origin.prompt_pack_id == "knights_v2"
    assert direct_pack.metadata["desktop.duration_ms"] == "107000"

    zoned = served.get("d4b1c2e3").job  # +02:00 becomes UTC; the result is kept
    assert zoned.create_time.ToDatetime(tzinfo=UTC) == utc(2025, 5, 5, 8, 0)
    assert json.loads(zoned.metadata["desktop.result"])["total_entries"] == 3
    started_running = served.get("e5a0b0c0").transitions  # no queued line
    assert [t.to_state for t in started_running] == [job_pb2.JOB_STATE_RUNNING,
                                                     job_pb2.JOB_STATE_COMPLETED]
    assert served.get("f6c7d8e9").job.state == job_pb2.JOB_STATE_QUEUED
    cancelled = served.get("c3d9e0f1").job
    assert (cancelled.state, cancelled.origin.run_mode) == (job_pb2.JOB_STATE_CANCELLED,
                                                            job_pb2.RUN_MODE_QUEUE)
    # The filters work on imported records too.
    assert served.list_ids(prompt_pack_id="knights_v2") == ["b2e7aa10"]
    assert served.list_ids(text="Neon City") == ["d4b1c2e3"]
    assert served.list_ids(run_mode=job_pb2.RUN_MODE_DIRECT) == ["b2e7aa10"]
    assert served.list_ids(states=[job_pb2.JOB_STATE_COMPLETED]) == ["e5a0b0c0", "d4b1c2e3",
                                                                     "a1f0c2d4"]


def test_importing_the_same_file_twice_changes_nothing(
        served: HistoryHarness, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "history", "import", str(SAMPLE))
    served.stub.UpdateJob(pb.UpdateJobRequest(job_id="a1f0c2d4", label="mine", bookmarked=True))
    first = tmp_path / "first.jsonl"
    assert run(capsys, "history", "export", "--out", str(first))[0] == 0
    code, out, _ = run(capsys, "history", "import", str(SAMPLE))
    assert code == 1
    assert "0 added, 0 updated, 6 unchanged" in out
    second = tmp_path / "second.jsonl"
    assert run(capsys, "history", "export", "--out", str(second))[0] == 0
    assert second.read_bytes() == first.read_bytes()
    assert served.get("a1f0c2d4").job.label == "mine"


def test_a_newer_file_updates_imported_records(
        served: HistoryHarness, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    older = tmp_path / "older.jsonl"
    older.write_text("\n".join(SAMPLE.read_text().splitlines()[:2]) + "\n")
    assert run(capsys, "history", "import", str(older))[0] == 0
    assert served.get("a1f0c2d4").job.state == job_pb2.JOB_STATE_RUNNING
    code, out, _ = run(capsys, "history", "import", str(SAMPLE))
    assert code == 1  # the sample's malformed lines
    assert "5 added, 1 updated, 0 unchanged" in out
    assert served.get("a1f0c2d4").job.state == job_pb2.JOB_STATE_COMPLETED
    assert len(served.get("a1f0c2d4").transitions) == 3


def imported(state: int = job_pb2.JOB_STATE_COMPLETED, to_state: int = job_pb2.JOB_STATE_COMPLETED
             ) -> pb.ImportedJob:
    record = pb.ImportedJob(job=job_pb2.Job(job_id="old", state=state))  # type: ignore[arg-type]
    record.job.create_time.FromDatetime(utc(2025, 1, 1))
    transition = record.transitions.add(to_state=to_state)
    transition.time.FromDatetime(utc(2025, 1, 1))
    return record


@pytest.mark.parametrize(("record", "field", "description"), [
    (imported(state=99), "jobs[1].job.state", "unknown value 99"),
    (imported(to_state=99), "jobs[1].transitions[0]", "99"),
])
def test_an_unknown_state_in_an_import_is_invalid_argument(
        archive: HistoryHarness, record: pb.ImportedJob, field: str, description: str) -> None:
    fine = imported()
    fine.job.job_id = "fine"
    with pytest.raises(grpc.RpcError) as caught:
        archive.stub.ImportHistory(pb.ImportHistoryRequest(jobs=[fine, record]), timeout=10)
    details = details_of(caught.value)
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == [field]
    assert description in details.violations[0].description
    assert archive.list_ids() == []


def test_reimporting_a_record_with_entries_and_results_leaves_it_unchanged(
        archive: HistoryHarness) -> None:
    record = imported()
    record.job.entries.add(index=0, prompt="a castle", seed=7,
                           stage_plan=[pipeline_pb2.STAGE_TYPE_TXT2IMG])
    result = record.job.results.add(entry_index=0, prompt="a castle",
                                    status=job_pb2.ENTRY_STATUS_COMPLETED)
    result.images.add(path="out/1.png", width=512, height=512, seed=7)
    result.duration.FromMilliseconds(1500)
    request = pb.ImportHistoryRequest(jobs=[record])
    first = archive.stub.ImportHistory(request, timeout=10)
    assert (first.added_count, first.updated_count, first.unchanged_count) == (1, 0, 0)
    again = archive.stub.ImportHistory(request, timeout=10)
    assert (again.added_count, again.updated_count, again.unchanged_count) == (0, 0, 1)
    record.job.entries[0].prompt = "a castle at night"
    changed = archive.stub.ImportHistory(pb.ImportHistoryRequest(jobs=[record]), timeout=10)
    assert (changed.added_count, changed.updated_count, changed.unchanged_count) == (0, 1, 0)
    assert archive.get("old").job.entries[0].prompt == "a castle at night"


def test_adetailer_outcomes_survive_get_export_and_import(archive: HistoryHarness) -> None:
    record = imported()
    result = record.job.results.add(entry_index=0, status=job_pb2.ENTRY_STATUS_COMPLETED)
    result.adetailer_outcomes.add(pass_index=0, model="face_yolov8n.pt", image_index=0,
                                  outcome=job_pb2.ADETAILER_OUTCOME_KIND_DETAILED)
    result.adetailer_outcomes.add(pass_index=1, model="hand_yolov8n.pt", image_index=0,
                                  outcome=job_pb2.ADETAILER_OUTCOME_KIND_NOTHING_DETECTED)
    archive.stub.ImportHistory(pb.ImportHistoryRequest(jobs=[record]), timeout=10)

    (got,) = archive.get("old").job.results
    assert list(got.adetailer_outcomes) == list(result.adetailer_outcomes)
    (exported,) = archive.stub.ExportHistory(pb.ExportHistoryRequest(), timeout=10)
    assert list(exported.job.results[0].adetailer_outcomes) == list(result.adetailer_outcomes)
    again = pb.ImportedJob(job=exported.job, transitions=exported.transitions)
    unchanged = archive.stub.ImportHistory(pb.ImportHistoryRequest(jobs=[again]), timeout=10)
    assert unchanged.unchanged_count == 1
    # An outcome is part of the record: another one updates it.
    again.job.results[0].adetailer_outcomes[1].outcome = (
        job_pb2.ADETAILER_OUTCOME_KIND_DETAILED)
    updated = archive.stub.ImportHistory(pb.ImportHistoryRequest(jobs=[again]), timeout=10)
    assert updated.updated_count == 1
    assert [o.outcome for o in archive.get("old").job.results[0].adetailer_outcomes] == [
        job_pb2.ADETAILER_OUTCOME_KIND_DETAILED] * 2


def test_export_writes_one_record_per_line(served: HistoryHarness,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    run(capsys, "history", "import", str(SAMPLE))
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    out_file = out_dir / "export.jsonl"
    code, _, err = run(capsys, "history", "export", "--out", str(out_file))
    assert code == 0 and f"exported 6 jobs to {out_file}" in err
    lines = out_file.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["job"]["job_id"] for r in records] == JOBS
    assert [len(r["transitions"]) for r in records] == [1, 2, 3, 2, 3, 3]
    assert records[-1]["job"]["state"] == "JOB_STATE_COMPLETED"
    code, stdout, _ = run(capsys, "history", "export")
    assert code == 0 and stdout.splitlines() == lines
    assert [p.name for p in out_dir.iterdir()] == ["export.jsonl"]  # no temporary left


def test_jobs_recorded_from_the_queue_are_never_overwritten(
        history: HistoryHarness, queue: QueueHarness, capsys: pytest.CaptureFixture[str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert queue.channel is not None
    monkeypatch.setenv("STABLENEW_HISTORY_ADDR", history.address)
    job_id = submit(queue.stub, prompts=("real",)).job_id
    assert ProtocolRunner(queue.channel, "gpu-1").run_one() is not None
    recorded = history.wait_state(job_id, job_pb2.JOB_STATE_COMPLETED)
    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"job_id": job_id, "created_at": "2025-01-01T00:00:00",
                                 "status": "failed", "payload_summary": "an old run"}) + "\n")
    code, out, _ = run(capsys, "history", "import", str(clash))
    assert code == 0
    assert "0 added, 0 updated, 0 unchanged, 1 already recorded from the queue" in out
    assert history.get(job_id) == recorded


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "history", "import", str(tmp_path / "missing.jsonl"))
    assert code == 1 and "cannot read" in err and "Traceback" not in err
    monkeypatch.setenv("STABLENEW_HISTORY_ADDR", "127.0.0.1:1")
    code, _, err = run(capsys, "history", "import", str(SAMPLE))  # 3: a service unreachable
    assert code == 3 and "history import failed: UNAVAILABLE" in err
    code, _, err = run(capsys, "history", "export", "--out", str(tmp_path / "x.jsonl"))
    assert code == 3 and "history export failed: UNAVAILABLE" in err
    assert not (tmp_path / "x.jsonl").exists()
    monkeypatch.setenv("STABLENEW_HISTORY_ADDR", "nonsense")
    code, _, err = run(capsys, "history", "export")
    assert code == 2 and "configuration error" in err
