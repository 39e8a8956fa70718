"""The queue and running-job panels' view models against a real queue, runner and emulator:
run order from the watch stream, the controls, progress and the newest image, and catching up
after the queue was gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stablenew.cli.local import free_port
from stablenew.gui.draft_model import DraftMemory, DraftModel
from stablenew.gui.pipeline_model import ManualPart
from stablenew.gui.queue_model import QueueModel
from stablenew.gui.running_model import RunningModel
from stablenew.sdk import Client, JobEvent, JobState, MovePosition, RunMode
from stablenew.sdk.types import read_event
from stablenew.v1 import job_pb2, queue_service_pb2
from tests.bundle_service.harness import unique
from tests.gui.harness import ModelHarness
from tests.queue.harness import QueueHarness
from tests.queue.protocol_runner import ProtocolRunner
from tests.sdk.harness import Stack


@pytest.fixture
def queue(models: ModelHarness) -> Iterator[QueueModel]:
    model = QueueModel(models.context)
    model.start()
    models.settle(lambda: model.loaded, "the queue to load")
    yield model
    model.stop()


def in_step(models: ModelHarness, queue: QueueModel, client: Client, what: str) -> None:
    """Wait until the model shows the queue's own list, in its order."""
    models.settle(lambda: queue.order == [job.job_id for job in client.queue.list()], what)


def test_the_list_follows_the_queue_in_run_order(models: ModelHarness, queue: QueueModel,
                                                 client: Client, stack: Stack,
                                                 paused: None) -> None:
    finished: list[JobEvent] = []
    queue.finished.connect(finished.append)
    first, second, third = (stack.queue.submit(label=unique("gui-q-")).job_id for _ in range(3))
    in_step(models, queue, client, "three submitted jobs")
    high = stack.queue.submit(priority=job_pb2.PRIORITY_HIGH).job_id
    in_step(models, queue, client, "a high-priority job ahead of them")
    assert queue.order.index(high) < queue.order.index(first)
    queue.move(third, MovePosition.FRONT)
    models.settle(lambda: queue.order[0] == third, "a job moved to the front")
    queue.move(third, MovePosition.DOWN)
    queue.move(first, MovePosition.BACK)
    models.settle(lambda: queue.order[-1] == first, "a job moved to the back")
    in_step(models, queue, client, "moved down and back")
    # A new normal job goes behind the jobs moved ahead of it, as the queue decides.
    last = stack.queue.submit().job_id
    in_step(models, queue, client, "a job submitted after the moves")
    assert queue.order[-1] in (last, first)
    queue.cancel(second)
    models.settle(lambda: second not in queue.items, "the cancelled job to leave")
    in_step(models, queue, client, "the list without it")
    assert [event.job_id for event in finished] == [second]
    assert finished[0].state_changed is not None
    assert finished[0].state_changed.to_state == JobState.CANCELLED
    assert "Cancel: job" in models.last_info()
    rows = queue.rows()
    assert [row.key for row in rows] == queue.order
    assert rows[0].values[0] == "1" and rows[0].tag in ("queued", "running")


def test_a_burst_of_submissions_ends_in_the_queue_s_order(
        models: ModelHarness, queue: QueueModel, client: Client, stack: Stack,
        paused: None) -> None:
    priorities = (job_pb2.PRIORITY_LOW, job_pb2.PRIORITY_NORMAL, job_pb2.PRIORITY_HIGH)
    submitted = [stack.queue.submit(priority=priorities[number % 3]).job_id
                 for number in range(30)]
    client.queue.move(submitted[3], MovePosition.FRONT)
    client.queue.move(submitted[10], MovePosition.BACK)
    submitted += [stack.queue.submit().job_id for _ in range(5)]
    in_step(models, queue, client, "the burst in the queue's order")
    assert set(submitted) <= set(queue.order)


def test_cancel_and_return_puts_the_running_job_back_and_a_job_moves_up(
        models: ModelHarness, queue: QueueModel, client: Client, stack: Stack,
        paused: None) -> None:
    """A running job cancelled and returned goes back to the queue where the queue puts it (an
    event does not say where: the model reads the list again), and "up" moves a job one place
    ahead, as the queue's own list shows."""
    stack.admin.faults(step_seconds=0.05)  # twenty steps an entry: the job runs a while
    try:
        returned = stack.queue.submit(entries=5, model="v1-5-pruned-emaonly.safetensors",
                                      label=unique("gui-return-")).job_id
        client.queue.resume()
        models.settle(lambda: returned in queue.items
                      and queue.items[returned].state == JobState.RUNNING, "the job to run")
        client.queue.pause()  # the returned job waits in the queue instead of running again
        behind = [stack.queue.submit(label=unique("gui-up-")).job_id for _ in range(2)]
        in_step(models, queue, client, "two jobs queued behind the running one")
        queue.cancel(returned, return_to_queue=True)
        models.settle(lambda: returned in queue.items
                      and queue.items[returned].state == JobState.QUEUED, "the job returned")
        in_step(models, queue, client, "the returned job where the queue put it")
        models.settle(lambda: "Cancel and return: job" in models.last_info(), "the answer")
        ahead = queue.order.index(behind[1]) - 1
        queue.move(behind[1], MovePosition.UP)
        models.settle(lambda: queue.order.index(behind[1]) == ahead, "a job moved up")
        in_step(models, queue, client, "the queue's order after the move")
    finally:
        stack.admin.faults(step_seconds=0.002)


def test_pause_and_resume_come_back_through_the_stream(models: ModelHarness,
                                                        queue: QueueModel, client: Client,
                                                        paused: None) -> None:
    models.settle(lambda: queue.paused, "the queue paused by the fixture")
    assert "PAUSED" in queue.summary()
    queue.toggle_pause()
    models.settle(lambda: not queue.paused, "the resume event")
    assert not client.queue.state().paused
    queue.toggle_pause()
    models.settle(lambda: queue.paused, "the pause event")
    assert client.queue.state().paused


def test_a_refused_control_says_why(models: ModelHarness, queue: QueueModel) -> None:
    queue.move("no-such-job", MovePosition.UP)
    models.settle(models.errors, "the refusal")
    assert "NOT_FOUND JOB_NOT_FOUND" in models.errors()[-1]


def test_the_running_job_its_progress_and_the_newest_image(
        models: ModelHarness, queue: QueueModel, stack: Stack, tmp_path: Path) -> None:
    running = RunningModel(models.context, queue)
    draft = DraftModel(models.context, DraftMemory(tmp_path / "state.json",
                                                   stack.bundle.address))
    draft.start()
    draft.add_part(ManualPart("a slow owl", "", {"stages": {"txt2img_enabled": True},
                                                 "txt2img": {"seed": 7, "steps": 8}}))
    models.settle(lambda: draft.can_enqueue() and not draft.busy, "the previewed part")
    stack.admin.faults(step_seconds=0.25)  # eight steps: progress shows between heartbeats
    try:
        draft.enqueue(RunMode.QUEUE)
        job = models.settle(lambda: running.job, "the job to run")
        assert running.headline().startswith(f"Running {job.job_id[:8]}")
        models.settle(lambda: "step" in running.detail(), "progress with steps")
        assert running.detail().startswith("entry 1 of 1 · txt2img · step ")
        models.settle(lambda: " · ETA " in running.detail(), "the time left, while sampling")
        assert 0.0 <= running.fraction() <= 1.0
        thumbnail = models.settle(lambda: running.thumbnail, "the newest image")
    finally:
        stack.admin.faults(step_seconds=0.002)
    assert job.job_id not in queue.items
    assert running.job is None and running.headline() == "Nothing running"
    assert thumbnail.path.split("/")[-2] == job.job_id and max(
        thumbnail.width, thumbnail.height) <= 112
    assert running.thumbnail_caption == "newest image · seed 7"


def test_the_thumbnail_is_the_running_jobs_own_newest_image(
        models: ModelHarness, queue: QueueModel, stack: Stack, tmp_path: Path) -> None:
    """The second entry hangs in the WebUI: while the job still runs, the panel shows the
    image its first entry wrote, read from the runner the progress names."""
    running = RunningModel(models.context, queue)
    draft = DraftModel(models.context, DraftMemory(tmp_path / "state.json",
                                                   stack.bundle.address))
    draft.start()
    for prompt, seed in (("a first heron", 11), ("a second heron", 12)):
        draft.add_part(ManualPart(prompt, "", {"stages": {"txt2img_enabled": True},
                                               "txt2img": {"seed": seed, "steps": 2}}))
    models.settle(lambda: draft.can_enqueue() and not draft.busy
                  and draft.summary is not None and draft.summary.job_count == 2,
                  "the previewed parts")
    stack.admin.faults(hang_next=1, hang_match="second heron")
    try:
        draft.enqueue(RunMode.QUEUE)
        job = models.settle(lambda: running.job, "the job to run")
        thumbnail = models.settle(lambda: running.thumbnail, "the running job's image")
        assert running.job is not None and running.job.job_id == job.job_id  # still running
        assert running.job.progress.entry_index == 1
    finally:
        stack.admin.faults(hang_next=0, release_hung=True)
    assert thumbnail.path == running.job.progress.latest_image.path
    assert thumbnail.path.split("/")[-2] == job.job_id
    assert running.thumbnail_caption == "newest image · seed 11"
    models.settle(lambda: running.job is None, "the job to end")


def test_repeated_and_unknown_events_change_nothing(models: ModelHarness) -> None:
    model = QueueModel(models.context)  # not started: events applied by hand
    job = job_pb2.Job(job_id="direct-1", state=job_pb2.JOB_STATE_QUEUED,
                      origin=job_pb2.JobOrigin(run_mode=job_pb2.RUN_MODE_DIRECT))
    submitted = read_event(job_pb2.JobEvent(
        sequence=1, job_id="direct-1", submitted=job_pb2.JobSubmittedEvent(job=job)))
    model.apply(submitted)
    model.apply(submitted)
    assert model.order == ["direct-1"]
    model.apply(read_event(job_pb2.JobEvent(sequence=2, job_id="direct-1",
                                            moved=job_pb2.JobMovedEvent(queue_position=9))))
    assert model.order == ["direct-1"]
    ended = read_event(job_pb2.JobEvent(sequence=3, job_id="elsewhere",
                                        state_changed=job_pb2.JobStateChangedEvent(
                                            from_state=job_pb2.JOB_STATE_RUNNING,
                                            to_state=job_pb2.JOB_STATE_FAILED)))
    model.apply(ended)
    model.apply(read_event(job_pb2.JobEvent(sequence=4, job_id="direct-1",
                                            progress=job_pb2.JobProgressEvent())))
    assert model.order == ["direct-1"]


def test_the_window_catches_up_after_the_queue_was_gone(tmp_path: Path, stack: Stack) -> None:
    port = free_port()
    server = QueueHarness(tmp_path / "queue", {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{port}"})
    server.start()
    models = ModelHarness({"bundle": stack.bundle.address, "queue": server.address,
                           "runner": stack.runner.address, "history": stack.history.address})
    queue = QueueModel(models.context)
    try:
        queue.start()
        before = server.submit(label="before").job_id
        models.settle(lambda: queue.order == [before], "the first job")
        server.stop()
        models.settle(lambda: models.connection.is_lost("queue"), "the queue to be lost")
        assert f"queue (127.0.0.1:{port})" in models.connection.banner()
        server.start()
        # Changes the window has not seen yet: it must replay them from its last event.
        after = server.submit(label="after").job_id
        server.stub.CancelJob(queue_service_pb2.CancelJobRequest(job_id=before), timeout=10)
        models.settle(lambda: queue.order == [after] and not models.connection.is_lost("queue"),
                      "the window to catch up")
        assert models.connection.banner() == ""
        state = server.stub.GetQueueState(queue_service_pb2.GetQueueStateRequest(),
                                          timeout=10).state
        models.settle(lambda: queue.last_sequence == state.last_sequence, "every event")
    finally:
        queue.stop()
        models.close()
        server.stop()


def test_a_queued_job_says_why_it_waits_and_the_reason_follows_the_runners(
        models: ModelHarness, queue: QueueModel, stack: Stack, paused: None) -> None:
    # A runner announcing a model comes and goes with no event: the reason still follows it.
    model = unique("gui-model-")
    job_id = stack.queue.submit(model=model).job_id
    nobody = f"no connected runner offers model '{model}'"

    def reason() -> str:
        item = queue.items.get(job_id)
        return item.waiting_reason if item is not None else ""

    models.settle(lambda: reason() == nobody, "the job to say no runner offers its model")
    assert f"waiting: {nobody}" in queue.rows()[queue.order.index(job_id)].values[3]
    assert stack.queue.channel is not None
    runner = ProtocolRunner(stack.queue.channel, unique("gui-runner-"), models=(model,))
    assert runner.lease() is None  # paused: it announces itself, and waits with the job
    models.settle(lambda: reason() == "the queue is paused", "the reason to follow the runner")
    runner.lease(stopped=True)
    models.settle(lambda: reason() == nobody, "the reason once the runner stopped")
