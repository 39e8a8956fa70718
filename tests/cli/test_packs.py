"""`stablenew packs list|show`: output, --json and exit codes."""

from __future__ import annotations

from collections.abc import Callable

from tests.cli.cli_result import (
    BROKEN_ROW,
    MATRIX,
    SCENES,
    SCENES_ROWS,
    UNPARSEABLE,
    Result,
)

RunCli = Callable[..., Result]


def test_packs_list_shows_every_pack_and_why_one_is_broken(cli: RunCli) -> None:
    listed = cli("packs", "list").ok()
    lines = {line.split()[0]: line for line in listed.out.splitlines()[1:]}
    assert {SCENES, MATRIX, BROKEN_ROW, UNPARSEABLE} <= lines.keys()
    assert "BROKEN" in lines[UNPARSEABLE]
    assert "BROKEN" not in lines[SCENES]


def test_packs_list_json(cli: RunCli) -> None:
    packs = {pack["pack_id"]: pack for pack in cli("packs", "list", "--json").ok().json()["packs"]}
    assert packs[SCENES]["format"] == "PACK_FORMAT_TXT"
    assert packs[SCENES]["row_count"] == len(SCENES_ROWS)
    assert packs[MATRIX]["format"] == "PACK_FORMAT_JSON"
    assert packs[UNPARSEABLE]["error_message"]


def test_packs_show_prints_rows_matrix_and_stages(cli: RunCli) -> None:
    shown = cli("packs", "show", MATRIX).ok()
    assert "row 0: a [[who]] at the [[where]]" in shown.out
    assert "neg: blurry" in shown.out
    assert "[[who]] = knight | squire" in shown.out
    assert "stages:   txt2img" in shown.out
    assert shown.err == ""


def test_packs_show_json(cli: RunCli) -> None:
    pack = cli("packs", "show", SCENES, "--json").ok().json()["pack"]
    assert [row["positive"] for row in pack["rows"]] == list(SCENES_ROWS)
    assert pack["defaults"]["stages"]["txt2img_enabled"] is True


def test_packs_show_names_the_problems_of_a_pack_loudly(cli: RunCli) -> None:
    shown = cli("packs", "show", BROKEN_ROW).ok()
    assert "PROBLEMS (1):" in shown.out
    assert "[[missing]]" in shown.out or "missing" in shown.out
    assert shown.err.startswith(f"stablenew: warning: {BROKEN_ROW}: {BROKEN_ROW} row 1")


def test_an_unknown_pack_is_a_usage_error(cli: RunCli) -> None:
    cli("packs", "show", "no-such-pack").fails(2, "PACK_NOT_FOUND", "no-such-pack")


def test_an_unparseable_pack_is_a_usage_error(cli: RunCli) -> None:
    cli("packs", "show", UNPARSEABLE).fails(2, "PACK_INVALID")
