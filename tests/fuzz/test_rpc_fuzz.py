"""The short fuzz of every RPC against the real services, each in its own process, started once
for the module: no drawn request may end INTERNAL or UNKNOWN, and no service may exit. (`make
faults` runs the long version, 500 examples per RPC, and prints the histogram.) Nor may a
service log a traceback while answering them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.rpc_fuzz import SERVICES, RpcReport, describe_findings, fuzz_services
from tests.fuzz.stack import ServiceStack, running_stack

pytestmark = pytest.mark.e2e
EXAMPLES = 25


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    with running_stack(tmp_path_factory.mktemp("fuzz")) as started:
        yield started


@pytest.fixture(scope="module")
def reports(stack: ServiceStack) -> list[RpcReport]:
    return list(fuzz_services(stack.addresses, EXAMPLES))


def test_every_rpc_was_fuzzed(reports: list[RpcReport]) -> None:
    expected = sum(len(service.methods) for service in SERVICES.values())
    assert len(reports) == expected
    # Hypothesis draws fewer than EXAMPLES when a request has few distinct values (an empty
    # request has one), never none.
    assert all(report.codes for report in reports)


def test_no_request_reaches_internal_or_unknown(reports: list[RpcReport]) -> None:
    found = [report.method for report in reports if report.found]
    assert found == [], describe_findings(reports)


def test_no_service_exits(reports: list[RpcReport], stack: ServiceStack) -> None:
    assert reports  # the fuzz ran first
    assert stack.exits() == {}


def test_every_service_still_answers(reports: list[RpcReport], stack: ServiceStack) -> None:
    assert reports  # the fuzz ran first
    assert stack.unanswering() == []


def test_no_traceback_in_any_log(reports: list[RpcReport], stack: ServiceStack) -> None:
    assert reports  # the fuzz ran first
    assert {name: count for name, count in stack.tracebacks().items() if count} == {}
