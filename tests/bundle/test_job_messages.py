"""A normalized bundle's jobs are converted to messages once, page by page, and the
conversions go when the bundle goes."""

from __future__ import annotations

import gc

from stablenew.bundle.domain import NameCheck, NormalizedBundle
from stablenew.bundle.mapping import JobMessages
from stablenew.bundle.summary import summarize
from stablenew.contract.model import NormalizedJob, StageType
from stablenew.contract.proto_mapping import to_proto


def bundle_of(count: int) -> NormalizedBundle:
    jobs = [NormalizedJob(index=index, prompt=f"p{index}", stage_plan=[StageType.TXT2IMG])
            for index in range(count)]
    return NormalizedBundle(jobs, [], summarize(1, jobs, [], NameCheck()))


def test_pages_are_the_jobs_converted_once() -> None:
    messages, bundle = JobMessages(), bundle_of(5)
    first = messages.page(bundle, 0, 2)
    everything = messages.all(bundle)
    assert everything == [to_proto(job) for job in bundle.jobs]
    assert all(a is b for a, b in zip(first, everything[:2], strict=True))
    assert messages.page(bundle, 4, 10) == everything[4:]
    assert messages.page(bundle, 7, 10) == []


def test_two_bundles_never_share_messages() -> None:
    messages = JobMessages()
    one, other = bundle_of(2), bundle_of(2)
    other.jobs[1].prompt = "changed"
    assert messages.all(one)[1].prompt == "p1"
    assert messages.all(other)[1].prompt == "changed"


def test_the_conversions_go_with_the_bundle() -> None:
    messages, bundle = JobMessages(), bundle_of(3)
    messages.all(bundle)
    del bundle
    gc.collect()
    assert len(messages._converted) == 0
