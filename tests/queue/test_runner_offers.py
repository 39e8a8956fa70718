"""What runners announce and what the queue makes of it: a job goes to a runner whose WebUI has
its model by any name the WebUI resolves; a queued job no connected runner can run says why
(GetJob, ListJobs) and is counted apart in GetQueueState, without an estimate; ListRunners shows
what each runner offers, whether it is connected and the state of its WebUI (a runner whose
WebUI is down leases nothing); a runner that goes quiet stops counting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.contract.model import WebuiState
from stablenew.queue.store import MIGRATIONS, QueueStore
from stablenew.runtime.rich_status import details_of
from stablenew.runtime.sqlite_db import open_database
from stablenew.sdwebui.model_matching import (
    ModelEntry,
    checkpoint_names,
    find_model,
    has_checkpoint,
)
from stablenew.v1 import job_pb2, runner_service_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness, make_entry, origin
from tests.queue.protocol_runner import ProtocolRunner
from tests.service_harness import wait_for

TITLE = "sd_xl_base_1.0.safetensors [31e35c80fc]"
CAPABILITIES = runner_service_pb2.Capabilities(
    models=[runner_service_pb2.ModelInfo(title=TITLE, model_name="sd_xl_base_1.0",
                                         hash="31e35c80fc")],
    vaes=["sdxl_vae.safetensors"], samplers=["Euler a", "DPM++ 2M"], schedulers=["karras"],
    scheduler_infos=[runner_service_pb2.SchedulerInfo(name="karras", label="Karras")],
    upscalers=["None", "Lanczos"], latent_upscale_modes=["Latent"],
    adetailer_models=["face_yolov8n.pt"])


def _announce(queue: QueueHarness, runner_id: str, models: tuple[str, ...] = (),
              capabilities: runner_service_pb2.Capabilities | None = None,
              webui_state: runner_service_pb2.WebuiState.ValueType = (
                  runner_service_pb2.WEBUI_STATE_UNSPECIFIED)) -> pb.LeaseJobResponse:
    """A lease request that returns at once: the runner is registered, and leases what it can."""
    info = pb.RunnerInfo(runner_id=runner_id, host="gpu-host", models=list(models),
                         webui_state=webui_state)
    if capabilities is not None:
        info.capabilities.CopyFrom(capabilities)
    reply: pb.LeaseJobResponse = queue.stub.LeaseJob(pb.LeaseJobRequest(runner=info), timeout=10)
    return reply


def _reasons(queue: QueueHarness) -> dict[str, str]:
    jobs = queue.stub.ListJobs(pb.ListJobsRequest(page_size=1000), timeout=10).jobs
    return {job.job_id: job.waiting_reason for job in jobs}


def _state(queue: QueueHarness) -> pb.QueueState:
    return queue.stub.GetQueueState(pb.GetQueueStateRequest(), timeout=10).state


def test_a_queued_job_says_why_no_runner_takes_it(queue: QueueHarness) -> None:
    sdxl = queue.submit(model="sdxl").job_id
    assert queue.get(sdxl).waiting_reason == "no runner is connected"
    assert (_state(queue).unrunnable_job_count, _state(queue).runner_count) == (1, 0)

    assert not _announce(queue, "small", models=("sd15",)).HasField("lease")

    assert queue.get(sdxl).waiting_reason == "no connected runner offers model 'sdxl'"
    queue.stub.PauseQueue(pb.PauseQueueRequest(), timeout=10)
    sd15 = queue.submit(model="sd15").job_id
    direct = queue.submit(model="sd15", run_mode=job_pb2.RUN_MODE_DIRECT).job_id
    assert _reasons(queue) == {direct: "", sdxl: "no connected runner offers model 'sdxl'",
                               sd15: "the queue is paused"}
    state = _state(queue)
    assert (state.paused, state.runner_count, state.unrunnable_job_count) == (True, 1, 1)


def test_a_job_needing_models_no_single_runner_has_says_so(queue: QueueHarness) -> None:
    entries = [make_entry(0, "sd15"), make_entry(1, "sdxl")]
    job = queue.stub.SubmitJob(pb.SubmitJobRequest(entries=entries, origin=origin()),
                               timeout=10).job
    _announce(queue, "small", models=("sd15",))
    _announce(queue, "big", models=("sdxl",))
    assert queue.get(job.job_id).waiting_reason == (
        "no connected runner offers all of its models 'sd15', 'sdxl'")


def test_a_model_matches_the_checkpoints_a_runner_offers_by_any_name(
        queue: QueueHarness) -> None:
    names = [TITLE, "sd_xl_base_1.0", "sd_xl_base_1.0.safetensors", "31e35c80fc",
             "sd_xl_base_1.0.safetensors [0000000000]"]
    jobs = [queue.submit(model=name).job_id for name in names]
    other = queue.submit(model="sd_xl_refiner_1.0").job_id
    assert set(_reasons(queue).values()) == {"no runner is connected"}

    leased = [_announce(queue, "sdxl-box", capabilities=CAPABILITIES).job.job_id
              for _ in names]

    assert leased == jobs
    assert not _announce(queue, "sdxl-box", capabilities=CAPABILITIES).HasField("lease")
    assert _reasons(queue) == {**dict.fromkeys(jobs, ""),
                               other: "no connected runner offers model 'sd_xl_refiner_1.0'"}


def test_list_runners_shows_what_each_runner_offers_also_after_a_restart(
        queue: QueueHarness) -> None:
    _announce(queue, "with", models=("sd_xl_base_1.0",), capabilities=CAPABILITIES)
    _announce(queue, "without", models=("sd15",))

    def runners() -> dict[str, pb.Runner]:
        reply = queue.stub.ListRunners(pb.ListRunnersRequest(), timeout=10)
        return {runner.info.runner_id: runner for runner in reply.runners}

    before = runners()
    queue.restart()
    for listed in (before, runners()):
        assert listed["with"].info.capabilities == CAPABILITIES
        assert not listed["without"].info.HasField("capabilities")
        assert listed["with"].connected and listed["without"].connected
    assert _state(queue).runner_count == 2


def _listed_states(queue: QueueHarness) -> dict[str, int]:
    reply = queue.stub.ListRunners(pb.ListRunnersRequest(), timeout=10)
    return {runner.info.runner_id: runner.info.webui_state for runner in reply.runners}


@pytest.mark.parametrize("down", [runner_service_pb2.WEBUI_STATE_DISCONNECTED,
                                  runner_service_pb2.WEBUI_STATE_STARTING,
                                  runner_service_pb2.WEBUI_STATE_ERROR])
def test_a_runner_whose_webui_cannot_run_is_listed_so_and_leases_nothing(
        queue: QueueHarness, down: runner_service_pb2.WebuiState.ValueType) -> None:
    job = queue.submit(model="sd15").job_id

    assert not _announce(queue, "down", models=("sd15",), webui_state=down).HasField("lease")

    assert _listed_states(queue)["down"] == down
    waiting = queue.get(job)
    assert (waiting.state, waiting.waiting_reason) == (
        job_pb2.JOB_STATE_QUEUED, "no connected runner that can run it has its WebUI ready")
    assert _state(queue).unrunnable_job_count == 1
    # The same runner once its WebUI answers: it leases, and holding the job it shows busy.
    ready = _announce(queue, "down", models=("sd15",),
                      webui_state=runner_service_pb2.WEBUI_STATE_READY)
    assert ready.job.job_id == job
    assert _listed_states(queue)["down"] == runner_service_pb2.WEBUI_STATE_BUSY
    queue.restart()
    assert _listed_states(queue)["down"] == runner_service_pb2.WEBUI_STATE_BUSY


def test_an_unknown_webui_state_is_invalid_argument(queue: QueueHarness) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _announce(queue, "odd", webui_state=99)  # type: ignore[arg-type]

    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_FIELD")
    assert [v.field for v in details.violations] == ["runner.webui_state"]
    assert "unknown value 99" in details.violations[0].description


def test_a_runner_that_goes_quiet_stops_counting(short_lease_queue: QueueHarness) -> None:
    queue = short_lease_queue
    job = queue.submit(model="sdxl").job_id
    _announce(queue, "gone", models=("sd15",))

    def quiet() -> bool:
        (runner,) = queue.stub.ListRunners(pb.ListRunnersRequest(), timeout=10).runners
        return not runner.connected

    wait_for(quiet, "the runner to count as gone")
    assert queue.get(job).waiting_reason == "no runner is connected"
    assert _state(queue).runner_count == 0


def test_the_estimate_leaves_out_jobs_no_runner_can_run(queue: QueueHarness) -> None:
    queue.submit(model="sd15")
    assert queue.channel is not None
    runner = ProtocolRunner(queue.channel, "small")
    assert runner.run_one() is not None  # the queue now knows seconds per image
    queue.submit(model="sdxl", entries=3)
    alone = _state(queue)
    assert alone.unrunnable_job_count == 1
    assert alone.HasField("estimated_time_left")
    assert alone.estimated_time_left.ToTimedelta().total_seconds() == 0
    queue.submit(model="sd15")
    assert _state(queue).estimated_time_left.ToTimedelta().total_seconds() > 0


# Schema 1 stored times as REAL seconds, schema 2 as INTEGER microseconds; both come before the
# runners' offers (schema 3).
@pytest.mark.parametrize(("schema", "heartbeat"), [(1, "1.0"), (2, "1000000")])
def test_a_queue_database_from_before_runner_offers_opens_with_its_runners(
        tmp_path: Path, schema: int, heartbeat: str) -> None:
    path = tmp_path / "queue.sqlite3"
    old = open_database(path, MIGRATIONS[:schema], "NORMAL")
    old.execute("INSERT INTO runners VALUES "
                f"('r1', 'h', 'a:1', '[\"sd15\"]', 'sd15', {heartbeat}, '')")
    old.close()

    store = QueueStore(path)
    (record,) = store.runners()
    store.close()

    assert (record.info.models, record.info.capabilities) == (("sd15",), b"")
    assert record.info.webui_state == WebuiState.UNSPECIFIED
    assert record.last_heartbeat_time == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert record.info.offers_model("sd15") and not record.info.offers_model("sdxl")


def test_the_quick_checkpoint_lookup_agrees_with_the_webui_rules() -> None:
    entries = [ModelEntry("sub/a.safetensors [1111111111]", "a", "1111111111",
                          sha256="1111111111" + "f" * 54),
               ModelEntry("b.ckpt [2222222222]", "b", "2222222222"),
               ModelEntry("c.safetensors", "c", "")]
    names = checkpoint_names(entries)
    asked = ["sub/a.safetensors [1111111111]", "sub/a.safetensors", "a.safetensors", "a",
             "1111111111", "1111111111" + "f" * 54, "sub/a.safetensors [9999999999]",
             "b.ckpt [2222222222]", "b", "b.ckpt", " b ", "c.safetensors", "c",
             "a [1111111111]", "d", "", "   ", "[1111111111]", "b.ckpt [zz]", "sub"]
    assert [has_checkpoint(names, name) for name in asked] == [
        find_model(entries, name) is not None for name in asked]
