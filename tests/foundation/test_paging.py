"""Keyset paging by name (`stablenew.runtime.paging.page_by_name`), the one paging of the
queue's ListRunners and ListConsumers: every item once, in order, across pages of any size, no
token after the last page, and a token of another list refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stablenew.contract.errors import ErrorReason, ServiceError
from stablenew.runtime.paging import PageTokens, page_by_name

SECRET = b"s" * 32


def _after(names: list[str]) -> tuple[Callable[[str, int], list[str]], list[int]]:
    """read_after over a sorted list, counting how many items each call read."""
    reads: list[int] = []

    def read_after(after: str, limit: int) -> list[str]:
        found = [name for name in names if name > after][:limit]
        reads.append(len(found))
        return found
    return read_after, reads


def _walk(names: list[str], size: int) -> tuple[list[list[str]], list[int]]:
    tokens = PageTokens(SECRET, "test.List")
    read_after, reads = _after(names)
    pages: list[list[str]] = []
    token = ""
    while True:
        page, token = page_by_name(tokens, token, size, read_after, lambda name: name)
        pages.append(page)
        if not token:
            return pages, reads


@pytest.mark.parametrize(("names", "size", "expected"), [
    (["a", "b", "c", "d", "e"], 2, [["a", "b"], ["c", "d"], ["e"]]),
    (["a", "b", "c", "d"], 2, [["a", "b"], ["c", "d"]]),  # a full last page ends the list
    (["a"], 50, [["a"]]),
    ([], 50, [[]]),
])
def test_every_name_once_in_order(names: list[str], size: int,
                                  expected: list[list[str]]) -> None:
    pages, reads = _walk(names, size)
    assert pages == expected
    assert all(read <= size + 1 for read in reads)


def test_a_token_of_another_list_is_refused() -> None:
    read_after, _ = _after(["a", "b", "c"])
    _, token = page_by_name(PageTokens(SECRET, "queue.ListRunners"), "", 1, read_after,
                            lambda name: name)
    with pytest.raises(ServiceError) as caught:
        page_by_name(PageTokens(SECRET, "queue.ListConsumers"), token, 1, read_after,
                     lambda name: name)
    assert caught.value.reason == ErrorReason.INVALID_PAGE_TOKEN
