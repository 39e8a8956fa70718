"""The bundle's use cases: drafts and their parts, preview, and enqueue.

A draft's normalized jobs are computed once per (draft, revision, pack files) and kept, so the
pages of PreviewDraft and the EnqueueDraft that follows see the very same jobs: what was
previewed is what is queued. Seeds derive from the draft id, so adding a part never changes the
seeds of the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stablenew.bundle.expansion import ExpansionLimits
from stablenew.bundle.normalize import (
    DraftPart,
    ManualPart,
    NormalizedBundle,
    PackRowPart,
    normalize_draft,
)
from stablenew.bundle.packs.library import PackLibrary
from stablenew.bundle.packs.model import Pack
from stablenew.bundle.pipeline_rules import preset_problems
from stablenew.bundle.problems import FieldError, PackError, Reason
from stablenew.bundle.seeds import DerivedSeedSource
from stablenew.bundle.store import BundleStore, DraftRecord
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
from stablenew.runtime.paging import PageTokens, stored_secret
from stablenew.runtime.sqlite_db import Transaction

CACHED_BUNDLES = 8
# A normalised draft is cached by draft id, revision and the versions of the packs it uses.
BundleKey = tuple[str, int, tuple[object, ...]]

# entries, origin, priority, label, request id -> the queued job
Submit = Callable[[NormalizedBundle, JobOrigin, Priority, str, str], Job]
# job id -> the queued job
Lookup = Callable[[str], Job]


def _draft_not_found(draft_id: str) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, ErrorReason.DRAFT_NOT_FOUND,
                        f"draft {draft_id!r} not found", metadata={"draft_id": draft_id})


def pack_error(error: PackError) -> ServiceError:
    reason = (ErrorReason.PACK_NOT_FOUND if error.reason == Reason.PACK_NOT_FOUND
              else ErrorReason.PACK_INVALID)
    code = Code.NOT_FOUND if reason == ErrorReason.PACK_NOT_FOUND else Code.INVALID_ARGUMENT
    return ServiceError(code, reason, str(error), metadata={"pack_id": error.pack_id})


@dataclass(frozen=True)
class Draft:
    record: DraftRecord
    bundle: NormalizedBundle
    # Changes with the revision and with any pack file the draft uses: what a preview page
    # token is bound to, so pages never mix two versions of a pack.
    version: str


class BundleCore:
    def __init__(self, store: BundleStore, packs: PackLibrary, submit: Submit,
                 lookup: Lookup, limits: ExpansionLimits | None = None) -> None:
        self.store = store
        self.packs = packs
        self.limits = limits or ExpansionLimits()
        self.submit = submit
        self.lookup = lookup
        self.lock = threading.RLock()
        self._bundles: OrderedDict[BundleKey, NormalizedBundle] = OrderedDict()
        self.secret = stored_secret(store.db, store.setting, store.set_setting)

    def page_tokens(self, scope: str) -> PageTokens:
        return PageTokens(self.secret, scope)

    # --- drafts -------------------------------------------------------------------------

    def create_draft(self, display_name: str, request_id: str) -> Draft:
        with self.lock, Transaction(self.store.db):
            existing = self.store.draft_for_request(request_id) if request_id else None
            draft_id = existing or uuid.uuid4().hex
            if existing is None:
                self.store.insert_draft(draft_id, display_name, request_id, _stamp(()))
        return self.get_draft(draft_id)

    def get_draft(self, draft_id: str) -> Draft:
        """The draft as it is now. A pack file it reads that changed on disk since its revision
        was made changes what it expands to, so it makes a new revision: an enqueue that
        expects the previewed revision is then refused rather than queueing other jobs."""
        with self.lock:
            return self._draft(self._require(draft_id))

    def _draft(self, record: DraftRecord, remember: bool = True) -> Draft:
        signature = self._pack_signature(record.parts)
        if _stamp(signature) != record.pack_stamp:
            with Transaction(self.store.db):
                self.store.bump_revision(record.draft_id, _stamp(signature))
            record = self._require(record.draft_id)
        version = hashlib.sha256(repr((record.revision, signature)).encode()).hexdigest()[:16]
        return Draft(record, self._normalized(record, signature, remember), version)

    def list_drafts(self, size: int, after: str) -> tuple[list[Draft], str]:
        with self.lock:
            ids = self.store.draft_ids_after(after, size + 1)
            # A listing does not push the drafts being previewed out of the cache.
            drafts = [self._draft(self._require(draft_id), remember=False)
                      for draft_id in ids[:size]]
        return drafts, ids[size - 1] if len(ids) > size else ""

    def add_manual_part(self, draft_id: str, prompt: str, negative: str,
                        config: PipelineConfig, input_images: list[str],
                        request_id: str = "") -> tuple[Draft, list[str]]:
        if not prompt.strip() and not input_images:
            raise invalid_argument("prompt", "a manual part needs a prompt (or input images)")
        part = ManualPart(uuid.uuid4().hex, prompt, negative, config, input_images)
        return self._add_parts(draft_id, [part], request_id, self._manual_violations)

    def add_pack_parts(self, draft_id: str, pack_id: str, rows: Sequence[int], prepend: str,
                       overrides: PipelineConfig,
                       request_id: str = "") -> tuple[Draft, list[str]]:
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
        trial = normalize_draft(parts, DerivedSeedSource(draft_id), self.packs,
                                limits=self.limits)
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
            with Transaction(self.store.db):
                before = self._require(draft_id).parts
                self.store.add_parts(draft_id, parts)
                if request_id:
                    self.store.record_part_request(draft_id, request_id, part_ids)
                self._new_revision(draft_id, before + parts)
            record = self._require(draft_id)
            if not before:
                # The trial run normalised exactly the draft's parts now: keep it.
                self._remember(record, self._pack_signature(record.parts), trial)
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
        with self.lock, Transaction(self.store.db):
            parts = self._require(draft_id).parts
            if not self.store.remove_part(draft_id, part_id):
                raise ServiceError(Code.NOT_FOUND, ErrorReason.PART_NOT_FOUND,
                                   f"draft {draft_id} has no part {part_id!r}")
            self._new_revision(draft_id, [part for part in parts if part.part_id != part_id])
        return self.get_draft(draft_id)

    def clear_draft(self, draft_id: str) -> Draft:
        with self.lock, Transaction(self.store.db):
            self._require(draft_id)
            self.store.clear_parts(draft_id)
            self._new_revision(draft_id, [])
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

    def _new_revision(self, draft_id: str, parts: Sequence[DraftPart]) -> None:
        """After a change of the parts (inside its transaction); `parts` as they are now."""
        self.store.bump_revision(draft_id, _stamp(self._pack_signature(parts)))

    def _normalized(self, record: DraftRecord, signature: tuple[object, ...],
                    remember: bool = True) -> NormalizedBundle:
        bundle = self._bundles.get((record.draft_id, record.revision, signature))
        if bundle is None:
            bundle = normalize_draft(record.parts, DerivedSeedSource(record.draft_id),
                                     self.packs, limits=self.limits)
        if remember:
            self._remember(record, signature, bundle)
        return bundle

    def _remember(self, record: DraftRecord, signature: tuple[object, ...],
                  bundle: NormalizedBundle) -> None:
        key = (record.draft_id, record.revision, signature)
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
            with Transaction(self.store.db):
                self.store.record_enqueue(draft_id, record.revision, request_id, job.job_id)
                self.store.clear_parts(draft_id)
                self._new_revision(draft_id, [])
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
        try:
            return self.packs.load_pack(pack_id)
        except PackError as error:
            raise pack_error(error) from None


def _stamp(signature: tuple[object, ...]) -> str:
    return hashlib.sha256(repr(signature).encode()).hexdigest()[:16]


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
