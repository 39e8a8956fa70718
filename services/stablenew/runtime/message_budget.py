"""A job's entries and results fitted into one message: a job of any size is sent in parts,
from offsets the client passes back, instead of failing the server's send limit (the queue's
and the history's GetJob, the history's exports and pages)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from stablenew.contract.errors import (
    Code,
    ErrorReason,
    FieldViolation,
    ServiceError,
    invalid_argument,
)
from stablenew.v1 import job_pb2

T = TypeVar("T")
M = TypeVar("M", bound=Message)

# What a response's own fields besides the job may take, at most: left out of the budget.
RESPONSE_MARGIN_BYTES = 1024
# A repeated message field's tag and length prefix, at most, per element.
ELEMENT_OVERHEAD = 11


@dataclass(frozen=True)
class JobParts:
    """Where the entries and results a message holds end, and whether any were left out."""

    next_entry_offset: int
    next_result_offset: int
    truncated: bool

    def fields(self) -> dict[str, Any]:
        """The response fields of the same names (GetJob's and ExportHistory's)."""
        return asdict(self)


def checked_offset(value: int, field_path: str) -> int:
    """An entry or result offset of a request; INVALID_ARGUMENT when negative."""
    if value < 0:
        raise invalid_argument(field_path, f"must not be negative (got {value})")
    return value


def too_large_to_send(field_path: str, what: str, size: int, budget: int,
                      advice: str) -> ServiceError:
    """RESOURCE_EXHAUSTED naming `field_path` for something of `size` bytes (`what`) whose
    event could not be sent in one message of the `budget` bytes an event may take."""
    message = (f"{what} is {size:,} bytes, more than the {budget:,} its event may take in a "
               f"message (STABLENEW_MAX_MESSAGE_BYTES less {RESPONSE_MARGIN_BYTES:,}); {advice}")
    return ServiceError(Code.RESOURCE_EXHAUSTED, ErrorReason.INVALID_FIELD,
                        f"{field_path}: {message}",
                        violations=[FieldViolation(field_path, message)])


def add_parts_within(message: job_pb2.Job, entries: Iterable[Message],
                     results: Iterable[Message], entry_offset: int, result_offset: int,
                     room: int) -> JobParts:
    """Append to `message` (a job holding no entries or results) the entries and results from
    the offsets on (`entries`, `results`: those past the offsets) while they fit in `room`
    bytes. At least one entry or result past the offsets is always added, so a client
    following the offsets gets on."""
    room, entries_left = fill(message.entries, entries, room, True)
    _, results_left = fill(message.results, results, room, not message.entries)
    return JobParts(entry_offset + len(message.entries), result_offset + len(message.results),
                    entries_left or results_left)


def fill(target: Any, elements: Iterable[Message], room: int,
         at_least_one: bool) -> tuple[int, bool]:
    """Append the elements to `target` while they fit in `room` bytes; returns the room left
    and whether elements were left out."""
    for count, element in enumerate(elements):
        size = element.ByteSize() + ELEMENT_OVERHEAD
        if size > room and not (at_least_one and count == 0):
            return room, True
        target.append(element)
        room -= size
    return room, False


class BudgetPage(Generic[M]):
    """A page of messages within a message budget: takes messages while they fit; the first is
    always taken, cut down to the budget when it is larger than the whole of it."""

    def __init__(self, budget: int) -> None:
        self.room = budget
        self.messages: list[M] = []
        self.trimmed: list[M] = []

    def add(self, message: M, within: Callable[[int], M]) -> bool:
        """Take `message` if it fits; `within` gives it cut down to a number of bytes (used
        for a first message larger than the budget). False when the page is full."""
        size = message.ByteSize() + ELEMENT_OVERHEAD
        if size > self.room:
            if self.messages:
                return False
            message = within(self.room - ELEMENT_OVERHEAD)
            size = message.ByteSize() + ELEMENT_OVERHEAD
            self.trimmed.append(message)
        self.messages.append(message)
        self.room -= size
        return True


class FullPage(Generic[T]):
    """A page of jobs in the full view within a message budget (ListJobs), as a BudgetPage;
    a first job larger than the whole budget is named in truncated_job_ids. `whole` gives a
    job's full message, `within` the message of its first part that fits in a number of
    bytes."""

    def __init__(self, budget: int, whole: Callable[[T], job_pb2.Job],
                 within: Callable[[T, int], job_pb2.Job]) -> None:
        self._page: BudgetPage[job_pb2.Job] = BudgetPage(budget)
        self._whole = whole
        self._within = within

    @property
    def jobs(self) -> list[job_pb2.Job]:
        return self._page.messages

    @property
    def truncated_job_ids(self) -> list[str]:
        return [job.job_id for job in self._page.trimmed]

    def take(self, job: T) -> bool:
        return self._page.add(self._whole(job), lambda room: self._within(job, room))
