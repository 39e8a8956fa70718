"""Draft parts -> normalized jobs: the only executable unit (Preview = Queue = Executor = History).

A part is a manual prompt (`ManualPart`) or one pack row (`PackRowPart`). Normalising a part:
1. config: a manual part's own config; a pack row's pack defaults with the part's overrides
   (`pipeline_rules.merge_config`); then built-in defaults; then the stage plan and the checks.
2. text: the row's text (with the part's prepend text in front) is expanded into variants
   (`expansion`); the config's global positive/negative are appended to each variant (after
   expansion: tokens in global prompts are not expanded and are reported).
3. jobs: one job per variant, and per input image when the plan starts on images (one image per
   job: an upscale-only part of 3 images makes 3 jobs). Seeds of -1 are derived from the caller's
   `SeedSource` with the key `<part id>/seed/<variant>/<image>`, so the same draft revision always
   normalises to identical jobs.

Global prompts by stage: txt2img and img2img use the job's prompt, which has them; the hires-fix
prompts get them only when set (empty means "the main prompt", which has them already);
ADetailer passes never get them; upscale has no prompt of its own.

What the jobs of one config share (plan, checks, the canonical prototype, the hasher) is made
ready once per distinct config by `job_prototype`.

A part that fails any check produces no job at all, and its problems are reported as RowErrors
(and FieldErrors with field paths) instead: never half a row, never a literal `[[token]]`.
The jobs of one part share their nested config objects (hires fix, passes, upscale...); treat
jobs as values and do not mutate them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from stablenew.bundle.domain import (
    DraftPart,
    FieldError,
    ManualPart,
    NormalizedBundle,
    PackError,
    PackRowPart,
    PartOutcome,
    Problem,
    Reason,
    RowError,
    row_label,
)
from stablenew.bundle.expansion import (
    ExpansionLimits,
    ExpansionRules,
    PackExpander,
    PromptTemplate,
    RowExpansion,
    RowPosition,
    TemplateExpander,
    Variant,
    compile_template,
    pack_expander,
)
from stablenew.bundle.job_prototype import JobText, PreparedConfig, job_of, prepare_config
from stablenew.bundle.name_check import (
    OfferedNames,
    UnofferedName,
    name_check_of,
    unoffered_names,
)
from stablenew.bundle.packs.model import Pack
from stablenew.bundle.pipeline_rules import (
    check_input_images,
    merge_config,
)
from stablenew.bundle.prompt_text import first_token, join_prompt, scan_tags
from stablenew.bundle.seeds import SeedSource, random_for
from stablenew.bundle.summary import summarize
from stablenew.contract.model import (
    EntryOrigin,
    NormalizedJob,
    PipelineConfig,
    PromptSource,
    PromptTag,
)
from stablenew.contract.pipeline_limits import with_builtin_defaults

DEFAULT_MAX_BUNDLE_JOBS = 100_000
CONFIG_PREFIX = "config."
UNCHECKED = OfferedNames()


class PackSource(Protocol):
    """Where pack rows come from: `PackLibrary` in the service, a dict-backed fake in tests."""

    def load_pack(self, pack_id: str) -> Pack:
        """The pack `pack_id` (raises PackError)."""
        ...


def normalize_draft(parts: Sequence[DraftPart], seeds: SeedSource, packs: PackSource, *,
                    limits: ExpansionLimits | None = None,
                    max_jobs: int = DEFAULT_MAX_BUNDLE_JOBS,
                    offered: OfferedNames = UNCHECKED) -> NormalizedBundle:
    """The normalized jobs of `parts` in order, each part's outcome, and the summary. A part
    that names something no runner of `offered` offers makes no job (name_check.py)."""
    normalizer = _Normalizer(seeds, packs, limits or ExpansionLimits(), max_jobs, offered)
    for part in parts:
        normalizer.add(part)
    errors = [error for outcome in normalizer.outcomes for error in outcome.errors]
    summary = summarize(len(parts), normalizer.jobs, errors, name_check_of(offered))
    return NormalizedBundle(normalizer.jobs, normalizer.outcomes, summary,
                            tuple(normalizer.unoffered_parts))


@dataclass(slots=True)
class _PartContext:
    """Where a part's text comes from and how its jobs are labelled."""

    origin: EntryOrigin
    line: int
    config: PipelineConfig
    config_key: str  # configs are only compared within one key (a pack's defaults differ)
    merge_with: PipelineConfig | None  # the pack defaults the config overrides
    expander: PackExpander | None = None  # a pack row's
    prepend: str = ""
    template: PromptTemplate | None = None  # a manual prompt's

    @property
    def label(self) -> str:
        origin = self.origin
        if origin.prompt_source == PromptSource.PACK:
            return row_label(origin.prompt_pack_id, origin.row_index, self.line)
        return f"part {origin.part_id}"

    def expand(self, seeds: SeedSource) -> RowExpansion:
        if self.expander is not None:
            new_random = _random_factory(seeds, self.origin.part_id)
            return self.expander.expand_row(self.origin.row_index, new_random,
                                            prepend=self.prepend)
        assert self.template is not None
        return _NO_RULES.expand(self.template, RowPosition(), _no_random)


_NO_RULES = TemplateExpander(ExpansionRules())


class _Normalizer:
    def __init__(self, seeds: SeedSource, packs: PackSource, limits: ExpansionLimits,
                 max_jobs: int, offered: OfferedNames) -> None:
        self.seeds = seeds
        self.packs = packs
        self.limits = limits
        self.max_jobs = max_jobs
        self.offered = offered
        self.jobs: list[NormalizedJob] = []
        self.outcomes: list[PartOutcome] = []
        self.unoffered_parts: list[str] = []
        # The names of a prepared config no runner offers, by the config's id (each prepared
        # config is kept in self._prepared, so the id stays its own).
        self._unoffered: dict[int, list[UnofferedName]] = {}
        self._loaded: dict[str, Pack | PackError] = {}
        self._expanders: dict[str, PackExpander] = {}
        self._load_errors: dict[str, dict[int, list[RowError]]] = {}
        self._prepared: dict[tuple[str, bool], list[tuple[PipelineConfig, PreparedConfig]]] = {}

    def add(self, part: DraftPart) -> None:
        outcome = PartOutcome(part.part_id)
        self.outcomes.append(outcome)
        context = self._context(part, outcome)
        if context is None:
            return
        prepared = self._prepare(context, bool(part.input_images))
        field_errors = prepared.errors
        if part.input_images:
            field_errors = field_errors + check_input_images(part.input_images, prepared.plan)
        if field_errors:
            self._reject_fields(outcome, context, field_errors)
            return
        unoffered = self._unoffered_names(prepared)
        if unoffered:
            self._reject_unoffered(outcome, context, unoffered)
            return
        expansion = context.expand(self.seeds)
        texts = self._final_texts(expansion, prepared, outcome, context)
        if texts is None:
            return
        if self._within_bundle_cap(outcome, context, len(texts) * max(len(part.input_images), 1)):
            self._emit(outcome, context, prepared, texts, part.input_images)

    # --- where the text comes from --------------------------------------------------------

    def _context(self, part: DraftPart, outcome: PartOutcome) -> _PartContext | None:
        if isinstance(part, ManualPart):
            return _manual_context(part)
        return self._pack_context(part, outcome)

    def _pack_context(self, part: PackRowPart, outcome: PartOutcome) -> _PartContext | None:
        loaded = self._load(part.pack_id)
        if isinstance(loaded, PackError):
            outcome.errors.append(RowError(part.part_id, part.pack_id, part.row_index,
                                           loaded.line, Reason[loaded.reason.name], str(loaded)))
            return None
        if not 0 <= part.row_index < len(loaded.rows):
            message = (f"pack {part.pack_id!r} has {len(loaded.rows)} rows"
                       f" (0..{len(loaded.rows) - 1}), there is no row {part.row_index}")
            context = _PartContext(
                origin=EntryOrigin(part.part_id, PromptSource.PACK, part.pack_id, loaded.name,
                                   part.row_index, 0),
                line=0, config=part.config_overrides, config_key=part.pack_id, merge_with=None)
            self._reject_fields(outcome, context,
                                [FieldError("row_index", Reason.INVALID_FIELD, message)])
            return None
        load_errors = self._load_errors[part.pack_id].get(part.row_index, [])
        if load_errors:
            outcome.errors.extend(replace(error, part_id=part.part_id) for error in load_errors)
            return None
        return self._pack_row_context(part, loaded)

    def _pack_row_context(self, part: PackRowPart, pack: Pack) -> _PartContext:
        row = pack.rows[part.row_index]
        return _PartContext(
            origin=EntryOrigin(part.part_id, PromptSource.PACK, pack.pack_id, pack.name,
                               row.index, 0),
            line=row.line,
            config=part.config_overrides,
            config_key=pack.pack_id,
            merge_with=pack.defaults,
            expander=self._expanders[part.pack_id],
            prepend=part.prepend_text,
        )

    def _load(self, pack_id: str) -> Pack | PackError:
        if pack_id not in self._loaded:
            self._loaded[pack_id] = self._load_uncached(pack_id)
        return self._loaded[pack_id]

    def _load_uncached(self, pack_id: str) -> Pack | PackError:
        try:
            pack = self.packs.load_pack(pack_id)
        except PackError as error:
            return error
        self._expanders[pack_id] = pack_expander(pack, self.limits)
        by_row: dict[int, list[RowError]] = {}
        for row_error in pack.errors:
            by_row.setdefault(row_error.row_index, []).append(row_error)
        self._load_errors[pack_id] = by_row
        return pack

    # --- the config -----------------------------------------------------------------------

    def _prepare(self, context: _PartContext, has_images: bool) -> PreparedConfig:
        bucket = self._prepared.setdefault((context.config_key, has_images), [])
        for config, prepared in bucket:
            if config is context.config or config == context.config:
                return prepared
        base = context.config
        if context.merge_with is not None:
            base = merge_config(context.merge_with, base)
        prepared = prepare_config(with_builtin_defaults(base), has_images)
        bucket.append((context.config, prepared))
        return prepared

    def _unoffered_names(self, prepared: PreparedConfig) -> list[UnofferedName]:
        found = self._unoffered.get(id(prepared))
        if found is None:
            found = self._unoffered[id(prepared)] = unoffered_names(prepared.prototype,
                                                                    self.offered)
        return found

    # --- the text -------------------------------------------------------------------------

    def _final_texts(self, expansion: RowExpansion, prepared: PreparedConfig, outcome: PartOutcome,
                     context: _PartContext) -> list[JobText] | None:
        if expansion.problem is not None:
            self._reject(outcome, context, expansion.problem)
            return None
        texts = []
        tags = _TagCache()
        # A bad tag is the pack's fault in a pack row, the field's in a manual prompt.
        tag_reason = (Reason.PACK_INVALID if context.origin.prompt_source == PromptSource.PACK
                      else Reason.INVALID_FIELD)
        for variant in expansion.variants:
            final = _final_text(variant, prepared, tags, tag_reason)
            if isinstance(final, Problem):
                self._reject(outcome, context, final)
                return None
            texts.append(final)
        return texts

    # --- the jobs -------------------------------------------------------------------------

    def _within_bundle_cap(self, outcome: PartOutcome, context: _PartContext,
                           count: int) -> bool:
        if len(self.jobs) + count <= self.max_jobs:
            return True
        self._reject(outcome, context, Problem(
            Reason.TOO_MANY_VARIANTS,
            f"the draft would hold more than {self.max_jobs:,} jobs with this part's"
            f" {count:,}; split it into several drafts"))
        return False

    def _emit(self, outcome: PartOutcome, context: _PartContext, prepared: PreparedConfig,
              texts: list[JobText], input_images: list[str]) -> None:
        assert prepared.hasher is not None  # a config with errors never gets here
        hasher, prototype, seeds = prepared.hasher, prepared.prototype, self.seeds
        origin = context.origin
        part_id = origin.part_id
        image_lists = [[image] for image in input_images] or [[]]
        for text in texts:
            for image_number, images in enumerate(image_lists):
                seed, subseed = prepared.seed, prepared.subseed
                if seed == -1:
                    seed = seeds.seed_for(f"{part_id}/seed/{text.variant_index}/{image_number}")
                if subseed == -1:
                    subseed = seeds.seed_for(
                        f"{part_id}/subseed/{text.variant_index}/{image_number}")
                job_origin = EntryOrigin(part_id, origin.prompt_source, origin.prompt_pack_id,
                                         origin.pack_name, origin.row_index, text.variant_index)
                job_hash = hasher.hash(text.positive, text.negative, seed, subseed, images)
                self.jobs.append(job_of(prototype, len(self.jobs), text, seed, subseed,
                                      list(images), job_origin, job_hash))
        outcome.job_count = len(texts) * len(image_lists)
        outcome.estimated_images = outcome.job_count * prototype.image_count

    # --- problems -------------------------------------------------------------------------

    def _reject(self, outcome: PartOutcome, context: _PartContext, problem: Problem) -> None:
        origin = context.origin
        outcome.errors.append(RowError(origin.part_id, origin.prompt_pack_id, origin.row_index,
                                       context.line, problem.reason,
                                       f"{context.label}: {problem.message}"))

    def _reject_fields(self, outcome: PartOutcome, context: _PartContext,
                       errors: list[FieldError]) -> None:
        outcome.field_errors.extend(errors)
        origin, label = context.origin, context.label
        outcome.errors.extend(
            RowError(origin.part_id, origin.prompt_pack_id, origin.row_index, context.line,
                     error.reason, f"{label}: {error}", _config_field(error.field))
            for error in errors)

    def _reject_unoffered(self, outcome: PartOutcome, context: _PartContext,
                          names: list[UnofferedName]) -> None:
        self.unoffered_parts.append(context.origin.part_id)
        origin, label = context.origin, context.label
        outcome.errors.extend(
            RowError(origin.part_id, origin.prompt_pack_id, origin.row_index, context.line,
                     Reason.INVALID_FIELD, f"{label}: config.{name.config_field}: {name.message}",
                     name.config_field, list(name.suggestions))
            for name in names)


def _config_field(path: str) -> str:
    """A field error's path within the config ("config.txt2img.width" -> "txt2img.width");
    "" for a path outside it (row_index, input_images[0])."""
    return path.removeprefix(CONFIG_PREFIX) if path.startswith(CONFIG_PREFIX) else ""


def _manual_context(part: ManualPart) -> _PartContext:
    return _PartContext(
        origin=EntryOrigin(part.part_id, PromptSource.MANUAL, "", "", 0, 0),
        line=0,
        config=part.config,
        config_key="",
        merge_with=None,
        template=compile_template(part.prompt.strip(), part.negative_prompt.strip()),
    )


def _no_random() -> random.Random:
    raise AssertionError("a manual prompt has nothing to pick at random")


def _random_factory(seeds: SeedSource, part_id: str) -> Callable[[], random.Random]:
    return lambda: random_for(seeds, f"{part_id}/expand")


# --- final texts ----------------------------------------------------------------------------


class _TagCache:
    """Tags by text: the negative prompt is usually the same for every variant of a row."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[list[PromptTag], list[str]]] = {}

    def scan(self, text: str) -> tuple[list[PromptTag], list[str]]:
        if "<" not in text:
            return [], []
        found = self._cache.get(text)
        if found is None:
            scan = scan_tags(text)
            found = self._cache[text] = (scan.tags, scan.problems)
        return found


def _final_text(variant: Variant, prepared: PreparedConfig, tags: _TagCache,
                tag_reason: Reason) -> JobText | Problem:
    positive = join_prompt(variant.positive, prepared.global_positive)
    negative = join_prompt(variant.negative, prepared.global_negative)
    if variant.tags is not None and not prepared.globals_have_tags:
        # A row as written: the pack reader found no token and listed its tags already.
        return JobText(variant.index, positive, negative, list(variant.tags))
    token = first_token(variant.positive, variant.negative)
    if token is not None:
        return Problem(Reason.UNRESOLVED_TOKEN,
                       f"{token.display} is left after expansion in variant {variant.index}"
                       " (values are inserted as written, so a value must not hold a token)")
    positive_tags, positive_problems = tags.scan(positive)
    negative_tags, negative_problems = tags.scan(negative)
    problems = positive_problems + negative_problems
    if problems:
        return Problem(tag_reason, "; ".join(problems))
    return JobText(variant.index, positive, negative, _merge_tags(positive_tags, negative_tags))


def _merge_tags(positive: list[PromptTag], negative: list[PromptTag]) -> list[PromptTag]:
    if not negative:
        return list(positive)
    seen = {(tag.kind, tag.name, tag.weight) for tag in positive}
    return positive + [tag for tag in negative if (tag.kind, tag.name, tag.weight) not in seen]
