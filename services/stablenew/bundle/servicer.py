"""The gRPC edge of the bundle service."""

from __future__ import annotations

import grpc

from stablenew.bundle import mapping
from stablenew.bundle.core import BundleCore
from stablenew.contract.errors import (
    Code,
    ErrorReason,
    FieldViolation,
    ServiceError,
    invalid_argument,
)
from stablenew.contract.model import JobSource, Priority, RunMode
from stablenew.contract.proto_mapping import job_to_proto
from stablenew.contract.request_limits import (
    MAX_TEXT_CHARS,
    checked_id,
    checked_names,
    checked_text,
    known_enum,
)
from stablenew.runtime.paging import page_by_name, page_size
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import bundle_service_pb2_grpc, job_pb2

Context = grpc.ServicerContext

# The largest Draft message the bundle lets a draft grow to: what every gRPC client receives by
# default (4 MiB) less room for the response around it. A part that would make the draft larger
# is refused, so a draft can always be read (and fixed) by GetDraft.
MAX_DRAFT_BYTES = 4 * 1024 * 1024 - 64 * 1024
# Rows one AddPackParts may name (a pack holds fewer).
MAX_ROW_INDICES = 10_000


def _optional_id(value: str, field_path: str) -> str:
    return checked_id(value, field_path, required=False)


class BundleServicer(bundle_service_pb2_grpc.BundleServiceServicer):
    """BundleService over gRPC: requests to use cases, domain objects to responses."""

    def __init__(self, core: BundleCore, job_messages: mapping.JobMessages) -> None:
        self.core = core
        self.job_messages = job_messages
        self.draft_tokens = core.page_tokens("bundle.ListDrafts")
        self.preview_tokens = core.page_tokens("bundle.PreviewDraft")
        self.pack_tokens = core.page_tokens("bundle.ListPacks")

    def _check_room(self, draft_id: str, field_path: str, added_bytes: int) -> None:
        """RESOURCE_EXHAUSTED naming `field_path` when the draft, grown by about
        `added_bytes`, would be more than a client can read."""
        size = mapping.draft_to_proto(self.core.get_draft(draft_id)).ByteSize() + added_bytes
        if size > MAX_DRAFT_BYTES:
            message = (f"the draft would be about {size:,} bytes, more than the "
                       f"{MAX_DRAFT_BYTES:,} a client can read; remove parts or start another "
                       f"draft")
            raise ServiceError(Code.RESOURCE_EXHAUSTED, ErrorReason.INVALID_FIELD,
                               f"{field_path}: {message}",
                               violations=[FieldViolation(field_path, message)])

    def CreateDraft(self, request: pb.CreateDraftRequest,
                    context: Context) -> pb.CreateDraftResponse:
        """An empty draft (the same one again for a repeated request id)."""
        draft = self.core.create_draft(checked_text(request.display_name, "display_name"),
                                       _optional_id(request.request_id, "request_id"))
        return pb.CreateDraftResponse(draft=mapping.draft_to_proto(draft))

    def GetDraft(self, request: pb.GetDraftRequest, context: Context) -> pb.GetDraftResponse:
        """One draft with its parts and summary."""
        draft = self.core.get_draft(checked_id(request.draft_id, "draft_id"))
        return pb.GetDraftResponse(draft=mapping.draft_to_proto(draft))

    def ListDrafts(self, request: pb.ListDraftsRequest,
                   context: Context) -> pb.ListDraftsResponse:
        """A page of drafts in id order."""
        size = page_size(request.page_size)
        position = self.draft_tokens.decode(request.page_token)
        drafts, last = self.core.list_drafts(size, str(position[0]) if position else "")
        return pb.ListDraftsResponse(
            drafts=[mapping.draft_to_proto(draft) for draft in drafts],
            next_page_token=self.draft_tokens.encode([last]) if last else "")

    def AddPart(self, request: pb.AddPartRequest, context: Context) -> pb.AddPartResponse:
        """A manual prompt with its config added to the draft."""
        draft_id = checked_id(request.draft_id, "draft_id")
        prompt = checked_text(request.prompt, "prompt", MAX_TEXT_CHARS)
        negative = checked_text(request.negative_prompt, "negative_prompt", MAX_TEXT_CHARS)
        config = mapping.config_from_proto(request.config, "config")
        images = checked_names(request.input_images, "input_images")
        request_id = _optional_id(request.request_id, "request_id")
        self._check_room(draft_id, "prompt", request.ByteSize())
        draft, part_ids = self.core.add_manual_part(draft_id, prompt, negative, config, images,
                                                    request_id)
        message = mapping.draft_to_proto(draft)
        part = next(p for p in message.parts if p.part_id == part_ids[0])
        return pb.AddPartResponse(draft=message, part=part)

    def AddPackParts(self, request: pb.AddPackPartsRequest,
                     context: Context) -> pb.AddPackPartsResponse:
        """Rows of a pack added to the draft, one part each."""
        draft_id = checked_id(request.draft_id, "draft_id")
        pack_id = checked_id(request.prompt_pack_id, "prompt_pack_id")
        if len(request.row_indices) > MAX_ROW_INDICES:
            raise invalid_argument("row_indices", f"at most {MAX_ROW_INDICES:,} rows")
        prepend = checked_text(request.prepend_text, "prepend_text", MAX_TEXT_CHARS)
        overrides = mapping.config_from_proto(request.config_overrides, "config_overrides")
        request_id = _optional_id(request.request_id, "request_id")
        # Every row becomes a part holding the pack id, the prepended text and the overrides.
        rows = len(request.row_indices) or 1
        self._check_room(draft_id, "row_indices", rows * request.ByteSize())
        draft, part_ids = self.core.add_pack_parts(draft_id, pack_id, list(request.row_indices),
                                                   prepend, overrides, request_id)
        message = mapping.draft_to_proto(draft)
        added = set(part_ids)
        return pb.AddPackPartsResponse(draft=message,
                                       parts=[p for p in message.parts if p.part_id in added])

    def RemovePart(self, request: pb.RemovePartRequest,
                   context: Context) -> pb.RemovePartResponse:
        """The draft without one part."""
        draft = self.core.remove_part(checked_id(request.draft_id, "draft_id"),
                                      checked_id(request.part_id, "part_id"))
        return pb.RemovePartResponse(draft=mapping.draft_to_proto(draft))

    def ClearDraft(self, request: pb.ClearDraftRequest,
                   context: Context) -> pb.ClearDraftResponse:
        """The draft without any part."""
        draft = self.core.clear_draft(checked_id(request.draft_id, "draft_id"))
        return pb.ClearDraftResponse(draft=mapping.draft_to_proto(draft))

    def PreviewDraft(self, request: pb.PreviewDraftRequest,
                     context: Context) -> pb.PreviewDraftResponse:
        """A page of the draft's normalized jobs, bound to the draft's current version."""
        size = page_size(request.page_size)
        draft = self.core.get_draft(checked_id(request.draft_id, "draft_id"))
        position = self.preview_tokens.decode(request.page_token)
        start = 0
        if position is not None:
            # Bound to the draft and its version: a changed draft or pack restarts the preview.
            if position[:2] != [draft.record.draft_id, draft.version]:
                raise invalid_argument("page_token", "not a page of this draft as it is now "
                                       "(the draft or one of its packs changed)")
            start = int(position[2])
        jobs = self.job_messages.page(draft.bundle, start, start + size)
        end = start + len(jobs)
        token = (self.preview_tokens.encode([draft.record.draft_id, draft.version, end])
                 if end < len(draft.bundle.jobs) else "")
        response = pb.PreviewDraftResponse(next_page_token=token,
                                           draft_revision=draft.record.revision)
        response.jobs.extend(jobs)
        mapping.summary_to_proto(draft.bundle.summary, response.summary)
        return response

    def EnqueueDraft(self, request: pb.EnqueueDraftRequest,
                     context: Context) -> pb.EnqueueDraftResponse:
        """The previewed jobs submitted to the queue as one job."""
        job = self.core.enqueue(
            checked_id(request.draft_id, "draft_id"),
            known_enum(RunMode, request.run_mode, "run_mode"),
            known_enum(JobSource, request.source, "source"),
            known_enum(Priority, request.priority, "priority"),
            checked_text(request.label, "label"),
            _optional_id(request.request_id, "request_id"), request.expected_revision)
        return pb.EnqueueDraftResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def ListPacks(self, request: pb.ListPacksRequest, context: Context) -> pb.ListPacksResponse:
        """A page of the pack library, broken packs listed with their error."""
        page, token = page_by_name(self.pack_tokens, request.page_token,
                                   page_size(request.page_size), self.core.packs.list_packs,
                                   lambda pack: pack.pack_id)
        return pb.ListPacksResponse(
            packs=[mapping.pack_summary_to_proto(p) for p in page], next_page_token=token)

    def GetPack(self, request: pb.GetPackRequest, context: Context) -> pb.GetPackResponse:
        """One pack: rows, matrix, settings and row errors."""
        pack = self.core.load_pack(checked_id(request.pack_id, "pack_id"))
        return pb.GetPackResponse(pack=mapping.pack_to_proto(pack))


