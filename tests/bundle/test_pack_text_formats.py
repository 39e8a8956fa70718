"""The `.txt` and `.tsv` pack formats, read through the library as the service reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stablenew.bundle.domain import PackError, Reason
from stablenew.bundle.packs import MatrixMode, PackFormat, PackLibrary
from stablenew.contract.model import PromptTag, PromptTagKind
from tests.bundle.helpers import write, write_json

CASTLES = """\
# castle series
masterpiece, best quality
a [[job]] guarding a [[place]] at dawn
<lora:detail_tweaker:0.6>
neg: blurry, lowres
neg: watermark, text

watercolor lighthouse on a cliff, stormy sea
neg: people
"""


@pytest.fixture
def library(tmp_path: Path) -> PackLibrary:
    return PackLibrary(tmp_path)


def test_txt_blocks_comments_neg_lines_and_line_numbers(tmp_path: Path,
                                                        library: PackLibrary) -> None:
    write(tmp_path, "castles.txt", CASTLES)
    write_json(tmp_path, "castles.json", {"pack_data": {"matrix": {"slots": [
        {"name": "job", "values": ["knight", "wizard"]},
        {"name": "place", "values": ["gate", "tower"]}]}}})

    pack = library.load_pack("castles")

    assert pack.format == PackFormat.TXT
    assert [row.index for row in pack.rows] == [0, 1]
    first, second = pack.rows
    assert first.positive == ("masterpiece, best quality, a [[job]] guarding a [[place]] at dawn,"
                              " <lora:detail_tweaker:0.6>")
    assert first.negative == "blurry, lowres, watermark, text"
    assert first.line == 2  # the comment line is not part of the row
    assert first.tags == [PromptTag(PromptTagKind.LORA, "detail_tweaker", 0.6)]
    assert (second.positive, second.negative, second.line) == (
        "watercolor lighthouse on a cliff, stormy sea", "people", 8)
    assert pack.errors == []


def test_txt_comment_lines_do_not_split_a_block_and_trailing_commas_are_trimmed(
        tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "p.txt", "\ufeffred fox,\n# a note inside the block\n  , in snow  \r\n"
                             "NEG: dark,\nneg:\n\n\n\n# only a comment\n\nblue bird\n")

    rows = library.load_pack("p").rows

    assert [(row.positive, row.negative, row.line) for row in rows] == [
        ("red fox, in snow", "dark", 1), ("blue bird", "", 11)]


def test_tags_stay_in_the_text_and_are_listed_with_weights(tmp_path: Path,
                                                         library: PackLibrary) -> None:
    write(tmp_path, "tags.txt", "a castle <lora:detail:0.6>, <embedding:good_hands>\n"
                                "(<embedding:fine_eyes>:0.8), <lora:style>, <lora:detail:0.6>\n"
                                "neg: <embedding:easynegative>\n")

    row = library.load_pack("tags").rows[0]

    assert "<lora:detail:0.6>" in row.positive and "(<embedding:fine_eyes>:0.8)" in row.positive
    assert row.tags == [
        PromptTag(PromptTagKind.LORA, "detail", 0.6),
        PromptTag(PromptTagKind.EMBEDDING, "good_hands", 1.0),
        PromptTag(PromptTagKind.EMBEDDING, "fine_eyes", 0.8),
        PromptTag(PromptTagKind.LORA, "style", 1.0),
        PromptTag(PromptTagKind.EMBEDDING, "easynegative", 1.0),
    ]


def test_a_tag_with_a_weight_that_is_not_a_number_is_a_row_error(tmp_path: Path,
                                                                 library: PackLibrary) -> None:
    write(tmp_path, "bad.txt", "fine row\n\nbroken <lora:detail:strong>\n")

    pack = library.load_pack("bad")

    assert len(pack.rows) == 2
    (error,) = pack.errors
    assert (error.row_index, error.line, error.reason) == (1, 3, Reason.PACK_INVALID)
    assert "bad row 1 (line 3)" in error.message and "not a number" in error.message


def test_raw_text_slot_definitions_apply_only_to_names_used_as_tokens(
        tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "raw.txt", "job: knight | wizard |  | cleric\n"
                               "__hair__: red | blond\n\n"
                               "style: watercolor\n"
                               "a [[job]] with __hair__ hair\n"
                               "place: gate | tower\n\n"
                               "a [[place]]\n")

    pack = library.load_pack("raw")

    assert [row.positive for row in pack.rows] == [
        "style: watercolor, a [[job]] with __hair__ hair", "a [[place]]"]
    assert pack.rows[0].line == 4
    assert pack.matrix.enabled and pack.matrix.mode == MatrixMode.FANOUT
    assert [(slot.name, slot.values) for slot in pack.matrix.slots] == [
        ("job", ["knight", "wizard", "cleric"]), ("place", ["gate", "tower"])]
    assert [(w.name, w.values) for w in pack.wildcards] == [("hair", ["red", "blond"])]
    assert pack.errors == []


def test_raw_definitions_join_the_sibling_json_matrix_and_take_its_mode(
        tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "mix.txt", "place: gate | tower\n\na [[job]] at the [[place]]\n")
    write_json(tmp_path, "mix.json", {"pack_data": {"matrix": {
        "mode": "rotate", "limit": 3, "slots": [{"name": "job", "values": ["knight"]}]}}})

    matrix = library.load_pack("mix").matrix

    assert (matrix.enabled, matrix.mode, matrix.limit) == (True, MatrixMode.ROTATE, 3)
    assert [slot.name for slot in matrix.slots] == ["job", "place"]


def test_a_slot_defined_twice_is_a_pack_error_naming_both_lines(tmp_path: Path,
                                                               library: PackLibrary) -> None:
    write(tmp_path, "twice.txt", "job: a | b\n\n[[job]]\njob: c\n")

    with pytest.raises(PackError) as caught:
        library.load_pack("twice")

    assert caught.value.line == 4 and "lines 1 and 4" in str(caught.value)


def test_a_slot_defined_in_text_and_json_is_a_pack_error(tmp_path: Path,
                                                         library: PackLibrary) -> None:
    write(tmp_path, "dup.txt", "job: a | b\n\n[[job]]\n")
    write_json(tmp_path, "dup.json", {"pack_data": {"matrix": {
        "slots": [{"name": "job", "values": ["c"]}]}}})

    with pytest.raises(PackError, match="'job' is defined both"):
        library.load_pack("dup")


def test_undefined_tokens_are_listed_as_row_errors_when_the_pack_is_read(
        tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "loose.txt", "plain row\n\na [[job]] and __color__ and [[job]]\n")

    pack = library.load_pack("loose")

    assert [(e.row_index, e.line, e.reason) for e in pack.errors] == [
        (1, 3, Reason.UNRESOLVED_TOKEN), (1, 3, Reason.UNRESOLVED_TOKEN)]
    assert "[[job]] is not defined" in pack.errors[0].message
    assert "__color__ is not defined" in pack.errors[1].message


def test_a_block_with_only_negative_text_is_a_row_error_not_a_silent_empty_prompt(
        tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "negonly.txt", "a cat\n\nneg: blurry\n")

    pack = library.load_pack("negonly")

    assert [(e.row_index, e.reason) for e in pack.errors] == [(1, Reason.PACK_INVALID)]
    assert "no positive prompt" in pack.errors[0].message


def test_tsv_rows_comments_optional_negative_and_header(tmp_path: Path,
                                                        library: PackLibrary) -> None:
    write(tmp_path, "animals.tsv", "positive\tnegative\n# comment\na cat <lora:fur:0.4>\tblurry\n"
                                   "\n  a dog  \n\ta ghost\n")

    pack = library.load_pack("animals")

    assert pack.format == PackFormat.TSV
    assert [(row.positive, row.negative, row.line) for row in pack.rows] == [
        ("a cat <lora:fur:0.4>", "blurry", 3), ("a dog", "", 5), ("", "a ghost", 6)]
    assert pack.rows[0].tags == [PromptTag(PromptTagKind.LORA, "fur", 0.4)]
    assert [(e.row_index, e.line) for e in pack.errors] == [(2, 6)]


def test_tsv_extra_columns_are_a_row_error_not_cut_silently(tmp_path: Path,
                                                            library: PackLibrary) -> None:
    write(tmp_path, "wide.tsv", "a\tb\tc\n")

    (error,) = library.load_pack("wide").errors

    assert (error.row_index, error.line) == (0, 1)
    assert "3 tab-separated columns" in error.message


def test_tsv_accepts_raw_definitions_and_sibling_json_matrix(tmp_path: Path,
                                                             library: PackLibrary) -> None:
    write(tmp_path, "t.tsv", "job: knight | wizard\na [[job]]\t[[bad]] art\n")
    write_json(tmp_path, "t.json", {"pack_data": {"matrix": {
        "slots": [{"name": "bad", "values": ["ugly"]}]}},
        "preset_data": {"txt2img": {"steps": 30}}})

    pack = library.load_pack("t")

    assert [slot.name for slot in pack.matrix.slots] == ["bad", "job"]
    assert pack.rows[0].positive == "a [[job]]" and pack.rows[0].line == 2
    assert pack.defaults.txt2img.steps == 30
    assert pack.errors == []
