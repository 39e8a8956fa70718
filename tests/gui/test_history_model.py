"""The history panel's view model against the real history (fed by the real queue and runner):
newest first, filters, keyset paging, live records, and the selected job's record, images and
actions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stablenew.cli.local import free_port
from stablenew.gui import history_model
from stablenew.gui.history_model import (
    PAGE_SIZE,
    EntryLine,
    HistoryFilter,
    HistoryModel,
    _Listing,
    entry_lines,
)
from stablenew.history.servicer import HistoryServicer
from stablenew.sdk import AsyncClient, Client, Job, JobState
from stablenew.v1 import history_service_pb2, job_pb2
from tests.bundle_service.harness import unique
from tests.gui.conftest import addresses_of
from tests.gui.harness import ModelHarness, finished_job, import_jobs, sync_client
from tests.history.harness import HistoryHarness
from tests.sdk.harness import (
    PACK_ID,
    PACK_ROWS,
    Stack,
    place_only_on,
    second_runner,
    wait_announced,
)


@pytest.fixture
def opened(tmp_path: Path) -> list[Path]:
    return []


@pytest.fixture
def history(models: ModelHarness, tmp_path: Path,
            opened: list[Path]) -> Iterator[HistoryModel]:
    model = HistoryModel(models.context, tmp_path / "images", opened.append)
    model.start()
    models.settle(lambda: not model.loading, "the first page")
    yield model
    model.stop()


def loaded(models: ModelHarness, history: HistoryModel) -> None:
    models.settle(lambda: not history.loading, "a page of the history")


def test_newest_first_page_by_page(models: ModelHarness, history: HistoryModel,
                                   client: Client, tmp_path: Path) -> None:
    label = unique("gui-paging-")
    jobs = [finished_job(f"{label}-{n:03d}", n, label) for n in range(250)]
    import_jobs(client, tmp_path / "jobs.jsonl", jobs)
    history.set_filter(history.with_filter(text=label))
    loaded(models, history)
    newest = [f"{label}-{n:03d}" for n in reversed(range(250))]
    assert [job.job_id for job in history.jobs] == newest[:PAGE_SIZE]
    assert history.has_more
    history.load_more()
    loaded(models, history)
    history.load_more()
    loaded(models, history)
    assert [job.job_id for job in history.jobs] == newest
    assert not history.has_more
    row = history.rows()[0]
    assert row.key == newest[0] and row.tag == "completed"
    assert row.values[8] and row.values[9]  # started, completed: local times
    assert row.values[10:13] == ("2.0s", "completed", "0")  # imported without results


def test_filters(models: ModelHarness, history: HistoryModel, client: Client,
                 tmp_path: Path) -> None:
    label = unique("gui-filters-")
    pack = unique("gui-pack-")
    import_jobs(client, tmp_path / "jobs.jsonl", [
        finished_job(f"{label}-ok", 1, label),
        finished_job(f"{label}-failed", 2, label, state=job_pb2.JOB_STATE_FAILED),
        finished_job(f"{label}-pack", 3, label, pack=pack),
        finished_job(f"{label}-cancelled", 4, label, state=job_pb2.JOB_STATE_CANCELLED)])

    def shown(**changes: str) -> list[str]:
        history.set_filter(history.with_filter(text=label, **changes))
        loaded(models, history)
        return [job.job_id.removeprefix(f"{label}-") for job in history.jobs]

    assert shown() == ["cancelled", "pack", "failed", "ok"]
    assert shown(states="failed") == ["failed"]
    assert shown(states="completed") == ["pack", "ok"]
    assert shown(states="finished", prompt_source="pack") == ["pack"]
    assert shown(prompt_source="manual") == ["cancelled", "failed", "ok"]
    assert shown(prompt_source="manual and pack", pack=pack) == ["pack"]


def test_a_finished_job_appears_at_once(models: ModelHarness, history: HistoryModel,
                                        client: Client) -> None:
    label = unique("gui-live-")
    job = client.run_pack(PACK_ID, label=label, timeout=60)
    shown = models.settle(lambda: next((j for j in history.jobs if j.job_id == job.job_id),
                                       None), "the finished job in the history")
    assert shown.state == JobState.COMPLETED
    assert history.jobs[0].create_time is not None and shown.create_time is not None
    assert history.jobs.index(shown) == 0 or history.jobs[0].create_time >= shown.create_time


def test_the_selected_job_its_images_and_the_actions(
        models: ModelHarness, history: HistoryModel, client: Client, opened: list[Path],
        paused: None) -> None:
    label = unique("gui-selected-")
    job = client.history.get(_run(client, label)).job
    history.set_filter(history.with_filter(text=label))
    loaded(models, history)
    history.select(job.job_id)
    record = models.settle(lambda: history.record, "the record")
    assert entry_lines(record) == [
        EntryLine(index, prompt, job.entries[index].seed, "completed", 1, "")
        for index, prompt in enumerate(PACK_ROWS)]
    assert "completed" in history.details() and job.config_hash[:16] in history.details()
    assert history.rows()[0].values[12] == str(len(PACK_ROWS))  # the images made, one a row
    thumbnails = models.settle(lambda: history.thumbnails, "the thumbnails")
    assert [t.path for t in thumbnails] == [r.images[0].path for r in job.results]

    history.toggle_bookmark()
    models.settle(lambda: history.rows()[0].values[0].startswith("★ "), "the bookmark")
    history.set_label(f"{label} keeper")
    models.settle(lambda: history.jobs[0].label == f"{label} keeper", "the label")
    models.settle(lambda: f"label '{label} keeper'" in history.details(), "the label shown")
    assert client.history.get(job.job_id).job.bookmarked

    history.retry(failed_only=True)
    models.settle(models.errors, "the refused retry")
    assert "ILLEGAL_TRANSITION" in models.errors()[-1]
    history.retry(failed_only=False)
    models.settle(lambda: models.last_info().startswith("Retrying every entry"), "the retry")
    retried = [j for j in client.queue.list() if j.origin.retry_of_job_id == job.job_id]
    assert len(retried) == 1

    history.open_folder()
    folder = models.settle(lambda: opened[0] if opened else None, "the image folder")
    assert sorted(path.name for path in folder.glob("*.png")) == sorted(
        r.images[0].path.rsplit("/", 1)[-1] for r in job.results)


def test_thumbnails_are_read_from_the_runner_that_wrote_each_image(
        models: ModelHarness, history: HistoryModel, client: Client, stack: Stack,
        tmp_path: Path) -> None:
    label = unique("gui-runners-")
    made = client.run_pack(PACK_ID, rows=[0], run_mode="direct", timeout=60)
    first = made.results[0].images[0]  # written by the stack's runner, the only one yet
    assert first.runner_id == stack.runner.runner_id
    other = second_runner(tmp_path / "second", stack)
    with other.running():
        wait_announced(client, other)
        elsewhere = f"elsewhere/{label}.png"  # a file the second runner alone holds
        place_only_on(other, elsewhere, client.runner.read_image(first.path))
        record = finished_job(label, 1, label)
        result = record.results.add(entry_index=0, status=job_pb2.ENTRY_STATUS_COMPLETED)
        result.images.add(path=first.path, runner_id=first.runner_id)
        result.images.add(path=elsewhere, runner_id=other.runner_id)
        import_jobs(client, tmp_path / "runners.jsonl", [record])
        history.set_filter(history.with_filter(text=label))
        loaded(models, history)
        history.select(label)
        thumbnails = models.settle(lambda: history.thumbnails, "the thumbnails")
    assert [t.path for t in thumbnails] == [first.path, elsewhere]
    assert not models.errors()


def _run(client: Client, label: str) -> str:
    """A completed job of the test pack's three rows (the queue is paused: run now)."""
    finished: Job = client.run_pack(PACK_ID, label=label, run_mode="direct", timeout=60)
    assert finished.state == JobState.COMPLETED
    return finished.job_id


def test_a_record_written_once_the_first_page_is_read_is_not_missed(
        models: ModelHarness, client: Client, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first page is read only once the history confirmed the watch: a record written
    right after the page was read (before the panel has it) still reaches the panel."""
    label = unique("gui-window-")
    written: list[str] = []
    read_page = _Listing.next_page

    async def read_then_write(listing: _Listing, reader: AsyncClient) -> tuple[list[Job], bool]:
        page = await read_page(listing, reader)
        if not written:
            import_jobs(client, tmp_path / "window.jsonl", [finished_job(label, 1, label)])
            written.append(label)
        return page
    monkeypatch.setattr(_Listing, "next_page", read_then_write)
    history = HistoryModel(models.context, tmp_path / "images", lambda folder: None)
    try:
        history.set_filter(HistoryFilter(text=label))
        models.settle(lambda: [job.job_id for job in history.jobs] == written == [label],
                      "the record written after the first page")
    finally:
        history.stop()


def test_the_list_is_read_again_when_the_history_is_back(stack: Stack, tmp_path: Path) -> None:
    server = HistoryHarness(tmp_path / "history", env={
        "STABLENEW_HISTORY_ADDR": f"127.0.0.1:{free_port()}", "STABLENEW_HISTORY_INGEST": "off"})
    server.start()
    addresses = addresses_of(stack) | {"history": server.address}
    models, writer = ModelHarness(addresses), sync_client(addresses)
    history = HistoryModel(models.context, tmp_path / "images", lambda folder: None)
    try:
        history.start()
        loaded(models, history)  # the list read and the watch open, as a user would find it
        import_jobs(writer, tmp_path / "first.jsonl", [finished_job("before", 1, "gone")])
        models.settle(lambda: [job.job_id for job in history.jobs] == ["before"], "a record")
        server.stop()
        models.settle(lambda: models.connection.is_lost("history"), "the history to be lost")
        server.start()
        import_jobs(writer, tmp_path / "second.jsonl", [finished_job("after", 2, "back")])
        models.settle(lambda: [job.job_id for job in history.jobs] == ["after", "before"]
                      and not models.connection.is_lost("history"), "the list read again")
    finally:
        history.stop()
        writer.close()
        models.close()
        server.stop()


def test_a_history_that_never_confirms_the_watch_is_read_after_a_bounded_wait(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A history server from before `confirm_subscription` drops the field it does not know and
    never sends the confirmation: the panel reads its list anyway after a bounded wait, says
    so once, reads the next lists of that server at once, and still follows the watch."""
    watch = HistoryServicer.WatchHistory

    def older(servicer: HistoryServicer, request: history_service_pb2.WatchHistoryRequest,
              context: grpc.ServicerContext) -> Iterator[history_service_pb2.WatchHistoryResponse]:
        unknown = history_service_pb2.WatchHistoryRequest()
        unknown.CopyFrom(request)
        unknown.ClearField("confirm_subscription")
        return watch(servicer, unknown, context)
    monkeypatch.setattr(HistoryServicer, "WatchHistory", older)  # bound when a server starts
    monkeypatch.setattr(history_model, "CONFIRM_WAIT_SECONDS", 0.2)
    server = HistoryHarness(tmp_path / "history", env={"STABLENEW_HISTORY_INGEST": "off"})
    addresses = addresses_of(stack) | {"history": server.start().address}
    models, writer = ModelHarness(addresses), sync_client(addresses)
    import_jobs(writer, tmp_path / "before.jsonl", [finished_job("before", 1, "older")])
    history = HistoryModel(models.context, tmp_path / "images", lambda folder: None)

    def notices() -> list[str]:
        return older_server_notices(models)
    try:
        history.start()
        models.settle(lambda: [job.job_id for job in history.jobs] == ["before"],
                      "the list read without a confirmation")
        assert len(notices()) == 1 and "F5" in notices()[0]
        history.set_filter(HistoryFilter(states="all"))
        models.settle(lambda: [job.job_id for job in history.jobs] == ["before"]
                      and not history.loading, "the next list, read at once")
        import_jobs(writer, tmp_path / "after.jsonl", [finished_job("after", 2, "older")])
        models.settle(lambda: [job.job_id for job in history.jobs] == ["after", "before"],
                      "a record on the watch")
        assert len(notices()) == 1
    finally:
        history.stop()
        writer.close()
        models.close()
        server.stop()


def older_server_notices(models: ModelHarness) -> list[str]:
    """The status lines that took the history for a server that does not confirm watches."""
    return [m.text for m in models.messages if "did not confirm its watch" in m.text]


def test_an_unreachable_history_is_not_taken_for_an_older_one(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No confirmation comes from a history that is not there: the window waits for it to be
    back (banner), and then reads the list once the history confirms its watch."""
    monkeypatch.setattr(history_model, "CONFIRM_WAIT_SECONDS", 0.2)
    address = f"127.0.0.1:{free_port()}"
    addresses = addresses_of(stack) | {"history": address}
    models = ModelHarness(addresses)
    history = HistoryModel(models.context, tmp_path / "images", lambda folder: None)
    server = HistoryHarness(tmp_path / "history", env={
        "STABLENEW_HISTORY_ADDR": address, "STABLENEW_HISTORY_INGEST": "off"})
    try:
        history.start()
        models.settle(lambda: models.connection.is_lost("history"), "the history to be lost")
        waited: list[bool] = []
        models.backend.after(1.0, lambda: waited.append(True))  # well past the wait
        models.settle(lambda: waited, "the wait for a confirmation to pass")
        server.start()
        with sync_client(addresses) as writer:
            import_jobs(writer, tmp_path / "back.jsonl", [finished_job("back", 1, "back")])
        models.settle(lambda: [job.job_id for job in history.jobs] == ["back"]
                      and not models.connection.is_lost("history"), "the list once it is back")
        assert older_server_notices(models) == []
    finally:
        history.stop()
        models.close()
        server.stop()
