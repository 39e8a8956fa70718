"""Every request limit the services check is stated in the comment of the field it applies to
(the protos are the contract clients read): each row below names a field and the limit, taken
from the constant the check uses, that its comment must state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stablenew.bundle.servicer import MAX_ROW_INDICES
from stablenew.contract.request_limits import (
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_MAP_ENTRIES,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
)
from stablenew.history.mapping import (
    MAX_FILTER_STATES,
    MAX_ID_LENGTH,
    MAX_IMPORT_JOBS,
    MAX_LABEL_LENGTH,
    MAX_PAGE_TOKEN_LENGTH,
    MAX_TEXT_LENGTH,
)
from stablenew.queue.entries import MAX_ENTRIES
from stablenew.runner.core import MAX_NAME_BYTES, MAX_PATH_CHARS

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "stablenew" / "v1"


def _n(value: int) -> str:
    """A number as the comments write it: 1,000 and up with thousands separators."""
    return f"{value:,}" if value >= 10_000 else str(value)


ID = f"at most {MAX_ID_CHARS} characters"
NAME = f"at most {MAX_NAME_CHARS} characters"
TEXT = f"at most {MAX_TEXT_CHARS:,} characters"

LIMITS = [
    ("bundle_service", "CreateDraftRequest", "display_name", NAME),
    ("bundle_service", "CreateDraftRequest", "request_id", ID),
    ("bundle_service", "GetDraftRequest", "draft_id", ID),
    ("bundle_service", "AddPartRequest", "prompt", TEXT),
    ("bundle_service", "AddPartRequest", "negative_prompt", TEXT),
    ("bundle_service", "AddPartRequest", "input_images", f"At most {MAX_LIST_ITEMS}"),
    ("bundle_service", "AddPartRequest", "request_id", ID),
    ("bundle_service", "AddPackPartsRequest", "prompt_pack_id", ID),
    ("bundle_service", "AddPackPartsRequest", "row_indices", f"At most {_n(MAX_ROW_INDICES)}"),
    ("bundle_service", "AddPackPartsRequest", "prepend_text", TEXT),
    ("bundle_service", "RemovePartRequest", "part_id", ID),
    ("bundle_service", "EnqueueDraftRequest", "draft_id", ID),
    ("bundle_service", "EnqueueDraftRequest", "label", NAME),
    ("bundle_service", "GetPackRequest", "pack_id", ID),
    ("queue_service", "RunnerInfo", "runner_id", ID),
    ("queue_service", "RunnerInfo", "host", NAME),
    ("queue_service", "RunnerInfo", "models", f"most {MAX_LIST_ITEMS}, each at most "
                                              f"{MAX_NAME_CHARS} characters"),
    ("queue_service", "SubmitJobRequest", "entries", f"at most {_n(MAX_ENTRIES)}"),
    ("queue_service", "SubmitJobRequest", "origin", f"{MAX_ID_CHARS} characters"),
    ("queue_service", "SubmitJobRequest", "label", NAME),
    ("queue_service", "SubmitJobRequest", "metadata", f"at most {MAX_MAP_ENTRIES}, keys at most "
                                                      f"{MAX_ID_CHARS} characters"),
    ("queue_service", "SubmitJobRequest", "request_id", ID),
    ("queue_service", "GetJobRequest", "job_id", ID),
    ("queue_service", "CancelJobRequest", "reason", NAME),
    ("queue_service", "MoveJobRequest", "before_job_id", ID),
    ("queue_service", "RetryJobRequest", "request_id", ID),
    ("queue_service", "WatchJobsRequest", "job_ids", f"At most {MAX_LIST_ITEMS}, each at most "
                                                     f"{MAX_NAME_CHARS} characters"),
    ("queue_service", "WatchJobsRequest", "consumer_id", ID),
    ("queue_service", "AcknowledgeEventsRequest", "consumer_id", ID),
    ("queue_service", "CreateConsumerRequest", "consumer_id", ID),
    ("queue_service", "CreateConsumerRequest", "request_id", ID),
    ("queue_service", "HeartbeatRequest", "lease_id", f"ids at most {MAX_ID_CHARS}"),
    ("queue_service", "CompleteJobRequest", "lease_id", f"ids at most {MAX_ID_CHARS}"),
    ("queue_service", "ReleaseJobRequest", "runner_id", ID),
    ("queue_service", "ReleaseJobRequest", "lease_id", f"ids at most {MAX_ID_CHARS}"),
    ("queue_service", "ReleaseJobRequest", "reason", NAME),
    ("queue_service", "FailJobRequest", "lease_id", f"ids at most {MAX_ID_CHARS}"),
    ("queue_service", "FailJobRequest", "error_message", TEXT),
    ("queue_service", "LeaseJobRequest", "wait_timeout", "at most 30 s"),
    ("runner_service", "ReadImageRequest", "path",
     f"At most {MAX_PATH_CHARS} characters, and at most {MAX_NAME_BYTES} bytes per name"),
    ("history_service", "JobFilter", "states", f"at most {MAX_FILTER_STATES}"),
    ("history_service", "JobFilter", "prompt_pack_id", f"At most {MAX_ID_LENGTH} characters"),
    ("history_service", "JobFilter", "text", f"at most {MAX_TEXT_LENGTH} characters"),
    ("history_service", "HistoryServiceListJobsRequest", "page_token",
     f"at most {MAX_PAGE_TOKEN_LENGTH} characters"),
    ("history_service", "HistoryServiceGetJobRequest", "job_id", f"at most {MAX_ID_LENGTH}"),
    ("history_service", "ListJobEventsRequest", "page_token",
     f"at most {MAX_PAGE_TOKEN_LENGTH} characters"),
    ("history_service", "UpdateJobRequest", "label", f"most {MAX_LABEL_LENGTH} characters"),
    ("history_service", "PruneHistoryRequest", "states", f"At most {MAX_FILTER_STATES}"),
    ("history_service", "ImportedJob", "job", f"at most {MAX_ID_LENGTH} characters"),
    ("history_service", "ImportHistoryRequest", "jobs", f"At most {MAX_IMPORT_JOBS} per request"),
]


def field_comment(proto: str, message: str, field: str) -> str:
    """The comment lines right above `field` in `message`, without their // markers, or those
    of the nearest field above it that has one (fields sharing a comment)."""
    text = (PROTOS / f"{proto}.proto").read_text()
    body = re.search(rf"^message {message} \{{\n(.*?)^\}}", text, re.M | re.S)
    assert body is not None, f"no message {message} in {proto}.proto"
    lines = body.group(1).splitlines()
    at = next((i for i, line in enumerate(lines)
               if re.match(rf"\s*(repeated |optional )?[\w.<>, ]+ {field} = \d+;", line)), None)
    assert at is not None, f"no field {message}.{field}"
    comment: list[str] = []
    for line in reversed(lines[:at]):
        stripped = line.strip()
        if stripped.startswith("//"):
            comment.insert(0, stripped[2:].strip())
        elif comment:
            break
    return "\n".join(comment)


@pytest.mark.parametrize(("proto", "message", "field", "limit"), LIMITS,
                         ids=[f"{m}.{f}" for _, m, f, _ in LIMITS])
def test_the_limit_is_in_the_fields_comment(proto: str, message: str, field: str,
                                            limit: str) -> None:
    comment = field_comment(proto, message, field)
    assert limit.lower() in comment.replace("\n", " ").lower(), comment
