"""The pack library: listing, hot reload, and everything a hostile or broken folder can hold."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from stablenew.bundle.domain import PackError
from stablenew.bundle.packs import PackFormat, PackLibrary
from stablenew.bundle.packs.files import FileStamp, read_capped
from stablenew.contract.errors import Code, ErrorReason
from tests.bundle.helpers import write, write_json

MB = 1024 * 1024


@pytest.fixture
def library(tmp_path: Path) -> PackLibrary:
    return PackLibrary(tmp_path / "packs")


@pytest.fixture
def packs(tmp_path: Path) -> Path:
    folder = tmp_path / "packs"
    folder.mkdir()
    return folder


def test_list_packs_lists_good_and_bad_packs_sorted_and_never_raises(
        packs: Path, library: PackLibrary) -> None:
    write(packs, "good.txt", "a cat\n\na dog\n")
    write(packs, "broken.json", "{")
    write(packs, "binary.tsv", b"\x00\x00\x00")
    write(packs, "empty.txt", "# nothing but a comment\n")
    write(packs, ".hidden.txt", "not a pack\n")
    write(packs, "notes.md", "not a pack\n")
    (packs / "folder.txt").mkdir()

    summaries = {summary.pack_id: summary for summary in library.list_packs()}

    assert sorted(summaries) == ["binary", "broken", "empty", "folder", "good"]
    good = summaries["good"]
    assert (good.name, good.format, good.row_count, good.error_message) == (
        "good", PackFormat.TXT, 2, "")
    assert good.modify_time is not None
    assert summaries["broken"].error_message.startswith("broken.json line 1 column 2")
    assert summaries["broken"].format == PackFormat.JSON
    assert "binary data" in summaries["binary"].error_message
    assert summaries["empty"].error_message == "empty.txt: has no prompt rows"
    assert summaries["folder"].error_message == "folder.txt: is not a regular file"


def test_list_packs_survives_an_unexpected_failure(packs: Path, library: PackLibrary,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write(packs, "a.txt", "a\n")
    write(packs, "b.txt", "b\n")

    def explode(*_args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(PackLibrary, "_parse", explode)

    summaries = library.list_packs()

    assert [s.error_message for s in summaries] == ["cannot be read: disk on fire"] * 2


def test_a_missing_library_folder_lists_nothing(tmp_path: Path) -> None:
    assert PackLibrary(tmp_path / "nowhere").list_packs() == []


def test_an_unknown_pack_is_not_found(packs: Path, library: PackLibrary) -> None:
    with pytest.raises(PackError) as caught:
        library.load_pack("ghost")

    assert (caught.value.code, caught.value.reason) == (Code.NOT_FOUND,
                                                        ErrorReason.PACK_NOT_FOUND)
    assert caught.value.metadata == {"pack_id": "ghost"}


def test_changes_on_disk_are_picked_up_without_a_restart(packs: Path,
                                                         library: PackLibrary) -> None:
    path = write(packs, "live.txt", "first version\n")
    first = library.load_pack("live")
    assert library.load_pack("live") is first  # unchanged: served from the cache

    path.write_text("second version, longer\n\nand a new row\n")
    second = library.load_pack("live")
    assert [row.positive for row in second.rows] == ["second version, longer", "and a new row"]

    # Same size, only the modification time moves: still a new version.
    path.write_text("third version, longer!\n\nand a new row\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert library.load_pack("live").rows[0].positive == "third version, longer!"

    write_json(packs, "live.json", {"pack_data": {"name": "Live!"}})
    assert library.load_pack("live").name == "Live!"

    path.unlink()
    (packs / "live.json").unlink()
    with pytest.raises(PackError):
        library.load_pack("live")


def test_a_pack_that_becomes_valid_is_reloaded(packs: Path, library: PackLibrary) -> None:
    path = write(packs, "fixme.json", "{")
    with pytest.raises(PackError):
        library.load_pack("fixme")

    path.write_text('{"pack_data": {"slots": [{"text": "fixed"}]}}')

    assert library.load_pack("fixme").rows[0].positive == "fixed"
    assert library.list_packs()[0].error_message == ""


def test_a_broken_pack_is_parsed_once_and_raised_as_a_new_equal_error(
        packs: Path, library: PackLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    write(packs, "broken.json", '{"pack_data": {"slots": [{"text": 5}]}}')
    with pytest.raises(PackError) as first:
        library.load_pack("broken")

    def no_parse(*_args: Any) -> None:
        raise AssertionError("an unchanged broken pack was parsed again")

    monkeypatch.setattr(PackLibrary, "_parse", no_parse)
    with pytest.raises(PackError) as second:
        library.load_pack("broken")

    # A new exception each time: re-raising one stored instance would grow its traceback.
    assert second.value is not first.value
    assert (second.value, second.value.field, second.value.pack_id) == (
        first.value, "pack_data.slots[0].text", "broken")


def test_a_10_mb_file_is_refused_without_being_read(packs: Path, library: PackLibrary,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with open(packs / "huge.txt", "wb") as handle:
        handle.truncate(10 * MB)  # sparse: costs no disk and no time

    def no_open(*_args: Any) -> int:
        raise AssertionError("the oversized file was opened")

    monkeypatch.setattr(os, "open", no_open)  # the module reads through os.open

    with pytest.raises(PackError) as caught:
        library.load_pack("huge")

    assert "10,485,760 bytes, over the 5,242,880-byte limit" in str(caught.value)
    assert "over the" in library.list_packs()[0].error_message


def test_a_file_that_grew_after_the_size_check_is_still_refused(packs: Path) -> None:
    path = write(packs, "grows.txt", "x" * 2000)
    stamp = FileStamp(path, 0, 10)  # what a stat before the growth said

    with pytest.raises(PackError, match="2,000 bytes, over the 1,000-byte limit"):
        read_capped(stamp, "grows", "grows.txt", 1000)


def test_the_size_cap_is_configurable(packs: Path) -> None:
    write(packs, "small.txt", "a" * 200 + "\n")

    with pytest.raises(PackError, match="over the 100-byte limit"):
        PackLibrary(packs, max_file_bytes=100).load_pack("small")


@pytest.mark.parametrize(("content", "line", "message"), [
    (b"ok line\nbad \xff\xfe bytes\n", 2, "not valid UTF-8 text (byte 0xff at byte offset 12)"),
    (b"ok\n\nPNG\x00\x00junk", 3, "binary data (a NUL byte at byte offset 7)"),
    (b"ok\nbell \x07 here\n", 2, "control character U+0007"),
])
def test_binary_junk_and_bad_encodings_name_the_line(packs: Path, library: PackLibrary,
                                                     content: bytes, line: int,
                                                     message: str) -> None:
    write(packs, "junk.txt", content)

    with pytest.raises(PackError) as caught:
        library.load_pack("junk")

    assert caught.value.line == line
    assert message in str(caught.value)


def test_json_nested_too_deeply_is_a_clear_error(packs: Path, library: PackLibrary) -> None:
    write(packs, "deep.json", "[" * 100_000 + "]" * 100_000)

    with pytest.raises(PackError, match="nested too deeply"):
        library.load_pack("deep")


def test_a_utf8_bom_and_crlf_line_ends_are_fine(packs: Path, library: PackLibrary) -> None:
    write(packs, "win.txt", "\ufeffa café\r\nneg: ugly\r\n\r\nsecond\r\n".encode())

    rows = library.load_pack("win").rows

    assert [(row.positive, row.negative) for row in rows] == [("a café", "ugly"), ("second", "")]


@pytest.mark.parametrize("pack_id", [
    "../secret", "..", "sub/pack", "sub\\pack", "/etc/passwd", ".hidden", "a..b", "", "nul\x00",
    "c:pack", "x" * 201,
])
def test_pack_ids_that_could_leave_the_library_are_refused(tmp_path: Path, packs: Path,
                                                           library: PackLibrary,
                                                           pack_id: str) -> None:
    write(tmp_path, "secret.txt", "outside the library\n")

    with pytest.raises(PackError) as caught:
        library.load_pack(pack_id)

    # The reason BundleService answers with (tests/bundle_service/test_packs.py).
    assert (caught.value.code, caught.value.reason) == (Code.INVALID_ARGUMENT,
                                                        ErrorReason.PACK_INVALID)
    assert "invalid pack id" in str(caught.value)


def test_a_symlink_pointing_outside_the_library_is_refused(tmp_path: Path, packs: Path,
                                                           library: PackLibrary) -> None:
    secret = write(tmp_path, "secret.txt", "outside the library\n")
    (packs / "escape.txt").symlink_to(secret)
    (packs / "up.txt").symlink_to(Path("..") / "secret.txt")

    for pack_id in ("escape", "up"):
        with pytest.raises(PackError, match="symlink pointing outside the pack library"):
            library.load_pack(pack_id)
    errors = {s.pack_id: s.error_message for s in library.list_packs()}
    assert errors == {"escape": "escape.txt: is a symlink pointing outside the pack library",
                      "up": "up.txt: is a symlink pointing outside the pack library"}


def test_a_symlink_inside_the_library_is_followed(packs: Path, library: PackLibrary) -> None:
    (packs / "shared").mkdir()
    write(packs / "shared", "real.txt", "a shared row\n")
    (packs / "alias.txt").symlink_to(Path("shared") / "real.txt")

    assert library.load_pack("alias").rows[0].positive == "a shared row"


def test_a_dangling_symlink_is_a_clear_error(packs: Path, library: PackLibrary) -> None:
    (packs / "dangling.txt").symlink_to(packs / "gone.txt")

    with pytest.raises(PackError, match="target does not exist"):
        library.load_pack("dangling")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_blocking(packs: Path, library: PackLibrary) -> None:
    os.mkfifo(packs / "pipe.txt")

    with pytest.raises(PackError, match="not a regular file"):
        library.load_pack("pipe")
