"""The bundle's domain exception: a PackError is a ServiceError that says where the problem is."""

from __future__ import annotations

import pytest

from stablenew.bundle.domain import PackError, row_label
from stablenew.contract.errors import Code, ErrorReason, ServiceError, to_status_proto


@pytest.mark.parametrize(("error", "text"), [
    (PackError("p", "p.json", "is not valid JSON", line=4, column=20),
     "p.json line 4 column 20: is not valid JSON"),
    (PackError("p", "p.json", "unknown key 'x'", field="pack_data.x"),
     "p.json (pack_data.x): unknown key 'x'"),
    (PackError("p", "p.txt", "a control character", line=2), "p.txt line 2: a control character"),
    (PackError("p", "", "invalid pack id"), "p: invalid pack id"),
])
def test_a_pack_error_names_the_file_and_the_place(error: PackError, text: str) -> None:
    assert str(error) == error.message == text
    assert isinstance(error, ServiceError)
    assert (error.code, error.reason, error.metadata) == (
        Code.INVALID_ARGUMENT, ErrorReason.PACK_INVALID, {"pack_id": "p"})


def test_a_missing_pack_is_not_found() -> None:
    error = PackError("ghost", "", "there is no pack 'ghost'", not_found=True)

    status = to_status_proto(error)

    assert (error.code, error.reason) == (Code.NOT_FOUND, ErrorReason.PACK_NOT_FOUND)
    assert (status.code, status.message) == (Code.NOT_FOUND.value,
                                             "ghost: there is no pack 'ghost'")


def test_a_fresh_copy_is_equal_but_new() -> None:
    error = PackError("p", "p.json", "bad", line=1, column=2, field="f", not_found=False)

    copy = error.fresh()

    assert copy == error and copy is not error
    assert (copy.detail, copy.line, copy.column, copy.field) == ("bad", 1, 2, "f")


def test_rows_are_named_with_their_line_when_known() -> None:
    assert row_label("castles", 2, 9) == "castles row 2 (line 9)"
    assert row_label("castles", 2) == "castles row 2"
