"""The bundle's use cases: drafts and their parts, preview, and enqueue.

A draft's normalized jobs are computed once per (draft, revision, pack files, what the connected
runners offer) and kept, so the pages of PreviewDraft and the EnqueueDraft that follows see the
very same jobs: what was previewed is what is queued. Seeds derive from the draft id, so adding a
part never changes the seeds of the others.

A revision is what the draft makes: when that changes without the parts changing (a pack file
it reads changed, or the runners' offer changes which parts name something no runner offers),
the draft gets a new revision, so an enqueue of the revision previewed is refused rather than
queueing other jobs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence

from stablenew.bundle.domain import (
    Draft,
    DraftPart,
    DraftRecord,
    FieldError,
    ManualPart,
    NormalizedBundle,
    PackRowPart,
    Reason,
)
from stablenew.bundle.expansion import ExpansionLimits
from stablenew.bundle.name_check import OfferedNames
from stablenew.bundle.normalize import normalize_draft
from stablenew.bundle.packs.library import PackLibrary
from stablenew.bundle.packs.model import Pack
from stablenew.bundle.pipeline_rules import preset_problems
from stablenew.bundle.seeds import DerivedSeedSource
from stablenew.bundle.store import BundleStore
from stablenew.contract.errors import (
    Code,
    ErrorReason,
    FieldViolation,
    ServiceError,
    invalid_argument,
)
from stablenew.contract.model import (
    Job,
    JobOrigin,
    JobSource,
    PipelineConfig,
    Priority,
    PromptSource,
    RunMode,
)
from stablenew.runtime.paging import PageTokens

CACHED_BUNDLES = 8
# A normalised draft is cached by draft id, revision, the versions of the packs it uses and what
# the connected runners offer.
BundleKey = tuple[str, int, tuple[object, ...], OfferedNames]

# entries, origin, priority, label, request id -> the queued job
Submit = Callable[[NormalizedBundle, JobOrigin, Priority, str, str], Job]
# job id -> the queued job
Lookup = Callable[[str], Job]
# -> what the connected runners offer (ServiceError when the queue cannot tell)
AskOffer = Callable[[], OfferedNames]


def _draft_not_found(draft_id: str) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, ErrorReason.DRAFT_NOT_FOUND,
                        f"draft {draft_id!r} not found", metadata={"draft_id": draft_id})


class OfferCache:
    """What the connected runners offer, asked at most once every `seconds` (a preview pages
    through a draft, a listing reads many drafts: each asks once). A queue that cannot be asked
    leaves the names unchecked for that long, saying why; it never fails the caller."""

    def __init__(self, ask: AskOffer, seconds: float) -> None:
        self.ask = ask
        self.seconds = seconds
        self._lock = threading.Lock()
        self._offered: OfferedNames | None = None
        self._asked_at = 0.0

    def current(self) -> OfferedNames:
        """The offer, asked again when the last answer is `seconds` old."""
        with self._lock:
            if self._offered is None or time.monotonic() - self._asked_at >= self.seconds:
                self._offered = self._ask()
                self._asked_at = time.monotonic()
            return self._offered

    def _ask(self) -> OfferedNames:
        try:
            return self.ask()
        except ServiceError as error:
            return OfferedNames(unchecked_reason=f"the queue could not be asked what the "
                                                 f"runners offer: {error.message}")


class BundleCore:
    """The bundle's use cases over its store, its pack library and the queue."""

    def __init__(self, store: BundleStore, packs: PackLibrary, submit: Submit,
                 lookup: Lookup, offers: OfferCache,
                 limits: ExpansionLimits | None = None) -> None:
        self.store = store
        self.packs = packs
        self.limits = limits or ExpansionLimits()
        self.submit = submit
        self.lookup = lookup
        self.offers = offers
        self.lock = threading.RLock()
        self._bundles: OrderedDict[BundleKey, NormalizedBundle] = OrderedDict()
        self.secret = store.page_token_secret()

    def page_tokens(self, scope: str) -> PageTokens:
        """Page tokens for the list named `scope`, signed with this database's secret."""
        return PageTokens(self.secret, scope)

    # --- drafts -------------------------------------------------------------------------

    def create_draft(self, display_name: str, request_id: str) -> Draft:
        """A new empty draft, or the one an earlier call with `request_id` created."""
        with self.lock, self.store.transaction():
            existing = self.store.draft_for_request(request_id) if request_id else None
            draft_id = existing or uuid.uuid4().hex
            if existing is None:
                self.store.insert_draft(draft_id, display_name, request_id, NEW_STAMP)
        return self.get_draft(draft_id)

    def get_draft(self, draft_id: str) -> Draft:
        """The draft as it is now. When what it makes changed since its revision was first
        seen (a pack file it reads changed on disk, or the runners' offer changed which of its
        parts make jobs), it makes a new revision: an enqueue that expects the previewed
        revision is then refused rather than queueing other jobs."""
        with self.lock:
            return self._draft(self._require(draft_id))

    def _draft(self, record: DraftRecord, remember: bool = True) -> Draft:
        signature = self._pack_signature(record.parts)
        offered = self.offers.current()
        bundle = self._normalized(record, signature, offered, remember)
        stamp = _stamp(signature, bundle.unoffered_parts)
        if stamp != record.pack_stamp:
            with self.store.transaction():
                if record.pack_stamp == NEW_STAMP:  # a new revision, seen for the first time
                    self.store.set_stamp(record.draft_id, stamp)
                else:
                    self.store.bump_revision(record.draft_id, stamp)
            record = self._require(record.draft_id)
            if remember:
                self._remember(record, signature, offered, bundle)
        version = hashlib.sha256(repr((record.revision, signature)).encode()).hexdigest()[:16]
        return Draft(record, bundle, version)

    def list_drafts(self, size: int, after: str) -> tuple[list[Draft], str]:
        """Up to `size` drafts after the id `after`, and the id to go on after ("" at the end)."""
        with self.lock:
            ids = self.store.draft_ids_after(after, size + 1)
            # A listing does not push the drafts being previewed out of the cache.
            drafts = [self._draft(self._require(draft_id), remember=False)
                      for draft_id in ids[:size]]
        return drafts, ids[size - 1] if len(ids) > size else ""

    def add_manual_part(self, draft_id: str, prompt: str, negative: str,
                        config: PipelineConfig, input_images: list[str],
                        request_id: str = "") -> tuple[Draft, list[str]]:
        """Add a prompt with its own config and input images; returns the draft and the part."""
        if not prompt.strip() and not input_images:
            raise invalid_argument("prompt", "a manual part needs a prompt (or input images)")
        part = ManualPart(uuid.uuid4().hex, prompt, negative, config, input_images)
        return self._add_parts(draft_id, [part], request_id, self._manual_violations)

    def add_pack_parts(self, draft_id: str, pack_id: str, rows: Sequence[int], prepend: str,
                       overrides: PipelineConfig,
                       request_id: str = "") -> tuple[Draft, list[str]]:
        """Add the rows `rows` of a pack (every row when empty), one part each, with `prepend`
        text and `overrides` over the pack's settings; returns the draft and the new part ids."""
        pack = self.load_pack(pack_id)
        chosen = list(rows) or [row.index for row in pack.rows]
        for position, index in enumerate(chosen):
            if not 0 <= index < len(pack.rows):
                raise invalid_argument(f"row_indices[{position}]",
                                       f"pack {pack_id!r} has rows 0..{len(pack.rows) - 1}")
        parts: list[DraftPart] = [PackRowPart(uuid.uuid4().hex, pack_id, index, prepend,
                                              overrides) for index in chosen]
        return self._add_parts(
            draft_id, parts, request_id,
            lambda errors: self._pack_violations(pack, overrides, errors))

    def _add_parts(self, draft_id: str, parts: list[DraftPart], request_id: str,
                   violations_of: Callable[[list[FieldError]], list[FieldViolation]],
                   ) -> tuple[Draft, list[str]]:
        """Refuse parts whose config is wrong (naming the fields); rows with bad text are
        added and reported in the summary, and make no jobs. A repeated request id answers
        with the parts it added the first time."""
        with self.lock:
            record = self._require(draft_id)
            earlier = self.store.parts_for_request(draft_id, request_id) if request_id else None
            if earlier is not None:
                return self._draft(record), earlier
        offered = self.offers.current()
        trial = normalize_draft(parts, DerivedSeedSource(draft_id), self.packs,
                                limits=self.limits, offered=offered)
        errors = [error for outcome in trial.parts for error in outcome.field_errors]
        violations = violations_of(errors)
        if violations:
            plan_wrong = any(error.reason == Reason.INVALID_STAGE_PLAN for error in errors)
            raise ServiceError(Code.INVALID_ARGUMENT, ErrorReason.INVALID_STAGE_PLAN if plan_wrong
                               else ErrorReason.INVALID_FIELD,
                               "; ".join(f"{v.field}: {v.description}" for v in violations),
                               violations=violations)
        part_ids = [part.part_id for part in parts]
        with self.lock:
            with self.store.transaction():
                before = self._require(draft_id).parts
                self.store.add_parts(draft_id, parts)
                if request_id:
                    self.store.record_part_request(draft_id, request_id, part_ids)
                self.store.bump_revision(draft_id, NEW_STAMP)
            record = self._require(draft_id)
            if not before:
                # The trial run normalised exactly the draft's parts now: keep it.
                self._remember(record, self._pack_signature(record.parts), offered, trial)
            return self._draft(record), part_ids

    @staticmethod
    def _manual_violations(errors: list[FieldError]) -> list[FieldViolation]:
        return _unique([FieldViolation(error.field, error.message) for error in errors])

    @staticmethod
    def _pack_violations(pack: Pack, overrides: PipelineConfig,
                         errors: list[FieldError]) -> list[FieldViolation]:
        """A problem of the pack's own presets (a value they set, or a setting a stage they
        switch on needs) that the overrides leave alone makes the pack invalid; anything else
        is the caller's to fix through config_overrides."""
        pack_id = pack.pack_id
        presets_wrong = {error.field for error in preset_problems(pack.defaults)}
        ours, packs = [], []
        for error in errors:
            path = error.field.removeprefix("config.")
            from_pack = ((error.field in presets_wrong or _set_in(pack.defaults, path))
                         and not _set_in(overrides, path))
            if error.field.startswith("config.") and from_pack:
                packs.append(f"preset {path}: {error.message}")
            elif error.field.startswith("config."):
                ours.append(FieldViolation(f"config_overrides.{path}", error.message))
            else:
                ours.append(FieldViolation(error.field, error.message))
        if packs:
            raise ServiceError(Code.INVALID_ARGUMENT, ErrorReason.PACK_INVALID,
                               f"pack {pack_id!r}: {pack_id}.json: "
                               + "; ".join(dict.fromkeys(packs))
                               + " (fix the pack, or set these in config_overrides)",
                               metadata={"pack_id": pack_id})
        return _unique(ours)

    def remove_part(self, draft_id: str, part_id: str) -> Draft:
        """The draft without the part `part_id` (PART_NOT_FOUND when it has none)."""
        with self.lock, self.store.transaction():
            self._require(draft_id)
            if not self.store.remove_part(draft_id, part_id):
                raise ServiceError(Code.NOT_FOUND, ErrorReason.PART_NOT_FOUND,
                                   f"draft {draft_id} has no part {part_id!r}")
            self.store.bump_revision(draft_id, NEW_STAMP)
        return self.get_draft(draft_id)

    def clear_draft(self, draft_id: str) -> Draft:
        """The draft without any part, at a new revision."""
        with self.lock, self.store.transaction():
            self._require(draft_id)
            self.store.clear_parts(draft_id)
            self.store.bump_revision(draft_id, NEW_STAMP)
        return self.get_draft(draft_id)

    def _require(self, draft_id: str) -> DraftRecord:
        record = self.store.get_draft(draft_id)
        if record is None:
            raise _draft_not_found(draft_id)
        return record

    # --- normalisation ------------------------------------------------------------------

    def _pack_signature(self, parts: Sequence[DraftPart]) -> tuple[object, ...]:
        pack_ids = sorted({p.pack_id for p in parts if isinstance(p, PackRowPart)})
        return tuple(self.packs.signature(pack_id) for pack_id in pack_ids)

    def _normalized(self, record: DraftRecord, signature: tuple[object, ...],
                    offered: OfferedNames, remember: bool = True) -> NormalizedBundle:
        bundle = self._bundles.get((record.draft_id, record.revision, signature, offered))
        if bundle is None:
            bundle = normalize_draft(record.parts, DerivedSeedSource(record.draft_id),
                                     self.packs, limits=self.limits, offered=offered)
        if remember:
            self._remember(record, signature, offered, bundle)
        return bundle

    def _remember(self, record: DraftRecord, signature: tuple[object, ...],
                  offered: OfferedNames, bundle: NormalizedBundle) -> None:
        key = (record.draft_id, record.revision, signature, offered)
        self._forget(record.draft_id, keep=key)  # an older version is never asked for again
        self._bundles[key] = bundle
        self._bundles.move_to_end(key)
        while len(self._bundles) > CACHED_BUNDLES:
            self._bundles.popitem(last=False)

    def _forget(self, draft_id: str, keep: BundleKey | None = None) -> None:
        for key in [key for key in self._bundles if key[0] == draft_id and key != keep]:
            del self._bundles[key]

    # --- enqueue ------------------------------------------------------------------------

    def enqueue(self, draft_id: str, run_mode: RunMode, source: JobSource, priority: Priority,
                label: str, request_id: str, expected_revision: int) -> Job:
        """Submit the previewed jobs as one job; clear the draft once the queue has it."""
        with self.lock:
            draft = self.get_draft(draft_id)
            record = draft.record
            # A retry names the revision it previewed (or its request id); the draft has moved
            # on to a new, empty revision since that enqueue.
            done = self.store.enqueued_job(draft_id, expected_revision or record.revision,
                                           request_id)
            if done is not None:
                return self.lookup(done)
            self._check_enqueue(draft, run_mode, expected_revision)
            origin = JobOrigin(run_mode=run_mode, source=source or _default_source(run_mode),
                               prompt_source=_prompt_source(record.parts),
                               prompt_pack_id=_single_pack(record.parts), draft_id=draft_id,
                               draft_revision=record.revision)
            # The queue dedups on this id, so a retry of this revision after a lost reply
            # submits nothing new, whatever request id the retry carries.
            queue_request = f"draft/{draft_id}/{record.revision}"
            job = self.submit(draft.bundle, origin, priority, label, queue_request)
            with self.store.transaction():
                self.store.record_enqueue(draft_id, record.revision, request_id, job.job_id)
                self.store.clear_parts(draft_id)
                self.store.bump_revision(draft_id, NEW_STAMP)
            self._forget(draft_id)
            return job

    @staticmethod
    def _check_enqueue(draft: Draft, run_mode: RunMode, expected_revision: int) -> None:
        if run_mode not in (RunMode.DIRECT, RunMode.QUEUE):
            raise invalid_argument("run_mode", "RUN_MODE_DIRECT or RUN_MODE_QUEUE")
        if expected_revision and expected_revision != draft.record.revision:
            raise ServiceError(Code.FAILED_PRECONDITION, ErrorReason.DRAFT_REVISION_MISMATCH,
                f"the draft is at revision {draft.record.revision}, not {expected_revision}")
        if not draft.bundle.jobs:
            raise ServiceError(Code.FAILED_PRECONDITION, ErrorReason.DRAFT_EMPTY,
                               f"draft {draft.record.draft_id} has no job to enqueue")

    # --- packs --------------------------------------------------------------------------

    def load_pack(self, pack_id: str) -> Pack:
        """The pack as it is on disk now (PackError: not found, or cannot be read)."""
        return self.packs.load_pack(pack_id)


# The stamp of a revision nobody has read yet: the first read records what it makes (_stamp).
NEW_STAMP = ""


def _stamp(signature: tuple[object, ...], unoffered_parts: tuple[str, ...]) -> str:
    """What a revision makes, given its parts: the versions of the pack files it reads and the
    parts that name something no connected runner offers (written as the pack versions alone
    when there are none, as before names were checked)."""
    basis = (signature, unoffered_parts) if unoffered_parts else signature
    return hashlib.sha256(repr(basis).encode()).hexdigest()[:16]


def _unique(violations: list[FieldViolation]) -> list[FieldViolation]:
    """Each field once (one bad override repeats on every row it applies to)."""
    return list(dict.fromkeys(violations))


def _set_in(config: PipelineConfig, path: str) -> bool:
    """Whether `path` (e.g. "txt2img.width") names a field the caller set (non-zero)."""
    value: object = config
    for part in path.split("."):
        name = part.split("[", 1)[0]
        if not hasattr(value, name):
            return False
        value = getattr(value, name)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return bool(value != type(value)())
    return bool(value)


def _default_source(run_mode: RunMode) -> JobSource:
    return JobSource.RUN_NOW if run_mode == RunMode.DIRECT else JobSource.ADD_TO_QUEUE


def _prompt_source(parts: Sequence[DraftPart]) -> PromptSource:
    return PromptSource.PACK if any(isinstance(p, PackRowPart) for p in parts) else (
        PromptSource.MANUAL)


def _single_pack(parts: Sequence[DraftPart]) -> str:
    packs = {p.pack_id for p in parts if isinstance(p, PackRowPart)}
    return packs.pop() if len(packs) == 1 else ""
