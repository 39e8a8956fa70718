"""Drafts survive a restart of the bundle server (same data directory), and packs changed on disk
are picked up without one."""

from __future__ import annotations

from stablenew.contract.errors import Code
from stablenew.v1 import bundle_service_pb2 as pb
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import (
    full_job,
    jobs_of_draft,
    preset,
    rpc_error,
    txt2img_config,
    unique,
    write_pack,
)


def test_drafts_and_their_jobs_survive_a_restart(stack: Stack) -> None:
    bundle = stack.bundle
    pack_id = unique("persist_")
    # Random matrix picks, random wildcards and random seeds: all must come out the same after
    # the restart, so the preview before it is still what will run.
    write_pack(stack.packs_dir, f"{pack_id}.txt",
               "a [[job]] in __color__ light\nneg: blurry\n\na [[job]] at the [[place]]\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"matrix": {"mode": "random", "limit": 2,
                                 "slots": [{"name": "job", "values": ["knight", "wizard", "monk"]},
                                           {"name": "place", "values": ["gate", "tower"]}]},
                      "wildcards": {"color": ["red", "blue", "green"]}},
        "preset_data": preset(("txt2img", "adetailer"), seed=-1)})
    draft = bundle.new_draft("survivor")
    bundle.add_pack(draft.draft_id, pack_id, prepend="masterpiece")
    bundle.add_manual(draft.draft_id, "a lighthouse", txt2img_config(seed=-1), negative="fog")
    empty = bundle.new_draft("empty one")
    before = bundle.draft(draft.draft_id)
    jobs_before, _ = bundle.preview_all(draft.draft_id, 3)
    for _ in range(2):
        bundle.new_draft()
    list_token = bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=1)).next_page_token

    bundle.restart()

    after = bundle.draft(draft.draft_id)
    assert after.parts == before.parts
    assert (after.revision, after.display_name, after.summary) == (
        before.revision, before.display_name, before.summary)
    assert after.create_time == before.create_time
    jobs_after, _ = bundle.preview_all(draft.draft_id, 3)
    assert jobs_after == jobs_before  # normalised afresh, hash for hash the same
    assert bundle.draft(empty.draft_id).display_name == "empty one"
    # Page tokens are signed with a secret kept in the database: still valid.
    assert bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=1, page_token=list_token)).drafts
    job = bundle.enqueue(draft.draft_id, expected_revision=before.revision)
    assert list(full_job(stack.queue, job.job_id).entries) == jobs_before


def test_an_enqueue_before_a_restart_is_still_idempotent_after_it(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    stack.bundle.add_manual(draft.draft_id, "a harbor", txt2img_config())
    request_id = unique("before-restart-")
    first = stack.bundle.enqueue(draft.draft_id, request_id=request_id)
    stack.bundle.restart()
    assert stack.bundle.enqueue(draft.draft_id, request_id=request_id).job_id == first.job_id


def test_an_edited_pack_is_picked_up_without_a_restart(stack: Stack) -> None:
    bundle = stack.bundle
    pack_id = unique("edit_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a castle\nneg: blurry\n\nan owl\n")
    draft = bundle.new_draft()
    added = bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config()).draft
    assert added.summary.positive_preview == "a castle"
    assert added.summary.job_count == 2

    write_pack(stack.packs_dir, f"{pack_id}.txt",
               "a castle at night\nneg: blurry, fog\n\nan owl\n\na third row\n")
    edited = bundle.draft(draft.draft_id)
    assert edited.summary.positive_preview == "a castle at night"
    assert edited.summary.negative_preview == "blurry, fog"
    assert edited.summary.job_count == 2  # the draft holds rows 0 and 1, not the new row
    jobs, _ = bundle.preview_all(draft.draft_id, 1)
    assert [job.prompt for job in jobs] == ["a castle at night", "an owl"]
    pack = bundle.stub.GetPack(pb.GetPackRequest(pack_id=pack_id)).pack
    assert len(pack.rows) == 3
    listed = {p.pack_id: p for p in bundle.stub.ListPacks(pb.ListPacksRequest(
        page_size=1000)).packs}
    assert listed[pack_id].row_count == 3
    # What is enqueued is the pack as it is now, which is what the preview now shows.
    job = bundle.enqueue(draft.draft_id)
    assert list(full_job(stack.queue, job.job_id).entries) == jobs


def test_a_pack_edited_between_preview_and_enqueue_is_never_queued_unseen(stack: Stack) -> None:
    bundle = stack.bundle
    pack_id = unique("edit_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "an oil painting\n\na watercolour\n")
    draft = bundle.new_draft()
    bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config())
    previewed, pages = bundle.preview_all(draft.draft_id, 10)
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a pastel drawing\n\na watercolour\n")

    # The edit makes a new revision: the enqueue of the previewed one is refused...
    details = rpc_error(lambda: bundle.enqueue(draft.draft_id,
                                               expected_revision=pages[0].draft_revision))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION,
                                              "DRAFT_REVISION_MISMATCH")
    assert jobs_of_draft(stack.queue, draft.draft_id) == []
    # ...and what the new preview shows is what is queued.
    again, new_pages = bundle.preview_all(draft.draft_id, 10)
    assert new_pages[0].draft_revision == pages[0].draft_revision + 1
    assert [job.prompt for job in again] == ["a pastel drawing", "a watercolour"] != [
        job.prompt for job in previewed]
    job = bundle.enqueue(draft.draft_id, expected_revision=new_pages[0].draft_revision)
    assert list(full_job(stack.queue, job.job_id).entries) == again


def test_reading_a_draft_whose_packs_did_not_change_makes_no_revision(stack: Stack) -> None:
    bundle = stack.bundle
    pack_id = unique("still_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a quiet harbour\n")
    draft = bundle.new_draft()
    added = bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config()).draft
    bundle.preview_all(draft.draft_id, 10)
    bundle.restart()
    assert bundle.draft(draft.draft_id).revision == added.revision


def test_a_sibling_json_edit_changes_the_matrix_of_a_txt_pack(stack: Stack) -> None:
    bundle = stack.bundle
    pack_id = unique("sibling_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a [[job]] at dawn\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"matrix": {"slots": [{"name": "job", "values": ["knight"]}]}},
        "preset_data": preset()})
    draft = bundle.new_draft()
    assert bundle.add_pack(draft.draft_id, pack_id).draft.summary.job_count == 1
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"matrix": {"slots": [{"name": "job",
                                            "values": ["knight", "wizard", "monk"]}]}},
        "preset_data": preset(steps=42)})
    jobs, _ = bundle.preview_all(draft.draft_id, 2)
    assert [job.prompt for job in jobs] == ["a knight at dawn", "a wizard at dawn",
                                            "a monk at dawn"]
    assert {job.steps for job in jobs} == {42}


def test_new_and_deleted_packs_show_without_a_restart(stack: Stack) -> None:
    bundle = stack.bundle
    pack_id = unique("appears_")

    def listed() -> set[str]:
        return {p.pack_id for p in bundle.stub.ListPacks(pb.ListPacksRequest(
            page_size=1000)).packs}

    assert pack_id not in listed()
    path = write_pack(stack.packs_dir, f"{pack_id}.tsv", "a new pack\tblurry\n")
    assert pack_id in listed()
    draft = bundle.new_draft()
    bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config())
    path.unlink()
    assert pack_id not in listed()
    summary = bundle.draft(draft.draft_id).summary
    assert summary.job_count == 0
    assert [(e.prompt_pack_id, e.reason) for e in summary.errors] == [
        (pack_id, pb.ROW_ERROR_REASON_PACK_NOT_FOUND)]
