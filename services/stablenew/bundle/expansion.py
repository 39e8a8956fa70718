"""Matrix (`[[slot]]`) and wildcard (`__name__`) expansion of prompt rows into variants.

What a row expands to depends only on the pack and on the random source the caller gives, never
on which other rows a draft picked, so a row previews the same alone or with its whole pack.

Matrix modes (the slots a row uses are combined in the order the matrix defines them; the last
slot varies fastest):
- fanout (default): every combination, in that order; `limit` > 0 keeps the first `limit`.
- sequential: one variant per row. Rows are counted in pack order, counting only rows that use at
  least one matrix slot (this count is the row's *matrix ordinal* t, from 0); every slot of the
  row takes its value number t modulo its length (slots move in lockstep, like zip, wrapping).
- rotate: one variant per row: combination number t modulo the number of combinations, so
  successive rows walk the fanout order one combination per row.
- random: `limit` variants per row (1 when no limit), distinct combinations drawn from the
  caller's seeded `random.Random`, listed in fanout order. Fewer when fewer combinations exist.
`limit` never applies to sequential/rotate (always one variant).

Wildcards never multiply variants: each variant picks one value per wildcard name, used for every
occurrence of `__name__` in that variant (positive and negative alike).
- random (default): `rng.choice`, from the same seeded random source.
- sequential: the value number (o + v) modulo the list length, where v is the variant's index in
  its row and o the number of variants all earlier rows of the pack produce (rows that fail
  produce none). So values continue in turn across rows and variants.

Caps: a row whose variant count (after `limit`) exceeds `ExpansionLimits.max_variants_per_row`
(default 512, at most 8192) fails with TOO_MANY_VARIANTS; it is never silently cut.
Values are inserted literally, so a value that itself holds a token leaves that token unresolved,
which the caller reports (normalisation checks every final text).
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stablenew.bundle.domain import Problem, Reason
from stablenew.bundle.packs.model import MatrixMode, MatrixSlot, Pack, PackMatrix
from stablenew.bundle.prompt_text import (
    SLOT,
    WILDCARD,
    iter_tokens,
    join_prompt,
    undefined_token_message,
)
from stablenew.contract.model import PromptTag

DEFAULT_MAX_VARIANTS_PER_ROW = 512
HARD_MAX_VARIANTS_PER_ROW = 8192

# A segment of a compiled text: literal text, or the (kind, name) key of a token.
TokenKey = tuple[str, str]
Segment = str | TokenKey
RandomFactory = Callable[[], random.Random]


@dataclass(frozen=True)
class ExpansionLimits:
    """How far one row may expand: the variant cap per row (STABLENEW_MAX_VARIANTS_PER_ROW)."""

    max_variants_per_row: int = DEFAULT_MAX_VARIANTS_PER_ROW

    def __post_init__(self) -> None:
        if not 1 <= self.max_variants_per_row <= HARD_MAX_VARIANTS_PER_ROW:
            raise ValueError(
                f"max_variants_per_row must be 1..{HARD_MAX_VARIANTS_PER_ROW}"
                f" (the hard maximum), got {self.max_variants_per_row}")


@dataclass(slots=True)
class PromptTemplate:
    """A row's positive and negative text split at their tokens, compiled once."""

    positive: tuple[Segment, ...]
    negative: tuple[Segment, ...]
    slot_names: tuple[str, ...]  # distinct, in order of first appearance
    wildcard_names: tuple[str, ...]

    @property
    def has_tokens(self) -> bool:
        """Whether the text holds any slot or wildcard token."""
        return bool(self.slot_names or self.wildcard_names)


def compile_template(positive: str, negative: str) -> PromptTemplate:
    """A row's positive and negative text compiled into a template."""
    if "[[" not in positive and "__" not in positive and "[[" not in negative \
            and "__" not in negative:
        return PromptTemplate((positive,), (negative,), (), ())  # the common case, kept cheap
    positive_segments, positive_keys = _segments(positive)
    negative_segments, negative_keys = _segments(negative)
    keys = list(dict.fromkeys([*positive_keys, *negative_keys]))
    return PromptTemplate(
        positive=positive_segments,
        negative=negative_segments,
        slot_names=tuple(name for kind, name in keys if kind == SLOT),
        wildcard_names=tuple(name for kind, name in keys if kind == WILDCARD),
    )


def _segments(text: str) -> tuple[tuple[Segment, ...], list[TokenKey]]:
    segments: list[Segment] = []
    keys: list[TokenKey] = []
    position = 0
    for token in iter_tokens(text):
        if token.start > position:
            segments.append(text[position:token.start])
        key = (token.kind, token.name)
        segments.append(key)
        keys.append(key)
        position = token.end
    if position < len(text):
        segments.append(text[position:])
    return tuple(segments), keys


def render(segments: tuple[Segment, ...], values: dict[TokenKey, str]) -> str:
    """The text of `segments` with each token replaced by its value from `values`."""
    if len(segments) == 1 and isinstance(segments[0], str):
        return segments[0]
    return "".join([part if isinstance(part, str) else values[part] for part in segments])


@dataclass(slots=True)
class Variant:
    """One expanded version of a row: its index in the row and its final texts."""

    index: int
    positive: str
    negative: str
    # The tags of positive + negative when already known (a pack row as written); None: scan.
    tags: list[PromptTag] | None = None


@dataclass
class RowExpansion:
    """What a row expands to: its variants, or the problem that stops it."""

    variants: list[Variant] = field(default_factory=list)
    problem: Problem | None = None


@dataclass(slots=True)
class RowPosition:
    """Where a row stands in its pack for the "in turn" modes (see the module docstring)."""

    matrix_ordinal: int = 0
    variant_offset: int = 0


@dataclass(frozen=True)
class ExpansionRules:
    """The definitions expansion draws on: a pack's matrix and wildcards."""

    matrix: PackMatrix = field(default_factory=PackMatrix)
    wildcards: Sequence[MatrixSlot] = ()
    wildcard_mode: MatrixMode = MatrixMode.RANDOM
    limits: ExpansionLimits = field(default_factory=ExpansionLimits)

    @classmethod
    def of_pack(cls, pack: Pack, limits: ExpansionLimits) -> ExpansionRules:
        """The rules of `pack` under `limits`."""
        return cls(pack.matrix, pack.wildcards, pack.wildcard_mode, limits)


class TemplateExpander:
    """Expands templates under one set of rules."""

    def __init__(self, rules: ExpansionRules) -> None:
        self.rules = rules
        matrix = rules.matrix
        self._slots = {slot.name: slot.values for slot in matrix.slots} if matrix.enabled else {}
        self._slot_order = {slot.name: number for number, slot in enumerate(matrix.slots)}
        self._wildcards = {wildcard.name: wildcard.values for wildcard in rules.wildcards}

    def problem_of(self, template: PromptTemplate) -> Problem | None:
        """Why `template` cannot expand at all: an undefined token or too many variants."""
        undefined = [f"[[{name}]]" for name in template.slot_names if name not in self._slots]
        undefined += [f"__{name}__" for name in template.wildcard_names
                      if name not in self._wildcards]
        if undefined:
            return Problem(Reason.UNRESOLVED_TOKEN,
                           "; ".join(undefined_token_message(display) for display in undefined))
        count = self.variant_count(template)
        cap = self.rules.limits.max_variants_per_row
        if count > cap:
            return Problem(Reason.TOO_MANY_VARIANTS, _too_many_message(count, cap,
                                                                       self.rules.matrix.limit))
        return None

    def variant_count(self, template: PromptTemplate) -> int:
        """How many variants the row makes (before the cap is checked)."""
        lists = self._value_lists(template)
        if not lists:
            return 1
        total = math.prod(len(values) for values in lists)
        mode, limit = self.rules.matrix.mode, self.rules.matrix.limit
        if mode in (MatrixMode.SEQUENTIAL, MatrixMode.ROTATE):
            return 1
        if mode == MatrixMode.RANDOM:
            return min(limit or 1, total)
        return min(limit, total) if limit else total

    def expand(self, template: PromptTemplate, position: RowPosition,
               new_random: RandomFactory) -> RowExpansion:
        """The variants of `template` for a row at `position`, or its problem."""
        if not template.has_tokens:
            only = Variant(0, render(template.positive, {}), render(template.negative, {}))
            return RowExpansion([only])
        problem = self.problem_of(template)
        if problem is not None:
            return RowExpansion(problem=problem)
        rng = _LazyRandom(new_random)
        combinations = self._combinations(template, position, rng)
        variants = []
        for number, combination in enumerate(combinations):
            values = self._wildcard_values(template, position.variant_offset + number, rng)
            values.update(combination)
            variants.append(Variant(number, render(template.positive, values),
                                    render(template.negative, values)))
        return RowExpansion(variants)

    def _used_slots(self, template: PromptTemplate) -> list[str]:
        return sorted(template.slot_names, key=self._slot_order.__getitem__)

    def _value_lists(self, template: PromptTemplate) -> list[list[str]]:
        return [self._slots[name] for name in self._used_slots(template)]

    def _combinations(self, template: PromptTemplate, position: RowPosition,
                      rng: _LazyRandom) -> list[dict[TokenKey, str]]:
        names = self._used_slots(template)
        if not names:
            return [{}]
        lists = [self._slots[name] for name in names]
        keys = [(SLOT, name) for name in names]
        picks = self._value_picks(lists, position, rng, self.variant_count(template))
        return [dict(zip(keys, values, strict=True)) for values in picks]

    def _value_picks(self, lists: list[list[str]], position: RowPosition, rng: _LazyRandom,
                     count: int) -> list[tuple[str, ...]]:
        mode = self.rules.matrix.mode
        ordinal = position.matrix_ordinal
        if mode == MatrixMode.SEQUENTIAL:
            return [tuple(values[ordinal % len(values)] for values in lists)]
        total = math.prod(len(values) for values in lists)
        if mode == MatrixMode.ROTATE:
            return [_combination_at(lists, ordinal % total)]
        if mode == MatrixMode.RANDOM:
            numbers = sorted(_distinct_numbers(rng.get(), total, count))
            return [_combination_at(lists, number) for number in numbers]
        return list(itertools.islice(itertools.product(*lists), count))

    def _wildcard_values(self, template: PromptTemplate, turn: int,
                         rng: _LazyRandom) -> dict[TokenKey, str]:
        values: dict[TokenKey, str] = {}
        for name in template.wildcard_names:
            choices = self._wildcards[name]
            if self.rules.wildcard_mode == MatrixMode.SEQUENTIAL:
                values[(WILDCARD, name)] = choices[turn % len(choices)]
            else:
                values[(WILDCARD, name)] = rng.get().choice(choices)
        return values


class _LazyRandom:
    """Creates the seeded random source only for rows that need one (most rows do not)."""

    def __init__(self, factory: RandomFactory) -> None:
        self._factory = factory
        self._random: random.Random | None = None

    def get(self) -> random.Random:
        if self._random is None:
            self._random = self._factory()
        return self._random


def _combination_at(lists: list[list[str]], number: int) -> tuple[str, ...]:
    """Combination `number` of the fanout order (mixed radix, last list fastest)."""
    picked: list[str] = []
    for values in reversed(lists):
        number, digit = divmod(number, len(values))
        picked.append(values[digit])
    return tuple(reversed(picked))


def _distinct_numbers(rng: random.Random, total: int, count: int) -> list[int]:
    if total <= 4 * count:
        return rng.sample(range(total), count)
    # Sparse draw: `total` may be astronomically large (many slots), far beyond what
    # random.sample over a range can take, while `count` is at most the variant cap.
    chosen: dict[int, None] = {}
    while len(chosen) < count:
        chosen[rng.randrange(total)] = None
    return list(chosen)


def _too_many_message(count: int, cap: int, limit: int) -> str:
    hint = "lower the matrix limit" if limit else "set a matrix limit"
    if cap < HARD_MAX_VARIANTS_PER_ROW:
        hint += (f" or raise the cap (STABLENEW_MAX_VARIANTS_PER_ROW, at most"
                 f" {HARD_MAX_VARIANTS_PER_ROW:,})")
    return (f"the row expands to {count:,} variants, over the cap of {cap:,} per row;"
            f" {hint}, or use fewer values")


class PackExpander:
    """Expands the rows of one pack: templates and row positions are computed once.

    Build it with `pack_expander`, which reuses the expander of an unchanged pack.
    """

    def __init__(self, pack: Pack, limits: ExpansionLimits | None = None) -> None:
        # The rows, not the pack: the expander cache must not keep a replaced pack alive.
        self.rows = pack.rows
        self.expander = TemplateExpander(ExpansionRules.of_pack(pack, limits or ExpansionLimits()))
        self.templates = [compile_template(row.positive, row.negative) for row in pack.rows]
        self.positions = self._positions()

    def _positions(self) -> list[RowPosition]:
        positions = []
        ordinal = offset = 0
        for template in self.templates:
            positions.append(RowPosition(ordinal, offset))
            if not template.has_tokens:
                offset += 1
                continue
            if template.slot_names:
                ordinal += 1
            if self.expander.problem_of(template) is None:
                offset += self.expander.variant_count(template)
        return positions

    def expand_row(self, row_index: int, new_random: RandomFactory, *,
                   prepend: str = "") -> RowExpansion:
        """The variants of row `row_index`, with `prepend` put in front of its positive text
        (tokens in `prepend` are expanded too)."""
        template = self.templates[row_index]
        row = self.rows[row_index]
        if prepend.strip():
            template = compile_template(join_prompt(prepend.strip(), row.positive), row.negative)
        elif not template.has_tokens:
            # The row as written: the pack reader listed its tags already (trusted unless the
            # list is empty while the text looks tagged, as in a pack built by other code).
            looks_tagged = "<" in row.positive or "<" in row.negative
            known_tags = row.tags if row.tags or not looks_tagged else None
            return RowExpansion([Variant(0, row.positive, row.negative, known_tags)])
        return self.expander.expand(template, self.positions[row_index], new_random)


# Expanders of the packs in use, by pack object: the library hands out the same object until the
# file changes, so an unchanged pack is compiled once, not on every normalisation.
_EXPANDERS: dict[int, tuple[weakref.ref[Pack], ExpansionLimits, PackExpander]] = {}
_EXPANDERS_LOCK = threading.Lock()


def pack_expander(pack: Pack, limits: ExpansionLimits) -> PackExpander:
    """The expander of `pack`, made once per pack object and limits."""
    with _EXPANDERS_LOCK:
        cached = _EXPANDERS.get(id(pack))
    if cached is not None and cached[0]() is pack and cached[1] == limits:
        return cached[2]
    expander = PackExpander(pack, limits)
    with _EXPANDERS_LOCK:
        for key in [key for key, (ref, _, _) in _EXPANDERS.items() if ref() is None]:
            del _EXPANDERS[key]
        _EXPANDERS[id(pack)] = (weakref.ref(pack), limits, expander)
    return expander
