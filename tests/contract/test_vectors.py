"""The project's code against the committed test vectors of docs/CONTRACT.md: the canonical
encoding, the config hash, the job hash, the doubles' text, the queue's fast per-part hasher, and
a real queue server that must accept every vector and compute every job hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from stablenew.contract.config_hash import (
    ENCODING_VERSION,
    bundle_hash,
    canonical_encoding,
    config_hash,
)
from stablenew.contract.errors import Code
from stablenew.contract.job_hasher import JobHasher
from stablenew.contract.model import NormalizedJob
from stablenew.contract.pipeline_limits import entry_problems
from stablenew.contract.proto_mapping import from_proto
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2, pipeline_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.contract.make_vectors import (
    VECTORS_PATH,
    build,
    float_text,
    render,
    to_entry,
    to_message,
)
from tests.queue.harness import QueueHarness

VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
JOBS: list[dict[str, Any]] = VECTORS["jobs"]
BUNDLES: list[dict[str, Any]] = VECTORS["bundles"]
BY_NAME = {vector["name"]: vector for vector in JOBS}
_PLANNED = [vector for vector in JOBS if vector["job"].get("stage_plan")]


def _out_of_range(vector: dict[str, Any]) -> bool:
    """A vector of extreme values (hashing edges): the queue refuses it as the bundle would."""
    return bool(entry_problems(from_proto(NormalizedJob, to_message(vector["job"])), "entry"))


RUNNABLE = [vector for vector in _PLANNED if not _out_of_range(vector)]
OUT_OF_RANGE = [vector for vector in _PLANNED if _out_of_range(vector)]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [vector["name"] for vector in vectors]


@pytest.fixture(scope="module")
def queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path_factory.mktemp("contract") / "data", {})
    with harness.running():
        yield harness


def _submit(queue: QueueHarness, entries: list[pipeline_pb2.NormalizedJob]) -> job_pb2.Job:
    request = pb.SubmitJobRequest(entries=entries, origin=job_pb2.JobOrigin(
        run_mode=job_pb2.RUN_MODE_QUEUE, source=job_pb2.JOB_SOURCE_ADD_TO_QUEUE))
    return queue.stub.SubmitJob(request, timeout=30).job


# --- the file ---------------------------------------------------------------------------------


def test_the_vectors_are_of_this_encoding_version() -> None:
    assert VECTORS["encoding_version"] == ENCODING_VERSION


def test_the_generator_still_writes_the_committed_file() -> None:
    # Fails when the encoding changed (bump ENCODING_VERSION, then regenerate on purpose) or when
    # make_vectors.py was edited without regenerating the file.
    assert render(build()) == VECTORS_PATH.read_text(encoding="utf-8")


def test_the_vectors_cover_what_the_contract_promises() -> None:
    stages = {stage for vector in JOBS for stage in vector["job"].get("stage_plan", [])}
    assert stages == {"STAGE_TYPE_TXT2IMG", "STAGE_TYPE_IMG2IMG", "STAGE_TYPE_ADETAILER",
                      "STAGE_TYPE_UPSCALE", 1}
    modes = {vector["job"].get("upscale", {}).get("mode") for vector in JOBS}
    assert {"UPSCALE_MODE_EXTRAS", "UPSCALE_MODE_IMG2IMG"} <= modes
    assert len(JOBS) >= 12
    assert {"NaN", "Infinity", "-Infinity"} <= {
        value for vector in JOBS for value in _leaves(vector["job"]) if isinstance(value, str)}
    assert any(ord(char) > 0xFFFF for vector in JOBS for char in vector["canonical"])


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


# --- the code against the vectors ----------------------------------------------------------------


@pytest.mark.parametrize("vector", JOBS, ids=_ids(JOBS))
def test_canonical_encoding_and_config_hash(vector: dict[str, Any]) -> None:
    entry = to_entry(vector["job"])

    assert canonical_encoding(entry).decode() == vector["canonical"]
    assert config_hash(entry) == vector["config_hash"] == vector["job"]["config_hash"]
    # The definition CONTRACT.md gives: sha256 hex of the encoding's UTF-8 bytes.
    assert hashlib.sha256(vector["canonical"].encode()).hexdigest() == vector["config_hash"]


@pytest.mark.parametrize("vector", JOBS, ids=_ids(JOBS))
def test_the_hash_survives_the_wire(vector: dict[str, Any]) -> None:
    wire = to_message(vector["job"]).SerializeToString()

    entry = from_proto(NormalizedJob, pipeline_pb2.NormalizedJob.FromString(wire))

    assert config_hash(entry) == vector["config_hash"]


@pytest.mark.parametrize("vector", JOBS, ids=_ids(JOBS))
def test_the_per_part_hasher_gives_the_same_hash(vector: dict[str, Any]) -> None:
    entry = to_entry(vector["job"])
    prototype = dataclasses.replace(entry, prompt="another prompt", negative_prompt="x", seed=1,
                                    subseed=2, input_images=["other.png"])

    spliced = JobHasher(prototype).hash(entry.prompt, entry.negative_prompt, entry.seed,
                                        entry.subseed, entry.input_images)

    assert spliced == vector["config_hash"]


def test_equal_hashes_where_only_bookkeeping_or_the_json_form_differ() -> None:
    assert BY_NAME["txt2img-basic"]["config_hash"] == \
        BY_NAME["txt2img-basic-other-json-form"]["config_hash"]
    assert BY_NAME["pack-matrix-variant-0"]["config_hash"] == \
        BY_NAME["pack-matrix-variant-0-elsewhere"]["config_hash"]
    assert len({vector["config_hash"] for vector in JOBS}) == len(JOBS) - 2


@pytest.mark.parametrize("bundle", BUNDLES, ids=_ids(BUNDLES))
def test_job_hash(bundle: dict[str, Any]) -> None:
    hashes = [BY_NAME[name]["config_hash"] for name in bundle["entries"]]

    assert hashes == bundle["entry_hashes"]
    assert bundle_hash(hashes) == bundle["bundle_hash"]
    # CONTRACT.md: joined with single line feeds, none after the last.
    assert hashlib.sha256("\n".join(hashes).encode()).hexdigest() == bundle["bundle_hash"]


def test_doubles_text() -> None:
    wrong = [(case["bits"], case["text"], float_text(_double(case["bits"])))
             for case in VECTORS["floats"]
             if float_text(_double(case["bits"])) != case["text"]]
    assert wrong == []
    assert len(VECTORS["floats"]) > 200


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# --- a real queue agrees -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", RUNNABLE, ids=_ids(RUNNABLE))
def test_the_queue_accepts_every_vector_and_keeps_its_hash(queue: QueueHarness,
                                                           vector: dict[str, Any]) -> None:
    submitted = _submit(queue, [to_message(vector["job"])])

    stored = queue.get(submitted.job_id).entries[0]
    assert stored.config_hash == vector["config_hash"]
    assert config_hash(from_proto(NormalizedJob, stored)) == vector["config_hash"]
    assert submitted.config_hash == bundle_hash([vector["config_hash"]])


@pytest.mark.parametrize("vector", OUT_OF_RANGE, ids=_ids(OUT_OF_RANGE))
def test_the_queue_refuses_a_vector_outside_the_config_limits(queue: QueueHarness,
                                                              vector: dict[str, Any]) -> None:
    request = pb.SubmitJobRequest(entries=[to_message(vector["job"])])
    with pytest.raises(grpc.RpcError) as caught:
        queue.stub.SubmitJob(request, timeout=10)
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_FIELD")


@pytest.mark.parametrize("bundle", BUNDLES, ids=_ids(BUNDLES))
def test_the_queue_computes_every_job_hash(queue: QueueHarness, bundle: dict[str, Any]) -> None:
    entries = [to_message(BY_NAME[name]["job"]) for name in bundle["entries"]]

    submitted = _submit(queue, entries)

    assert submitted.config_hash == bundle["bundle_hash"]
    assert queue.get(submitted.job_id).config_hash == bundle["bundle_hash"]


def test_a_large_part_goes_through_the_queues_fast_hasher(queue: QueueHarness) -> None:
    # More entries of one part than the queue hashes in full: the rest are spliced.
    names = BUNDLES[_ids(BUNDLES).index("part-of-six")]["entries"]
    entries = [to_message(BY_NAME[name]["job"]) for name in names * 3]

    submitted = _submit(queue, entries)

    assert submitted.config_hash == bundle_hash(
        [BY_NAME[name]["config_hash"] for name in names * 3])


@pytest.mark.parametrize("field", ["config_hash", "prompt"])
def test_the_queue_refuses_an_entry_whose_hash_does_not_match(queue: QueueHarness,
                                                              field: str) -> None:
    good = to_message(BY_NAME["txt2img-basic"]["job"])
    bad = to_message(BY_NAME["float-edges"]["job"])
    setattr(bad, field, "0" * 64 if field == "config_hash" else bad.prompt + " ")

    with pytest.raises(grpc.RpcError) as raised:
        _submit(queue, [good, bad])

    details = details_of(raised.value)
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "CONFIG_HASH_MISMATCH")
    assert [violation.field for violation in details.violations] == ["entries[1].config_hash"]


def test_the_queue_refuses_the_vector_without_a_stage_plan(queue: QueueHarness) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _submit(queue, [to_message(BY_NAME["all-unset"]["job"])])

    details = details_of(raised.value)
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_FIELD")
    assert [violation.field for violation in details.violations] == ["entries[0].stage_plan"]
