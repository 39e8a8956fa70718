"""PreviewDraft paging and EnqueueDraft into a real queue: preconditions, idempotency, run modes
and the origin the queued job carries."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import job_pb2, pipeline_pb2
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import (
    BundleHarness,
    full_job,
    jobs_of_draft,
    preset,
    queued_jobs,
    rpc_error,
    submitted_events_of_draft,
    txt2img_config,
    unique,
    write_pack,
)
from tests.queue.harness import QueueHarness


@pytest.fixture(scope="module")
def pack(stack: Stack) -> str:
    """Two rows: a 2 x 2 fanout and a plain prompt (5 jobs)."""
    pack_id = "preview_pack"
    write_pack(stack.packs_dir, f"{pack_id}.txt",
               "a [[job]] guarding a [[place]]\nneg: blurry\n\nwatercolor lighthouse\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"name": "Preview pack",
                      "matrix": {"slots": [{"name": "job", "values": ["knight", "wizard"]},
                                           {"name": "place", "values": ["gate", "tower"]}]}},
        "preset_data": preset(("txt2img", "adetailer"))})
    return pack_id


def _draft_with_pack(stack: Stack, pack_id: str) -> pb.Draft:
    draft = stack.bundle.new_draft()
    return stack.bundle.add_pack(draft.draft_id, pack_id).draft


def _preview(stack: Stack, draft_id: str, page_size: int = 0,
             token: str = "") -> pb.PreviewDraftResponse:
    return stack.bundle.stub.PreviewDraft(pb.PreviewDraftRequest(
        draft_id=draft_id, page_size=page_size, page_token=token))


# --- PreviewDraft ---------------------------------------------------------------------------


def test_preview_pages_through_the_normalized_jobs(stack: Stack, pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    jobs, pages = stack.bundle.preview_all(draft.draft_id, 2)
    assert [len(page.jobs) for page in pages] == [2, 2, 1]
    assert [bool(page.next_page_token) for page in pages] == [True, True, False]
    assert {page.draft_revision for page in pages} == {draft.revision}
    assert all(page.summary == draft.summary for page in pages)
    assert [job.index for job in jobs] == [0, 1, 2, 3, 4]
    assert [job.prompt for job in jobs] == [
        "a knight guarding a gate", "a knight guarding a tower", "a wizard guarding a gate",
        "a wizard guarding a tower", "watercolor lighthouse"]
    assert all(len(job.config_hash) == 64 for job in jobs)
    # page_size 0 is the default page (50), bigger than this draft.
    whole = _preview(stack, draft.draft_id)
    assert list(whole.jobs) == jobs and not whole.next_page_token
    # The same draft revision always previews the same jobs.
    assert stack.bundle.preview_all(draft.draft_id, 3)[0] == jobs


def test_preview_of_an_empty_or_unknown_draft(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    empty = _preview(stack, draft.draft_id)
    assert list(empty.jobs) == [] and not empty.next_page_token
    assert empty.summary.batch_summary == "no jobs"
    details = rpc_error(lambda: _preview(stack, "no-such-draft"))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "DRAFT_NOT_FOUND")
    details = rpc_error(lambda: _preview(stack, draft.draft_id, page_size=-3))
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["page_size"]


def test_a_page_token_from_an_older_revision_is_refused(stack: Stack, pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    first = _preview(stack, draft.draft_id, page_size=2)
    stack.bundle.add_manual(draft.draft_id, "a harbor", txt2img_config())
    details = rpc_error(lambda: _preview(stack, draft.draft_id, 2, first.next_page_token))
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["page_token"]
    assert "changed" in details.message
    # Starting again from the first page works.
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 2)
    assert len(jobs) == 6


def test_tampered_and_foreign_preview_tokens_are_refused(stack: Stack, pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    token = _preview(stack, draft.draft_id, page_size=1).next_page_token
    for _ in range(2):
        stack.bundle.new_draft()
    list_token = stack.bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=1)).next_page_token
    for bad in (token[:-4] + "AAAA", "garbage", list_token):
        details = rpc_error(partial(_preview, stack, draft.draft_id, 1, bad))
        assert (details.code, details.reason) == (Code.INVALID_ARGUMENT,
                                                  "INVALID_PAGE_TOKEN")


def test_a_preview_token_is_bound_to_its_draft(stack: Stack, pack: str) -> None:
    one, other = _draft_with_pack(stack, pack), _draft_with_pack(stack, pack)
    assert one.revision == other.revision
    token = _preview(stack, one.draft_id, page_size=2).next_page_token
    details = rpc_error(lambda: _preview(stack, other.draft_id, 2, token))
    assert details.code == Code.INVALID_ARGUMENT


def test_pages_of_one_preview_come_from_one_version_of_the_pack(stack: Stack) -> None:
    pack_id = unique("edited_")
    write_pack(stack.packs_dir, f"{pack_id}.tsv", "a castle\nan owl\na fox\n")
    draft = stack.bundle.new_draft()
    draft = stack.bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config()).draft
    first = _preview(stack, draft.draft_id, page_size=1)
    assert first.jobs[0].prompt == "a castle"
    write_pack(stack.packs_dir, f"{pack_id}.tsv", "a castle at night\nan owl\na fox\n")
    try:
        rest = _preview(stack, draft.draft_id, 1, first.next_page_token)
    except grpc.RpcError as error:  # refusing the stale token is a fine answer
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        return
    # Otherwise the revision must tell the client that what it paged through changed.
    assert rest.draft_revision != first.draft_revision


# --- EnqueueDraft ---------------------------------------------------------------------------


def test_enqueue_submits_the_previewed_jobs_and_clears_the_draft(stack: Stack,
                                                                 pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 2)
    job = stack.bundle.enqueue(draft.draft_id, request_id=unique("enq-"), label="castles",
                               expected_revision=draft.revision)
    assert job.state == job_pb2.JOB_STATE_QUEUED
    assert list(job.entries) == []  # the reply leaves the entries out
    assert (job.entry_count, job.estimated_images) == (5, 5)
    assert job.label == "castles"
    assert job.priority == job_pb2.PRIORITY_NORMAL
    held = full_job(stack.queue, job.job_id)
    assert list(held.entries) == jobs
    assert held.config_hash == job.config_hash
    origin = held.origin
    assert (origin.run_mode, origin.source) == (job_pb2.RUN_MODE_QUEUE,
                                                job_pb2.JOB_SOURCE_ADD_TO_QUEUE)
    assert (origin.prompt_source, origin.prompt_pack_id) == (pipeline_pb2.PROMPT_SOURCE_PACK,
                                                             pack)
    assert (origin.draft_id, origin.draft_revision) == (draft.draft_id, draft.revision)
    after = stack.bundle.draft(draft.draft_id)
    assert list(after.parts) == [] and after.revision == draft.revision + 1
    assert after.summary.job_count == 0
    assert [j.job_id for j in jobs_of_draft(stack.queue, draft.draft_id)] == [job.job_id]


def test_an_empty_draft_cannot_be_enqueued(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.enqueue(draft.draft_id))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION,
                                              "DRAFT_EMPTY")
    details = rpc_error(lambda: stack.bundle.enqueue("no-such-draft"))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "DRAFT_NOT_FOUND")
    assert jobs_of_draft(stack.queue, draft.draft_id) == []


def test_expected_revision_mismatch_is_refused_and_changes_nothing(stack: Stack,
                                                                   pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    details = rpc_error(lambda: stack.bundle.enqueue(draft.draft_id,
                                                     expected_revision=draft.revision - 1))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION,
                                              "DRAFT_REVISION_MISMATCH")
    assert str(draft.revision) in details.message
    assert stack.bundle.draft(draft.draft_id) == draft
    assert jobs_of_draft(stack.queue, draft.draft_id) == []
    job = stack.bundle.enqueue(draft.draft_id, expected_revision=draft.revision)
    assert job.origin.draft_revision == draft.revision


def test_a_run_mode_is_required(stack: Stack, pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    details = rpc_error(lambda: stack.bundle.enqueue(
        draft.draft_id, run_mode=job_pb2.RUN_MODE_UNSPECIFIED))
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["run_mode"]
    assert stack.bundle.draft(draft.draft_id) == draft


def test_run_now_goes_to_the_front_of_the_queue(stack: Stack, pack: str) -> None:
    waiting = _draft_with_pack(stack, pack)
    stack.bundle.enqueue(waiting.draft_id, priority=job_pb2.PRIORITY_HIGH)
    draft = stack.bundle.new_draft()
    stack.bundle.add_manual(draft.draft_id, "run this now", txt2img_config())
    job = stack.bundle.enqueue(draft.draft_id, run_mode=job_pb2.RUN_MODE_DIRECT)
    assert (job.origin.run_mode, job.origin.source) == (job_pb2.RUN_MODE_DIRECT,
                                                        job_pb2.JOB_SOURCE_RUN_NOW)
    assert job.queue_position == 0
    assert queued_jobs(stack.queue)[0].job_id == job.job_id


def test_origin_names_the_prompt_source_and_the_pack(stack: Stack, pack: str) -> None:
    other = unique("other_")
    write_pack(stack.packs_dir, f"{other}.tsv", "a second pack\n")
    manual = stack.bundle.new_draft()
    stack.bundle.add_manual(manual.draft_id, "a lighthouse", txt2img_config())
    from_pack = _draft_with_pack(stack, pack)
    mixed = _draft_with_pack(stack, pack)
    stack.bundle.add_manual(mixed.draft_id, "a lighthouse", txt2img_config())
    two_packs = _draft_with_pack(stack, pack)
    stack.bundle.add_pack(two_packs.draft_id, other, overrides=txt2img_config())
    expected = {manual.draft_id: (pipeline_pb2.PROMPT_SOURCE_MANUAL, ""),
                from_pack.draft_id: (pipeline_pb2.PROMPT_SOURCE_PACK, pack),
                mixed.draft_id: (pipeline_pb2.PROMPT_SOURCE_PACK, pack),
                two_packs.draft_id: (pipeline_pb2.PROMPT_SOURCE_PACK, "")}
    for draft_id, (source, pack_id) in expected.items():
        job = stack.bundle.enqueue(draft_id, source=job_pb2.JOB_SOURCE_RUN)
        origin = full_job(stack.queue, job.job_id).origin
        assert (origin.prompt_source, origin.prompt_pack_id) == (source, pack_id), draft_id
        assert origin.source == job_pb2.JOB_SOURCE_RUN  # an explicit source is kept
        assert origin.draft_id == draft_id


def test_entries_keep_their_own_origin(stack: Stack, pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    part = stack.bundle.add_manual(draft.draft_id, "a lighthouse", txt2img_config()).part
    job = stack.bundle.enqueue(draft.draft_id)
    entries = full_job(stack.queue, job.job_id).entries
    assert [(e.origin.prompt_source, e.origin.prompt_pack_id, e.origin.row_index)
            for e in entries] == [(pipeline_pb2.PROMPT_SOURCE_PACK, pack, 0)] * 4 + [
        (pipeline_pb2.PROMPT_SOURCE_PACK, pack, 1), (pipeline_pb2.PROMPT_SOURCE_MANUAL, "", 0)]
    assert entries[-1].origin.part_id == part.part_id
    assert {e.origin.pack_name for e in entries[:5]} == {"Preview pack"}


def test_a_repeated_enqueue_returns_the_first_job(stack: Stack, pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    request_id = unique("twice-")
    first = stack.bundle.enqueue(draft.draft_id, request_id=request_id,
                                 expected_revision=draft.revision)
    again = stack.bundle.enqueue(draft.draft_id, request_id=request_id)
    assert again.job_id == first.job_id
    # The revision it was queued from names it too, whatever the request id.
    for other_request in ("", unique("other-")):
        by_revision = stack.bundle.enqueue(draft.draft_id, request_id=other_request,
                                           expected_revision=draft.revision)
        assert by_revision.job_id == first.job_id
    # Without either the retry finds the draft empty: nothing is submitted twice.
    details = rpc_error(lambda: stack.bundle.enqueue(draft.draft_id))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION,
                                              "DRAFT_EMPTY")
    assert [job.job_id for job in jobs_of_draft(stack.queue, draft.draft_id)] == [first.job_id]
    assert len(submitted_events_of_draft(stack.queue, draft.draft_id)) == 1


def test_a_draft_is_reused_after_an_enqueue(stack: Stack, pack: str) -> None:
    draft = _draft_with_pack(stack, pack)
    first = stack.bundle.enqueue(draft.draft_id)
    refilled = stack.bundle.add_pack(draft.draft_id, pack, rows=[1]).draft
    second = stack.bundle.enqueue(draft.draft_id, expected_revision=refilled.revision)
    assert second.job_id != first.job_id
    assert (second.entry_count, second.origin.draft_revision) == (1, refilled.revision)
    assert {j.job_id for j in jobs_of_draft(stack.queue, draft.draft_id)} == {first.job_id,
                                                                               second.job_id}


def test_an_enqueue_past_the_default_four_megabyte_limit(stack: Stack) -> None:
    """gRPC refuses messages over 4 MiB unless both sides raise the limit: a big bundle must
    still reach the queue whole (the limits are set on purpose on every channel and server)."""
    pack_id = unique("big_")
    long_text = ", ".join(f"intricate detail {number}" for number in range(110))  # ~2 KB
    values = [f"variant {number}" for number in range(50)]
    rows = "\n\n".join(f"row {row} [[v]], {long_text}" for row in range(50))
    write_pack(stack.packs_dir, f"{pack_id}.txt", rows + "\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"matrix": {"slots": [{"name": "v", "values": values}]}},
        "preset_data": preset()})
    draft = stack.bundle.new_draft()
    added = stack.bundle.add_pack(draft.draft_id, pack_id).draft
    assert added.summary.job_count == 2500
    jobs, pages = stack.bundle.preview_all(draft.draft_id, 1000)
    assert sum(job.ByteSize() for job in jobs) > 4 * 1024 * 1024
    job = stack.bundle.enqueue(draft.draft_id, expected_revision=pages[-1].draft_revision)
    assert job.entry_count == 2500
    assert list(full_job(stack.queue, job.job_id).entries) == jobs


def test_a_job_the_queue_refuses_keeps_the_queues_error_and_the_draft(tmp_path: Path) -> None:
    """The queue's own refusal reaches the caller with its code (not as an internal error of
    the bundle), and the draft stays as it was: nothing is lost."""
    small_queue = QueueHarness(tmp_path / "queue", {"STABLENEW_MAX_MESSAGE_BYTES": "2048"})
    with small_queue.running():
        bundle = BundleHarness(tmp_path / "bundle", tmp_path / "packs", small_queue.address)
        with bundle.running():
            draft = bundle.new_draft()
            long_prompt = ", ".join(f"intricate detail {number}" for number in range(100))
            added = bundle.add_manual(draft.draft_id, long_prompt, txt2img_config()).draft

            details = rpc_error(lambda: bundle.enqueue(draft.draft_id))

            assert details.code == Code.RESOURCE_EXHAUSTED
            assert details.message.startswith("the queue refused: ")
            assert bundle.draft(draft.draft_id) == added
            assert queued_jobs(small_queue) == []
