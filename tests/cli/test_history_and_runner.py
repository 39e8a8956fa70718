"""`stablenew history ...`, `stablenew runner ...` and `stablenew health`: output, --json, the
filters and their bad values, export and import."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from tests.cli.cli_result import DETAILED, SCENES, Result
from tests.history.records import Records
from tests.runner.harness import EmulatorAdmin
from tests.service_harness import wait_for

RunCli = Callable[..., Result]
DESKTOP_LINES = [
    {"job_id": "desk-1", "created_at": "2025-05-02T08:15:00", "status": "queued",
     "payload_summary": "an imported castle"},
    {"job_id": "desk-1", "created_at": "2025-05-02T08:15:00", "status": "completed",
     "started_at": "2025-05-02T08:15:01", "completed_at": "2025-05-02T08:16:00"},
]


def recorded(cli: RunCli, label: str, pack: str = SCENES,
             state: str = "JOB_STATE_COMPLETED") -> str:
    """A job of the first row of `pack` with this label, once the history recorded it ended
    in `state`."""
    run = cli("run", pack, "--rows", "0", "--label", label, "--wait", "--json")
    if state == "JOB_STATE_COMPLETED":
        run.ok()
    job_id: str = run.json_lines()[-1]["job"]["job_id"]

    def in_history() -> bool:
        found = cli("history", "list", "--text", label, "--json").ok().json()["jobs"]
        return bool(found) and found[0]["state"] == state

    wait_for(in_history, f"the history to record {job_id} {state}")
    return job_id




def test_list_and_its_filters(cli: RunCli) -> None:
    job_id = recorded(cli, "filter-me")
    listed = cli("history", "list").ok()
    assert listed.out.splitlines()[0].split()[:2] == ["JOB", "STATE"]
    header, *lines = listed.out.splitlines()
    row = next(line.split() for line in lines if line.startswith(job_id))
    made = int(cli("history", "show", job_id, "--json").ok().json()["job"]["image_count"])
    assert made >= 1 and row[header.split().index("IMAGES")] == str(made)

    def ids(*filters: str) -> list[str]:
        jobs = cli("history", "list", "--json", "--limit", "0", *filters).ok().json()["jobs"]
        return [job["job_id"] for job in jobs]

    assert job_id in ids("--state", "completed", "--mode", "queue", "--source", "run",
                         "--pack", SCENES, "--text", "FILTER-ME", "--since", "1h")
    assert job_id in ids("--state", "failed,completed", "--until", "2999-01-01")
    assert job_id not in ids("--state", "failed")
    assert job_id not in ids("--mode", "direct")
    assert job_id not in ids("--until", "2000-01-01")
    assert job_id not in ids("--pack", "another-pack")
    assert len(ids("--limit", "1")) == 1
    assert "no jobs match" in cli("history", "list", "--text", "nothing-like-this").ok().out


def test_bad_filters_are_usage_errors(cli: RunCli) -> None:
    cli("history", "list", "--since", "last week").fails(2, "--since", "'last week'")
    cli("history", "list", "--state", "done").fails(2, "--state", "'done'")
    cli("history", "list", "--mode", "later").fails(2, "--mode")
    cli("history", "list", "--limit", "-1").fails(2, "--limit")
    cli("history", "list", "--since", "1h", "--until", "2h").fails(2, "INVALID_ARGUMENT")


def test_show_events_and_bookmark(cli: RunCli) -> None:
    job_id = recorded(cli, "show-me")
    shown = cli("history", "show", job_id).ok()
    record = cli("history", "show", job_id, "--json").ok().json()
    entry = record["job"]["entries"][0]
    assert f"#0 completed seed {entry['seed']} txt2img hash {entry['config_hash']}" in shown.out
    assert "EXECUTED A DIFFERENT CONFIG" not in shown.out
    assert f"{record['job']['image_count']} of " in shown.out.splitlines()[0]
    image = record["job"]["results"][0]["images"][0]["path"]
    assert f"image {image}" in shown.out
    assert [t["to_state"] for t in record["transitions"]] == [
        "JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_COMPLETED"]
    events = cli("history", "events", job_id).ok().out.splitlines()
    assert [line.split(maxsplit=3)[3].split(":")[0].split(" (")[0] for line in events] == [
        "submitted", "running", "completed"]
    listed = cli("history", "events", job_id, "--json").ok().json()
    assert (len(listed["events"]), listed["truncated_sequences"]) == (3, [])
    assert cli("history", "bookmark", job_id).ok().out == f"job {job_id} bookmarked\n"
    assert cli("history", "show", job_id, "--json").ok().json()["job"]["bookmarked"] is True
    assert "not bookmarked" in cli("history", "bookmark", job_id, "--off").ok().out
    for action in ("show", "events", "bookmark"):
        cli("history", action, "no-such-job").fails(2, "JOB_NOT_FOUND")


def test_adetailer_outcomes_are_recorded_and_a_pass_may_require_a_detection(
        cli: RunCli, emulator: EmulatorAdmin) -> None:
    # The pack's face pass says no detection is an error, its hand pass allows it.
    emulator.faults(adetailer_detect_nothing="hand")
    allowed = recorded(cli, "no-hands", DETAILED)
    shown = cli("history", "show", allowed).ok().out
    assert "adetailer pass 1 face_yolov8n.pt on image 0: detailed" in shown
    assert "adetailer pass 2 hand_yolov8n.pt on image 0: nothing-detected" in shown
    (result,) = cli("history", "show", allowed, "--json").ok().json()["job"]["results"]
    assert result["status"] == "ENTRY_STATUS_COMPLETED"
    assert [(o["model"], o["outcome"]) for o in result["adetailer_outcomes"]] == [
        ("face_yolov8n.pt", "ADETAILER_OUTCOME_KIND_DETAILED"),
        ("hand_yolov8n.pt", "ADETAILER_OUTCOME_KIND_NOTHING_DETECTED")]

    emulator.faults(adetailer_detect_nothing="face")
    refused = recorded(cli, "no-face", DETAILED, state="JOB_STATE_FAILED")
    (result,) = cli("history", "show", refused, "--json").ok().json()["job"]["results"]
    assert result["status"] == "ENTRY_STATUS_FAILED"
    assert ("ADetailer pass 1 ('face_yolov8n.pt') detected nothing on image 0"
            in result["error_message"])
    assert [(o["model"], o["outcome"]) for o in result["adetailer_outcomes"]] == [
        ("face_yolov8n.pt", "ADETAILER_OUTCOME_KIND_NOTHING_DETECTED")]


def test_events_the_history_trimmed_say_so(cli: RunCli, tmp_path: Path) -> None:
    # A history that may send 256 KiB a message, and a 40-entry job of about 800 kB: its
    # submission and its completion come without the entries or results that do not fit.
    records = Records(tmp_path / "data", env={"STABLENEW_MAX_MESSAGE_BYTES": str(256 * 1024)})
    try:
        job_id = records.add(prompts=tuple(f"prompt {n} " + "x" * 20_000 for n in range(40)))
        history = {"STABLENEW_HISTORY_ADDR": records.address}
        lines = cli("history", "events", job_id, **history).ok().out.splitlines()
        listed = cli("history", "events", job_id, "--json", **history).ok().json()
    finally:
        records.close()
    notes = [line.partition(" [")[2] for line in lines]
    assert re.fullmatch(r"trimmed: [1-9]\d* of 40 entries sent\]", notes[0]), lines
    assert notes[1] == "", lines
    assert re.fullmatch(r"trimmed: [1-9]\d* results sent\]", notes[2]), lines
    sequences = [event["sequence"] for event in listed["events"]]
    assert listed["truncated_sequences"] == [sequences[0], sequences[2]]


def test_export_then_import_and_a_desktop_file(cli: RunCli, tmp_path: Path) -> None:
    job_id = recorded(cli, "export-me")
    out = tmp_path / "history.jsonl"
    exported = cli("history", "export", "--text", "export-me", "--out", str(out)).ok()
    assert exported.err == f"exported 1 jobs to {out}\n"
    assert json.loads(out.read_text())["job"]["job_id"] == job_id
    back = cli("history", "import", str(out)).ok()
    assert "0 added, 0 updated, 0 unchanged, 1 already recorded from the queue" in back.out
    to_stdout = cli("history", "export", "--text", "export-me").ok()
    assert to_stdout.out == out.read_text()

    desktop = tmp_path / "desktop.jsonl"
    desktop.write_text("\n".join(json.dumps(line) for line in DESKTOP_LINES) + "\n{broken\n")
    imported = cli("history", "import", str(desktop))
    assert imported.code == 1, imported  # a malformed line: reported, the rest imported
    assert f"{desktop}:3: skipped: not JSON" in imported.err
    assert f"{desktop}: 1 jobs in 3 lines: 1 added" in imported.out
    assert "1 malformed lines skipped" in imported.out
    desk = cli("history", "show", "desk-1", "--json").ok().json()["job"]
    assert desk["state"] == "JOB_STATE_COMPLETED"
    cli("history", "import", str(tmp_path / "missing.jsonl")).fails(1, "cannot read")


def test_prune(cli: RunCli, tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join(json.dumps(line | {"job_id": "old-1"}) for line in DESKTOP_LINES))
    cli("history", "import", str(old)).ok()
    counted = cli("history", "prune", "--older-than", "2025-12-31", "--dry-run").ok()
    assert counted.out.endswith("would be removed\n")
    assert int(counted.out.split()[0]) >= 1
    assert cli("history", "prune", "--older-than", "2025-12-31", "--json").ok().json()[
        "removed_count"] >= 1
    cli("history", "show", "old-1").fails(2, "JOB_NOT_FOUND")
    cli("history", "prune", "--state", "sideways").fails(2, "--state")


def test_runner_status_and_capabilities(cli: RunCli) -> None:
    status = cli("runner", "status").ok()
    assert "WebUI ready" in status.out or "WebUI busy" in status.out
    assert cli("runner", "status", "--json").ok().json()["status"]["webui_url"].startswith(
        "http://127.0.0.1:")
    offered = cli("runner", "capabilities", "--refresh").ok()
    models = cli("runner", "capabilities", "--json").ok().json()["capabilities"]["models"]
    assert models and all(f"  {model['title']}" in offered.out for model in models)
    assert "samplers: " in offered.out


def test_health(cli: RunCli, cli_env: dict[str, str]) -> None:
    healthy = cli("health").ok()
    assert [line.split()[0] for line in healthy.out.splitlines()] == [
        "bundle", "queue", "runner", "history"]
    assert all(line.endswith("SERVING") for line in healthy.out.splitlines())
    report = cli("health", "--json", "queue").ok().json()
    assert report == {"services": [{"service": "queue", "address":
                                    cli_env["STABLENEW_QUEUE_ADDR"], "status": "SERVING"}]}
    cli("health", "nosuch").fails(2, "unknown service nosuch", "queue")
