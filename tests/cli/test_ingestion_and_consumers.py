"""`stablenew history ingestion`, `stablenew history quarantine` and `stablenew queue consumers
...`: output, --json, refusals and exit codes, on the session's deployment; the quarantine's
listing also on a history holding quarantined events (the deployment's has none: the queue
refuses whatever would poison it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from stablenew.v1 import job_pb2
from tests.cli.cli_result import Result
from tests.history.records import Records
from tests.service_harness import wait_for

RunCli = Callable[..., Result]


def test_ingestion_of_the_deployment(cli: RunCli) -> None:
    wait_for(lambda: cli("history", "ingestion", "--json").ok().json()["status"].get(
        "caught_up"), "the history to catch up")
    shown = cli("history", "ingestion").ok().out.splitlines()
    assert shown[0].startswith("ingestion caught up: recorded event ")
    assert shown[0].endswith("queue reachable")
    assert shown[-1] == "  0 quarantined event(s)"
    assert cli("history", "quarantine").ok().out == "no quarantined events\n"
    assert cli("history", "quarantine", "--json").ok().json() == {"events": []}
    cli("history", "quarantine", "--limit", "-1").fails(2, "--limit")


@pytest.fixture(scope="module")
def quarantining(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Records]:
    """A history (no ingestion) holding three quarantined events."""
    records = Records(tmp_path_factory.mktemp("quarantine") / "data")
    for sequence in (1, 2, 3):
        event = job_pb2.JobEvent(sequence=sequence, job_id=f"bad{sequence}")
        event.state_changed.to_state = 99  # type: ignore[assignment]
        records.core.quarantine(sequence, event.job_id, f"cannot read the event: {sequence}",
                                event.SerializeToString())
    yield records
    records.close()


def test_quarantined_events_are_listed(cli: RunCli, quarantining: Records) -> None:
    history = {"STABLENEW_HISTORY_ADDR": quarantining.address}
    listed = cli("history", "quarantine", **history).ok().out.splitlines()
    assert listed[0].split() == ["SEQUENCE", "JOB", "QUARANTINED", "ERROR"]
    assert [line.split()[:2] for line in listed[1:]] == [["1", "bad1"], ["2", "bad2"],
                                                         ["3", "bad3"]]
    assert listed[1].endswith("cannot read the event: 1")
    events = cli("history", "quarantine", "--limit", "2", "--json",
                 **history).ok().json()["events"]
    assert [(e["sequence"], e["event"]["state_changed"]["to_state"]) for e in events] == [
        ("1", 99), ("2", 99)]  # as the queue sent it: the unknown state number kept
    status = cli("history", "ingestion", **history).ok().out.splitlines()
    assert status[0] == "ingestion off: the history follows no queue; recorded up to event 3"
    assert status[-1] == "  3 quarantined event(s) (stablenew history quarantine)"


def test_ingestion_of_an_unreachable_history_exits_3(cli: RunCli) -> None:
    cli("history", "ingestion", STABLENEW_HISTORY_ADDR="127.0.0.1:1").fails(3, "UNAVAILABLE")


def test_consumers_create_list_delete(cli: RunCli) -> None:
    # The deployment's history registered itself.
    listed = cli("queue", "consumers", "list").ok().out.splitlines()
    assert listed[0].split() == ["CONSUMER", "ACKNOWLEDGED", "LAST", "ACTIVE", "EXPIRES"]
    assert any(line.split()[0] == "history" and line.endswith("watching")
               for line in listed[1:])
    created = cli("queue", "consumers", "create", "cli-probe", "--json").ok().json()
    assert created["consumer"]["consumer_id"] == "cli-probe"
    assert "expire_time" in created["consumer"]
    cli("queue", "consumers", "create", "cli-probe").fails(2, "CONSUMER_ALREADY_EXISTS")
    ids = [c["consumer_id"] for c in
           cli("queue", "consumers", "list", "--json").ok().json()["consumers"]]
    assert "cli-probe" in ids and "history" in ids
    assert cli("queue", "consumers", "delete", "cli-probe").ok().out == (
        "consumer cli-probe deleted\n")
    cli("queue", "consumers", "delete", "cli-probe").fails(2, "CONSUMER_NOT_FOUND")
    cli("queue", "consumers", "create", "x", "--after", "-1").fails(2, "after_sequence")
