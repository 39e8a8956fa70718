"""A submitted job's entries, checked and summarised in their wire form.

A bundle may submit 10,000 entries in one SubmitJob. Turning each into a domain NormalizedJob
and back costs about 25 µs an entry, and recomputing each config hash from scratch about as much
again: half a second before the job is even stored. The queue needs neither. It schedules by a
few facts about the entries (an EntryBatch) and stores and forwards the entries as they came, so
this module reads those facts straight from the generated messages, and re-checks every config
hash with one JobHasher per group of entries that agree on everything but the varying fields.

What is stored is what the domain conversion would have written (no unknown fields, no
submessage that is set but all defaults): GetJob, the runner and the history read the entries
back through that conversion, and the submitted event must equal what they read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor

from stablenew.contract.config_hash import NOT_HASHED, config_hash
from stablenew.contract.errors import (
    Code,
    ErrorReason,
    FieldViolation,
    ServiceError,
    invalid_argument,
)
from stablenew.contract.job_hasher import VARYING_FIELDS, JobHasher
from stablenew.contract.model import NormalizedJob, StageType, image_count
from stablenew.contract.pipeline_limits import entry_problems, varying_problems
from stablenew.contract.proto_mapping import from_request, to_proto
from stablenew.queue import codec
from stablenew.queue.domain import EntryBatch
from stablenew.v1 import pipeline_pb2

# The most entries one job holds: what one bundle may hold (the bundle's default maximum).
# With the per-entry limits (batch size 8, 100 iterations) it keeps a job's image count and
# its entry count within their wire types.
MAX_ENTRIES = 100_000
# Fields two entries may differ in and still share a JobHasher: the ones it splices in, and
# the ones the config hash does not cover.
_NOT_IN_GROUP_KEY = (*VARYING_FIELDS, *sorted(NOT_HASHED))
# A hasher costs about three full hashes to set up: the first entries of a group are hashed in
# full, so that a job of many small groups is no slower than hashing everything in full.
_HASHED_IN_FULL = 3


def entry_batch(messages: Sequence[pipeline_pb2.NormalizedJob]) -> EntryBatch:
    """INVALID_ARGUMENT naming the field for no entries or too many, an empty or unknown stage
    plan, an unknown enum value, a value the bundle would refuse (stablenew.contract.
    pipeline_limits: a job submitted directly is held to the same rules), or a config hash that
    does not match its entry. Drops the messages'
    unknown fields in place."""
    if not messages:
        raise invalid_argument("entries", "a job needs at least one normalized job")
    if len(messages) > MAX_ENTRIES:
        raise invalid_argument("entries", f"at most {MAX_ENTRIES:,} normalized jobs in one job "
                               f"(got {len(messages):,})")
    checker = _EntryChecker()
    stored: list[pipeline_pb2.NormalizedJob] = []
    plans: dict[tuple[int, ...], tuple[StageType, ...]] = {}  # the few distinct plans, checked
    longest: tuple[StageType, ...] = ()
    images = 0
    models: set[str] = set()
    for index, message in enumerate(messages):
        numbers = tuple(message.stage_plan)
        plan = plans.get(numbers)
        if plan is None:
            plan = plans[numbers] = _stage_plan(index, numbers)
            if len(plan) > len(longest):
                longest = plan
        _check_bookkeeping_enums(index, message)
        stored.append(checker.checked(index, message))
        images += image_count(message.batch_size, message.n_iter)
        models.add(message.model)
    stages = {stage for plan in plans.values() for stage in plan}
    models.discard("")
    return EntryBatch(
        encoded=codec.encode_entries(stored), count=len(messages), estimated_images=images,
        longest_stage_plan=longest, has_adetailer=StageType.ADETAILER in stages,
        has_upscale=StageType.UPSCALE in stages,
        config_hashes=tuple(message.config_hash for message in messages),
        first_prompt=messages[0].prompt, required_models=tuple(sorted(models)),
        preferred_model=messages[0].model)


def entry_batch_of(entries: Sequence[NormalizedJob]) -> EntryBatch:
    """The batch for entries the queue already holds as objects (a retry)."""
    return entry_batch([to_proto(entry) for entry in entries])


def _stage_plan(index: int, numbers: tuple[int, ...]) -> tuple[StageType, ...]:
    if not numbers:
        raise invalid_argument(f"entries[{index}].stage_plan", "empty stage plan")
    try:
        return tuple(StageType(number) for number in numbers)
    except ValueError as error:
        raise invalid_argument(f"entries[{index}].stage_plan", str(error)) from None


def _known_numbers(message_type: Descriptor) -> dict[str, frozenset[int]]:
    return {field.name: frozenset(value.number for value in field.enum_type.values)
            for field in message_type.fields if field.enum_type is not None}


# The group key leaves out an entry's origin and tags, so the group's first entry (converted in
# full) does not vouch for their enum values; a value this version does not know would only
# fail later, when a runner or the history converts the entry.
_ORIGIN_ENUMS = _known_numbers(pipeline_pb2.EntryOrigin.DESCRIPTOR)
_TAG_ENUMS = _known_numbers(pipeline_pb2.PromptTag.DESCRIPTOR)


def _check_bookkeeping_enums(index: int, message: pipeline_pb2.NormalizedJob) -> None:
    for name, known in _ORIGIN_ENUMS.items():
        _check_enum(f"entries[{index}].origin.{name}", getattr(message.origin, name), known)
    for number, tag in enumerate(message.tags):
        for name, known in _TAG_ENUMS.items():
            _check_enum(f"entries[{index}].tags[{number}].{name}", getattr(tag, name), known)


def _check_enum(field_path: str, value: int, known: frozenset[int]) -> None:
    if value not in known:
        raise invalid_argument(field_path, f"unknown value {value}")


@dataclass
class _Group:
    """Entries that agree on everything but the spliced and unhashed fields."""

    first: NormalizedJob
    # The shared part is as the domain conversion writes it, so an entry of the group can be
    # stored as it came once its origin is (the only submessage outside the shared part).
    canonical: bool
    size: int = 1
    hasher: JobHasher | None = None


class _EntryChecker:
    """Recomputes config hashes: in full for the first entries of a group, by splicing the
    varying fields into the first entry's encoding (JobHasher) for the rest of the group."""

    def __init__(self) -> None:
        self._groups: dict[bytes, _Group] = {}
        self._scratch = pipeline_pb2.NormalizedJob()

    def checked(self, index: int,
                message: pipeline_pb2.NormalizedJob) -> pipeline_pb2.NormalizedJob:
        """The entry as it is to be stored, once its config hash is found right."""
        message.DiscardUnknownFields()
        if message.HasField("origin") and not message.origin.ByteSize():
            message.ClearField("origin")  # all defaults: the conversion leaves it unset
        group, expected = self._expected(index, message)
        if message.config_hash != expected:
            raise ServiceError(Code.INVALID_ARGUMENT, ErrorReason.CONFIG_HASH_MISMATCH,
                f"entries[{index}].config_hash: {message.config_hash!r} does not match the "
                f"entry (recomputed {expected})",
                violations=[FieldViolation(f"entries[{index}].config_hash", "does not match")],
            )
        # Values after the hash: a hash that does not match says more about the sender.
        if group.size == 1:
            _refuse(entry_problems(group.first, f"entries[{index}]"))
        else:  # the group's first entry was checked in full
            _refuse(varying_problems(message.seed, message.subseed, message.input_images,
                                     f"entries[{index}]"))
        if group.canonical:
            return message
        stored: pipeline_pb2.NormalizedJob = to_proto(_to_domain(index, message))
        return stored

    def _expected(self, index: int,
                  message: pipeline_pb2.NormalizedJob) -> tuple[_Group, str]:
        key = self._group_key(message)
        group = self._groups.get(key)
        if group is None:
            first = _to_domain(index, message)
            group = self._groups[key] = _Group(
                first, canonical=self._group_key(to_proto(first)) == key)
            return group, config_hash(first)
        group.size += 1
        if group.size <= _HASHED_IN_FULL:
            return group, config_hash(_to_domain(index, message))
        if group.hasher is None:
            group.hasher = JobHasher(group.first)
        return group, group.hasher.hash(message.prompt, message.negative_prompt, message.seed,
                                        message.subseed, message.input_images)

    def _group_key(self, message: pipeline_pb2.NormalizedJob) -> bytes:
        """The entry's wire form without the fields a JobHasher splices or the hash skips:
        equal keys mean equal entries apart from those fields."""
        scratch = self._scratch
        scratch.CopyFrom(message)
        for name in _NOT_IN_GROUP_KEY:  # domain field names, the same as the message's
            scratch.ClearField(name)  # type: ignore[arg-type]
        return scratch.SerializeToString(deterministic=True)


def _refuse(problems: list[tuple[str, str]]) -> None:
    """INVALID_ARGUMENT naming every field at fault, if there is one."""
    if problems:
        raise ServiceError(
            Code.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD,
            "; ".join(f"{field}: {problem}" for field, problem in problems),
            violations=[FieldViolation(field, problem) for field, problem in problems])


def _to_domain(index: int, message: pipeline_pb2.NormalizedJob) -> NormalizedJob:
    return from_request(NormalizedJob, message, f"entries[{index}]")
