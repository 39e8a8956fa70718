"""Bundle domain objects -> generated messages (and configs back); what a runner offers, from
the queue's ListRunners."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime

from stablenew.bundle.domain import (
    BundleSummary,
    Draft,
    DraftPart,
    ManualPart,
    NormalizedBundle,
    Reason,
)
from stablenew.bundle.name_check import OfferedNames
from stablenew.bundle.packs.model import Pack, PackSummary
from stablenew.contract.model import PipelineConfig, PromptSource
from stablenew.contract.pipeline_limits import ADETAILER_PASS_DEFAULTS
from stablenew.contract.proto_mapping import fill_proto, from_request, to_proto
from stablenew.sdwebui.model_matching import ModelEntry
from stablenew.sdwebui.names import SchedulerEntry
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import pipeline_pb2
from stablenew.v1 import queue_service_pb2 as queue_pb


def offered_by(runner: queue_pb.Runner) -> OfferedNames:
    """What one runner (as ListRunners shows it) offers; unchecked, saying why, when it does
    not announce it."""
    if not runner.info.HasField("capabilities"):
        return OfferedNames(unchecked_reason=f"runner {runner.info.runner_id!r} does not say "
                                             "what its WebUI offers (an older runner)")
    offered = runner.info.capabilities
    return OfferedNames(
        runner_count=1,
        models=tuple(ModelEntry(m.title, m.model_name, m.hash) for m in offered.models),
        vaes=tuple(offered.vaes), samplers=tuple(offered.samplers),
        schedulers=tuple(SchedulerEntry(s.name, s.label, tuple(s.aliases))
                         for s in offered.scheduler_infos),
        upscalers=tuple(offered.upscalers),
        latent_upscale_modes=tuple(offered.latent_upscale_modes),
        adetailer_models=tuple(offered.adetailer_models),
        unchecked_reason="")


def config_from_proto(message: pipeline_pb2.PipelineConfig, field_path: str) -> PipelineConfig:
    """A config a client sent: an enum value this version does not know is INVALID_ARGUMENT
    naming `field_path`. An ADetailer pass field with presence the client left unset is the
    extension's default (ADETAILER_PASS_DEFAULTS), while the message still tells unset from 0."""
    config = from_request(PipelineConfig, message, field_path)
    for sent, adetailer_pass in zip(message.adetailer.passes, config.adetailer.passes,
                                    strict=True):
        present = {field.name for field, _ in sent.ListFields()}
        for name, default in ADETAILER_PASS_DEFAULTS.items():
            if name not in present:
                setattr(adetailer_pass, name, default)
    return config


def _config_to_proto(config: PipelineConfig, message: pipeline_pb2.PipelineConfig) -> None:
    fill_proto(config, message)
    _mark_pass_presence(config, message)


def _mark_pass_presence(config: PipelineConfig, message: pipeline_pb2.PipelineConfig) -> None:
    """Each pass's fields with presence set in the message, even at 0 (the generic conversion
    leaves zeros unset), so that a client sending the config back keeps them."""
    for adetailer_pass, written in zip(config.adetailer.passes, message.adetailer.passes,
                                       strict=True):
        for name in ADETAILER_PASS_DEFAULTS:
            setattr(written, name, getattr(adetailer_pass, name))


def _fill_reason_names(errors: Iterable[pb.RowError]) -> None:
    """RowError.reason_name (deprecated): the reason as clients of the released v1 contract read
    it, when it was a string field."""
    for error in errors:
        error.reason_name = Reason(error.reason).name


def summary_to_proto(summary: BundleSummary, message: pb.BundleSummary) -> None:
    fill_proto(summary, message)
    _fill_reason_names(message.errors)


class JobMessages:
    """Each normalized bundle's jobs in their generated form, converted once: PreviewDraft pages
    through them and EnqueueDraft then sends them all, and converting 10,000 jobs costs about
    50 ms. Kept only as long as the bundle itself (the core's cache of normalised drafts)."""

    def __init__(self) -> None:
        self._converted: weakref.WeakKeyDictionary[
            NormalizedBundle, list[pipeline_pb2.NormalizedJob | None]] = (
                weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def page(self, bundle: NormalizedBundle, start: int,
             stop: int) -> list[pipeline_pb2.NormalizedJob]:
        """The messages of the jobs `start` to `stop` of `bundle` (converted on first use)."""
        with self._lock:
            converted = self._converted.get(bundle)
            if converted is None:
                converted = self._converted[bundle] = [None] * len(bundle.jobs)
        page = []
        # Two threads may convert the same job at once; both results are equal.
        for index in range(start, min(stop, len(bundle.jobs))):
            message = converted[index]
            if message is None:
                message = converted[index] = to_proto(bundle.jobs[index])
            page.append(message)
        return page

    def all(self, bundle: NormalizedBundle) -> list[pipeline_pb2.NormalizedJob]:
        """The messages of every job of `bundle`."""
        return self.page(bundle, 0, len(bundle.jobs))


def _part_to_proto(part: DraftPart, estimated_images: int) -> pb.JobPart:
    message = pb.JobPart(part_id=part.part_id, input_images=part.input_images,
                         estimated_images=estimated_images)
    if isinstance(part, ManualPart):
        message.prompt_source = pipeline_pb2.PromptSource.ValueType(PromptSource.MANUAL)
        message.prompt, message.negative_prompt = part.prompt, part.negative_prompt
        _config_to_proto(part.config, message.config)
    else:
        message.prompt_source = pipeline_pb2.PromptSource.ValueType(PromptSource.PACK)
        message.prompt_pack_id, message.row_index = part.pack_id, part.row_index
        message.prepend_text = part.prepend_text
        _config_to_proto(part.config_overrides, message.config)
    return message


def draft_to_proto(draft: Draft) -> pb.Draft:
    """The Draft message: parts (with their estimated images), summary and times."""
    record = draft.record
    images = {outcome.part_id: outcome.estimated_images for outcome in draft.bundle.parts}
    message = pb.Draft(draft_id=record.draft_id, display_name=record.display_name,
                       revision=record.revision,
                       parts=[_part_to_proto(part, images.get(part.part_id, 0))
                              for part in record.parts])
    summary_to_proto(draft.bundle.summary, message.summary)
    message.create_time.FromDatetime(datetime.fromtimestamp(record.create_time, UTC))
    message.update_time.FromDatetime(datetime.fromtimestamp(record.update_time, UTC))
    return message


def pack_to_proto(pack: Pack) -> pb.Pack:
    """The Pack message of a pack."""
    message = pb.Pack()
    fill_proto(pack, message)
    _mark_pass_presence(pack.defaults, message.defaults)
    _fill_reason_names(message.errors)
    return message


def pack_summary_to_proto(summary: PackSummary) -> pb.PackSummary:
    """The PackSummary message of a listed pack."""
    message = pb.PackSummary()
    fill_proto(summary, message)
    return message
