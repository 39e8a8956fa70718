"""Names checked at preview against what the connected runners offer, through the real services:
the bundle asks the queue (ListRunners) what the runners it counts as connected announced. The
test announces a runner the way one does, with a LeaseJob request carrying its capabilities.

Each test gets its own queue and bundle (a runner announced in one test would be connected in
the next), and the bundle asks the queue on every read (STABLENEW_OFFER_CACHE_SECONDS=0)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stablenew.contract.errors import Code
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import queue_service_pb2 as queue_pb
from stablenew.v1 import runner_service_pb2
from tests.bundle_service.harness import BundleHarness, rpc_error, txt2img_config
from tests.queue.harness import QueueHarness
from tests.service_harness import wait_for

CAPABILITIES = runner_service_pb2.Capabilities(
    models=[runner_service_pb2.ModelInfo(
        title="v1-5-pruned-emaonly.safetensors [6ce0161689]", model_name="v1-5-pruned-emaonly",
        hash="6ce0161689")],
    samplers=["DPM++ 2M", "Euler a", "Euler"], schedulers=["automatic", "karras"],
    scheduler_infos=[runner_service_pb2.SchedulerInfo(name="automatic", label="Automatic"),
                     runner_service_pb2.SchedulerInfo(name="karras", label="Karras")],
    upscalers=["None", "Lanczos", "R-ESRGAN 4x+"], latent_upscale_modes=["Latent"],
    adetailer_models=["face_yolov8n.pt"])
NO_CACHE = {"STABLENEW_OFFER_CACHE_SECONDS": "0"}


def _stack(root: Path, lease_seconds: str = "30") -> tuple[QueueHarness, BundleHarness]:
    queue = QueueHarness(root / "queue", {"STABLENEW_LEASE_SECONDS": lease_seconds}).start()
    bundle = BundleHarness(root / "bundle", root / "packs", queue.address, NO_CACHE).start()
    return queue, bundle


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[QueueHarness, BundleHarness]]:
    queue, bundle = _stack(tmp_path)
    yield queue, bundle
    bundle.stop()
    queue.stop()


def announce(queue: QueueHarness, runner_id: str = "gpu-1",
             capabilities: runner_service_pb2.Capabilities | None = CAPABILITIES) -> None:
    info = queue_pb.RunnerInfo(runner_id=runner_id, models=["v1-5-pruned-emaonly"])
    if capabilities is not None:
        info.capabilities.CopyFrom(capabilities)
    reply = queue.stub.LeaseJob(queue_pb.LeaseJobRequest(runner=info), timeout=10)
    assert not reply.HasField("lease")  # nothing queued: the runner only announced itself


def preview(bundle: BundleHarness, draft_id: str) -> pb.PreviewDraftResponse:
    return bundle.stub.PreviewDraft(pb.PreviewDraftRequest(draft_id=draft_id), timeout=30)


def _misspelled_draft(bundle: BundleHarness) -> str:
    draft_id = bundle.new_draft().draft_id
    config = txt2img_config()
    config.txt2img.sampler_name = "Eulr a"
    bundle.add_manual(draft_id, "a lighthouse", config)
    return draft_id


def test_a_name_no_connected_runner_offers_is_a_row_error_at_preview(
        services: tuple[QueueHarness, BundleHarness]) -> None:
    queue, bundle = services
    announce(queue)
    draft_id = _misspelled_draft(bundle)

    page = preview(bundle, draft_id)

    assert list(page.jobs) == []
    (error,) = page.summary.errors
    assert (error.reason, error.reason_name, error.config_field) == (
        pb.ROW_ERROR_REASON_INVALID_FIELD, "INVALID_FIELD", "txt2img.sampler_name")
    assert list(error.suggestions) == ["Euler a", "Euler"]
    assert "sampler 'Eulr a' is not offered by any connected runner: did you mean" in (
        error.message)
    assert page.summary.name_check == pb.NameCheck(checked=True, runner_count=1)
    details = rpc_error(lambda: bundle.enqueue(draft_id))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION, "DRAFT_EMPTY")


def test_without_a_connected_runner_the_names_are_unchecked_and_the_jobs_made(
        services: tuple[QueueHarness, BundleHarness]) -> None:
    _, bundle = services
    page = preview(bundle, _misspelled_draft(bundle))
    assert len(page.jobs) == 1 and list(page.summary.errors) == []
    assert page.summary.name_check == pb.NameCheck(unchecked_reason="no runner is connected")


def test_a_runner_that_does_not_announce_its_offer_leaves_the_names_unchecked(
        services: tuple[QueueHarness, BundleHarness]) -> None:
    queue, bundle = services
    announce(queue)
    announce(queue, "old-runner", capabilities=None)
    page = preview(bundle, _misspelled_draft(bundle))
    assert len(page.jobs) == 1
    assert page.summary.name_check.unchecked_reason == (
        "runner 'old-runner' does not say what its WebUI offers (an older runner)")


def test_a_runner_arriving_after_the_preview_changes_what_the_draft_makes(
        services: tuple[QueueHarness, BundleHarness]) -> None:
    queue, bundle = services
    bad, good = _misspelled_draft(bundle), bundle.new_draft().draft_id
    bundle.add_manual(good, "a harbor", txt2img_config())
    first = bundle.stub.PreviewDraft(pb.PreviewDraftRequest(draft_id=bad, page_size=1))
    assert len(first.jobs) == 1 and not first.summary.name_check.checked
    good_revision = preview(bundle, good).draft_revision

    announce(queue)

    after = preview(bundle, bad)
    assert after.draft_revision == first.draft_revision + 1
    assert list(after.jobs) == [] and len(after.summary.errors) == 1
    details = rpc_error(lambda: bundle.enqueue(bad, expected_revision=first.draft_revision))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION,
                                              "DRAFT_REVISION_MISMATCH")
    # What the good draft makes did not change: the revision previewed is still the one to queue.
    assert preview(bundle, good).summary.name_check.checked
    queued = bundle.enqueue(good, expected_revision=good_revision)
    assert queued.origin.draft_revision == good_revision


def test_a_runner_gone_quiet_no_longer_counts(tmp_path: Path) -> None:
    queue, bundle = _stack(tmp_path, lease_seconds="0.3")
    try:
        announce(queue)

        def gone() -> bool:
            runners = queue.stub.ListRunners(queue_pb.ListRunnersRequest(), timeout=10).runners
            return not runners[0].connected

        wait_for(gone, "the runner to count as gone")
        page = preview(bundle, _misspelled_draft(bundle))
        assert len(page.jobs) == 1
        assert page.summary.name_check.unchecked_reason == "no runner is connected"
    finally:
        bundle.stop()
        queue.stop()


def test_a_queue_that_cannot_be_asked_leaves_the_names_unchecked(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{unused.getsockname()[1]}"
    bundle = BundleHarness(tmp_path / "bundle", tmp_path / "packs", nowhere, NO_CACHE).start()
    try:
        page = preview(bundle, _misspelled_draft(bundle))
    finally:
        bundle.stop()
    assert len(page.jobs) == 1
    reason = page.summary.name_check.unchecked_reason
    assert reason.startswith("the queue could not be asked what the runners offer: "
                             "the queue did not answer (UNAVAILABLE)")
