"""Matrix and wildcard expansion: every mode, limits, caps, and tokens that cannot resolve."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from stablenew.bundle.domain import Reason
from stablenew.bundle.expansion import (
    HARD_MAX_VARIANTS_PER_ROW,
    ExpansionLimits,
    PackExpander,
    RowExpansion,
    pack_expander,
)
from stablenew.bundle.packs.model import MatrixMode, Pack
from tests.bundle.helpers import make_pack

JOBS = ["knight", "wizard", "cleric"]
PLACES = ["gate", "tower"]


def seeded(seed: int = 7) -> Callable[[], random.Random]:
    return lambda: random.Random(seed)


def expand(pack: Pack, row: int = 0, *, limits: ExpansionLimits | None = None,
           seed: int = 7, prepend: str = "") -> RowExpansion:
    return PackExpander(pack, limits).expand_row(row, seeded(seed), prepend=prepend)


def positives(expansion: RowExpansion) -> list[str]:
    assert expansion.problem is None, expansion.problem
    return [variant.positive for variant in expansion.variants]


def test_fanout_is_every_combination_in_matrix_order_last_slot_fastest() -> None:
    pack = make_pack(("a [[job]] at the [[place]]", "no [[place]] mess"),
                     slots={"job": JOBS, "place": PLACES})

    expansion = expand(pack)

    assert positives(expansion) == [
        "a knight at the gate", "a knight at the tower", "a wizard at the gate",
        "a wizard at the tower", "a cleric at the gate", "a cleric at the tower"]
    assert [v.negative for v in expansion.variants][:2] == ["no gate mess", "no tower mess"]
    assert [v.index for v in expansion.variants] == list(range(6))


def test_slots_combine_in_matrix_order_whatever_order_the_row_uses_them() -> None:
    pack = make_pack("the [[place]] of the [[job]]", slots={"job": JOBS[:2], "place": PLACES})

    assert positives(expand(pack)) == [
        "the gate of the knight", "the tower of the knight",
        "the gate of the wizard", "the tower of the wizard"]


def test_a_token_used_twice_takes_one_value_per_variant() -> None:
    pack = make_pack("[[job]] and [[job]]", slots={"job": JOBS[:2]})

    assert positives(expand(pack)) == ["knight and knight", "wizard and wizard"]


def test_fanout_limit_keeps_the_first_combinations() -> None:
    pack = make_pack("[[job]] [[place]]", slots={"job": JOBS, "place": PLACES}, limit=4)

    assert positives(expand(pack)) == ["knight gate", "knight tower", "wizard gate",
                                       "wizard tower"]


def test_rows_without_tokens_are_one_variant_and_unused_slots_do_not_multiply() -> None:
    pack = make_pack("plain", "only [[job]]", slots={"job": JOBS, "place": PLACES})

    assert positives(expand(pack, 0)) == ["plain"]
    assert positives(expand(pack, 1)) == ["only knight", "only wizard", "only cleric"]


def test_sequential_moves_all_slots_in_lockstep_one_value_per_matrix_row() -> None:
    pack = make_pack("[[job]] at [[place]]", "plain row", "[[job]] at [[place]]",
                     "[[job]] at [[place]]", "[[job]] alone",
                     slots={"job": JOBS, "place": PLACES}, mode=MatrixMode.SEQUENTIAL, limit=5)

    results = [positives(expand(pack, row)) for row in range(5)]

    # The plain row does not count: matrix ordinals are 0, -, 1, 2, 3.
    assert results == [["knight at gate"], ["plain row"], ["wizard at tower"],
                       ["cleric at gate"], ["knight alone"]]


def test_rotate_walks_the_fanout_order_one_combination_per_matrix_row() -> None:
    pack = make_pack(*["[[job]] at [[place]]"] * 7, slots={"job": JOBS, "place": PLACES},
                     mode=MatrixMode.ROTATE)

    results = [positives(expand(pack, row))[0] for row in range(7)]

    assert results == ["knight at gate", "knight at tower", "wizard at gate", "wizard at tower",
                       "cleric at gate", "cleric at tower", "knight at gate"]


def test_random_picks_limit_distinct_combinations_reproducibly() -> None:
    pack = make_pack("[[job]] at [[place]]", slots={"job": JOBS, "place": PLACES},
                     mode=MatrixMode.RANDOM, limit=4)

    first, again = expand(pack, seed=1), expand(pack, seed=1)

    assert positives(first) == positives(again)
    assert len(set(positives(first))) == 4
    assert set(positives(first)) <= {f"{j} at {p}" for j in JOBS for p in PLACES}
    picks = {tuple(positives(expand(pack, seed=seed))) for seed in range(10)}
    assert len(picks) > 1  # the seed matters


def test_random_without_limit_is_one_variant_and_never_more_than_exist() -> None:
    one = make_pack("[[job]]", slots={"job": JOBS}, mode=MatrixMode.RANDOM)
    many = make_pack("[[job]]", slots={"job": JOBS}, mode=MatrixMode.RANDOM, limit=50)

    assert len(positives(expand(one))) == 1
    assert sorted(positives(expand(many))) == sorted(JOBS)


def test_random_over_a_huge_combination_space_stays_cheap() -> None:
    slots = {f"s{number}": [str(value) for value in range(10)] for number in range(30)}
    row = " ".join(f"[[s{number}]]" for number in range(30))
    pack = make_pack(row, slots=slots, mode=MatrixMode.RANDOM, limit=20)

    assert len(set(positives(expand(pack)))) == 20


def test_the_default_variant_cap_refuses_a_row_instead_of_cutting_it() -> None:
    values = [str(number) for number in range(30)]
    pack = make_pack("[[a]] [[b]]", slots={"a": values, "b": values})  # 900 combinations

    expansion = expand(pack)

    assert expansion.variants == [] and expansion.problem is not None
    assert expansion.problem.reason == Reason.TOO_MANY_VARIANTS
    assert "900 variants, over the cap of 512" in expansion.problem.message
    assert "set a matrix limit" in expansion.problem.message


def test_a_limit_under_the_cap_or_a_raised_cap_lets_the_row_expand() -> None:
    values = [str(number) for number in range(30)]
    limited = make_pack("[[a]] [[b]]", slots={"a": values, "b": values}, limit=500)
    unlimited = make_pack("[[a]] [[b]]", slots={"a": values, "b": values})

    assert len(positives(expand(limited))) == 500
    assert len(positives(expand(unlimited, limits=ExpansionLimits(1000)))) == 900


def test_the_hard_maximum_cannot_be_raised() -> None:
    with pytest.raises(ValueError, match="hard maximum"):
        ExpansionLimits(HARD_MAX_VARIANTS_PER_ROW + 1)
    values = [str(number) for number in range(100)]
    pack = make_pack("[[a]] [[b]]", slots={"a": values, "b": values})  # 10,000

    expansion = expand(pack, limits=ExpansionLimits(HARD_MAX_VARIANTS_PER_ROW))

    assert expansion.problem is not None
    assert "10,000 variants, over the cap of 8,192" in expansion.problem.message


def test_random_wildcards_pick_once_per_variant_reproducibly() -> None:
    pack = make_pack(("a __color__ [[job]], __color__ eyes", "not __color__"),
                     slots={"job": JOBS}, wildcards={"color": ["red", "green", "blue"]})

    first, again = expand(pack, seed=5), expand(pack, seed=5)

    assert positives(first) == positives(again)
    for variant in first.variants:
        color = variant.positive.split()[1]
        assert variant.positive.endswith(f"{color} eyes") and variant.negative == f"not {color}"
    assert len(first.variants) == 3  # wildcards never multiply variants


def test_sequential_wildcards_continue_in_turn_across_rows_and_variants() -> None:
    pack = make_pack("[[job]] in __color__", "plain __color__", "[[job]] in __color__",
                     slots={"job": JOBS[:2]}, wildcards={"color": ["red", "green", "blue"]},
                     wildcard_mode=MatrixMode.SEQUENTIAL)

    rows = [positives(expand(pack, row)) for row in range(3)]

    assert rows == [["knight in red", "wizard in green"], ["plain blue"],
                    ["knight in red", "wizard in green"]]


def test_sequential_positions_do_not_depend_on_which_rows_are_expanded() -> None:
    pack = make_pack("__n__", "__n__", "__n__", wildcards={"n": ["0", "1", "2", "3"]},
                     wildcard_mode=MatrixMode.SEQUENTIAL)

    assert positives(expand(pack, 2)) == ["2"]


def test_tokens_in_prepend_text_are_expanded_too() -> None:
    pack = make_pack("a [[job]]", slots={"job": JOBS[:2]}, wildcards={"style": ["ink"]})

    assert positives(expand(pack, prepend=" __style__ art ")) == [
        "ink art, a knight", "ink art, a wizard"]


@pytest.mark.parametrize(("row", "display"), [
    ("a [[place]]", "[[place]]"), ("a __color__", "__color__"), ("a [[ ]]", "[[]]"),
])
def test_undefined_tokens_are_unresolved_errors(row: str, display: str) -> None:
    pack = make_pack(row, slots={"job": JOBS})

    expansion = expand(pack)

    assert expansion.variants == [] and expansion.problem is not None
    assert expansion.problem.reason == Reason.UNRESOLVED_TOKEN
    assert f"{display} is not defined" in expansion.problem.message


def test_a_matrix_that_is_off_defines_no_slot() -> None:
    pack = make_pack("a [[job]]", slots={"job": JOBS})
    pack.matrix.enabled = False

    expansion = expand(pack)

    assert expansion.problem is not None and expansion.problem.reason == Reason.UNRESOLVED_TOKEN


def test_look_alikes_are_plain_text() -> None:
    pack = make_pack("<lora:add__detail__:0.5> snake__case__ [single] [[ unclosed __x")

    assert positives(expand(pack)) == [
        "<lora:add__detail__:0.5> snake__case__ [single] [[ unclosed __x"]


def test_a_slot_inside_a_lora_tag_varies_the_lora() -> None:
    pack = make_pack("castle <lora:[[style]]:0.7>", slots={"style": ["ink", "oil"]})

    assert positives(expand(pack)) == ["castle <lora:ink:0.7>", "castle <lora:oil:0.7>"]


def test_values_are_inserted_literally_even_when_they_look_like_tokens() -> None:
    pack = make_pack("a [[job]]", slots={"job": ["[[other]]"]})

    assert positives(expand(pack)) == ["a [[other]]"]  # normalisation reports it as unresolved


def test_the_expander_of_an_unchanged_pack_is_reused() -> None:
    pack = make_pack("a [[job]]", slots={"job": JOBS})
    limits = ExpansionLimits()

    assert pack_expander(pack, limits) is pack_expander(pack, limits)
    assert pack_expander(pack, ExpansionLimits(10)) is not pack_expander(pack, limits)
