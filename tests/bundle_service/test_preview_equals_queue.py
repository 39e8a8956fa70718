"""The invariant, end to end over gRPC: for every draft, the normalized jobs the queue holds equal,
hash for hash and field for field, what PreviewDraft returned.

Hypothesis writes packs (.txt, .tsv or .json, with a sibling .json or raw-text definitions;
matrix slots in every mode, wildcards, negatives, LoRA/embedding tags, now and then a row with an
undefined token) and pipeline configs (valid stage plans, sizes multiple of 8, steps, cfg, batch,
n_iter, seeds) into the packs directory of a real bundle server, builds a draft of pack rows and a
manual prompt, pages through the preview, enqueues it, and reads the job back from a real queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stablenew.contract.config_hash import bundle_hash, config_hash
from stablenew.contract.model import NormalizedJob
from stablenew.contract.proto_mapping import from_proto
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import job_pb2, pipeline_pb2
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import full_job, unique, write_pack

WORDS = ["castle", "misty forest", "dragon", "lantern", "café", "harbor at night", "neon",
         "sunset", "城", "glacier", "portrait", "oil painting"]
VALUES = ["knight", "wizard", "gate", "tower", "stormy", "calm", "red", "blue", "早朝"]
SLOT_NAMES = ["job", "place", "mood"]
WILDCARD_NAMES = ["color", "light"]
TAGS = ["<lora:detail_tweaker:0.6>", "<embedding:good_hands>", "(<embedding:bad_hands>:0.8)",
        "<lora:film_grain:1>"]
MODES = ["fanout", "sequential", "rotate", "random"]
STAGE_PLANS = [("txt2img",), ("txt2img", "adetailer"), ("txt2img", "upscale"),
               ("txt2img", "adetailer", "upscale"), ("txt2img", "img2img"),
               ("txt2img", "img2img", "adetailer", "upscale")]
SAMPLERS = ["Euler a", "DPM++ 2M Karras", "DDIM"]
MODELS = ["v1-5-pruned-emaonly", "sd_xl_base_1.0", "dreamshaper_8"]

phrases = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


@dataclass
class Config:
    """A valid pipeline config, written as a pack preset or sent as a proto."""

    stages: tuple[str, ...]
    model: str
    sampler: str
    steps: int
    cfg_scale: float
    width: int
    height: int
    seed: int
    batch_size: int
    n_iter: int
    hires: bool
    denoising: float
    upscale_factor: float
    global_positive: str = ""
    global_negative: str = ""

    def preset(self) -> dict[str, Any]:
        return {
            "txt2img": {"model": self.model, "sampler_name": self.sampler, "steps": self.steps,
                        "cfg_scale": self.cfg_scale, "width": self.width,
                        "height": self.height, "seed": self.seed, "enable_hr": self.hires,
                        "hr_scale": 1.5, "hr_upscaler": "Latent"},
            "img2img": {"denoising_strength": self.denoising},
            "adetailer": {"adetailer_model": "face_yolov8n.pt", "adetailer_confidence": 0.35},
            "upscale": {"upscaler": "R-ESRGAN 4x+", "upscaling_resize": self.upscale_factor},
            "pipeline": {f"{stage}_enabled": stage in self.stages
                         for stage in ("txt2img", "img2img", "adetailer", "upscale")}
            | {"images_per_prompt": self.batch_size, "n_iter": self.n_iter},
        }

    def proto(self) -> pipeline_pb2.PipelineConfig:
        config = pipeline_pb2.PipelineConfig(
            stages=pipeline_pb2.StageFlags(
                txt2img_enabled="txt2img" in self.stages, img2img_enabled="img2img" in self.stages,
                adetailer_enabled="adetailer" in self.stages,
                upscale_enabled="upscale" in self.stages),
            txt2img=pipeline_pb2.Txt2ImgConfig(
                model=self.model, sampler_name=self.sampler, steps=self.steps,
                cfg_scale=self.cfg_scale, width=self.width, height=self.height, seed=self.seed,
                hires_fix=pipeline_pb2.HiresFixConfig(enabled=self.hires, scale=1.5,
                                                      upscaler="Latent")),
            img2img=pipeline_pb2.Img2ImgConfig(denoising_strength=self.denoising),
            upscale=pipeline_pb2.UpscaleConfig(upscaler="R-ESRGAN 4x+",
                                               factor=self.upscale_factor),
            batch_size=self.batch_size, n_iter=self.n_iter,
            global_positive=self.global_positive, global_negative=self.global_negative)
        config.adetailer.passes.add(model="face_yolov8n.pt", confidence=0.35)
        return config


sizes = st.integers(min_value=32, max_value=128).map(lambda eighths: eighths * 8)
configs = st.builds(
    Config,
    stages=st.sampled_from(STAGE_PLANS),
    model=st.sampled_from(MODELS),
    sampler=st.sampled_from(SAMPLERS),
    steps=st.integers(min_value=1, max_value=150),
    cfg_scale=st.integers(min_value=10, max_value=300).map(lambda tenths: tenths / 10),
    width=sizes,
    height=sizes,
    seed=st.one_of(st.just(-1), st.integers(min_value=0, max_value=2**32 - 1)),
    batch_size=st.integers(min_value=1, max_value=8),
    n_iter=st.integers(min_value=1, max_value=4),
    hires=st.booleans(),
    denoising=st.integers(min_value=0, max_value=100).map(lambda hundredths: hundredths / 100),
    upscale_factor=st.sampled_from([1.5, 2.0, 4.0]),
    global_positive=st.one_of(st.just(""), phrases),
    global_negative=st.one_of(st.just(""), st.just("watermark, text")),
)


@dataclass
class Row:
    words: str
    slots: list[str]  # matrix slots the row uses (positive)
    negative_slot: str  # a slot used in the negative only, or ""
    wildcard: bool
    tag: str
    negative: str
    undefined: bool  # holds a token nothing defines: a row error, never a job


@dataclass
class PackSpec:
    fmt: str
    slots: dict[str, list[str]]
    mode: str
    limit: int
    slots_in_text: bool  # raw-text `name: a | b` definitions instead of JSON
    wildcard: tuple[str, list[str]] | None
    wildcard_mode: str
    rows: list[Row]
    preset: Config | None
    pack_id: str = field(default_factory=lambda: unique("prop_"))

    def used_slots(self, row: Row) -> set[str]:
        return {*row.slots, *([row.negative_slot] if row.negative_slot else [])}

    def variants(self, row: Row) -> int:
        """How many jobs a row makes, by the reference's matrix rules."""
        used = self.used_slots(row)
        combinations = math.prod(len(self.slots[name]) for name in used)
        if not used:
            return 1
        if self.mode in ("sequential", "rotate"):
            return 1
        if self.mode == "random":
            return min(max(self.limit, 1), combinations)
        return min(self.limit, combinations) if self.limit else combinations


@st.composite
def rows_of(draw: st.DrawFn, slot_names: list[str], wildcard: bool) -> Row:
    used = draw(st.lists(st.sampled_from(slot_names), unique=True)) if slot_names else []
    negative_slot = draw(st.sampled_from(["", *slot_names])) if slot_names else ""
    return Row(words=draw(phrases), slots=used, negative_slot=negative_slot,
               wildcard=wildcard and draw(st.booleans()),
               tag=draw(st.sampled_from(["", "", *TAGS])),
               negative=draw(st.sampled_from(["", "blurry", "lowres, bad anatomy"])),
               undefined=draw(st.integers(min_value=0, max_value=7)) == 0)


@st.composite
def pack_specs(draw: st.DrawFn) -> PackSpec:
    fmt = draw(st.sampled_from(["txt", "tsv", "json"]))
    names = draw(st.lists(st.sampled_from(SLOT_NAMES), unique=True, max_size=2))
    slots = {name: draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3, unique=True))
             for name in names}
    wildcard = draw(st.one_of(st.none(), st.tuples(
        st.sampled_from(WILDCARD_NAMES),
        st.lists(st.sampled_from(VALUES), min_size=1, max_size=3, unique=True))))
    rows = draw(st.lists(rows_of(names, wildcard is not None), min_size=1, max_size=4))
    preset = draw(configs) if fmt == "json" else draw(st.one_of(st.none(), configs))
    return PackSpec(fmt=fmt, slots=slots, mode=draw(st.sampled_from(MODES)),
                    limit=draw(st.integers(min_value=0, max_value=4)),
                    slots_in_text=fmt != "json" and draw(st.booleans()), wildcard=wildcard,
                    wildcard_mode=draw(st.sampled_from(["random", "sequential"])), rows=rows,
                    preset=preset)


def _positive(spec: PackSpec, row: Row) -> str:
    parts = [row.words, *(f"a [[{name}]]" for name in row.slots)]
    if row.wildcard and spec.wildcard:
        parts.append(f"in __{spec.wildcard[0]}__")
    if row.undefined:
        parts.append("with [[undefined_slot]]")
    if row.tag and spec.fmt != "json":
        parts.append(row.tag)
    return ", ".join(parts)


def _negative(row: Row) -> str:
    return ", ".join(part for part in (row.negative, row.negative_slot and
                                       f"no [[{row.negative_slot}]]") if part)


def _matrix(spec: PackSpec, with_slots: bool) -> dict[str, Any]:
    matrix: dict[str, Any] = {"mode": spec.mode, "limit": spec.limit}
    if with_slots:
        matrix["slots"] = [{"name": name, "values": values}
                           for name, values in spec.slots.items()]
    return matrix


def _text_definitions(spec: PackSpec) -> list[str]:
    """Raw-text definitions; a `name: a | b` line defines a slot only when some row uses
    `[[name]]` (else it is prompt text), so only used names are defined."""
    if not spec.slots_in_text:
        return []
    used = {name for row in spec.rows for name in spec.used_slots(row)}
    lines = [f"{name}: {' | '.join(values)}" for name, values in spec.slots.items()
             if name in used]
    if spec.wildcard and any(row.wildcard for row in spec.rows):
        lines.append(f"__{spec.wildcard[0]}__: {' | '.join(spec.wildcard[1])}")
    return lines


def write_spec(stack: Stack, spec: PackSpec) -> None:
    """The pack files of `spec` in the server's packs directory."""
    pack_data: dict[str, Any] = {"name": f"Pack {spec.pack_id}"}
    if spec.slots:
        pack_data["matrix"] = _matrix(spec, with_slots=not spec.slots_in_text)
    if spec.wildcard and not spec.slots_in_text:
        pack_data["wildcards"] = {spec.wildcard[0]: spec.wildcard[1]}
    pack_data["wildcard_mode"] = spec.wildcard_mode
    document: dict[str, Any] = {"pack_data": pack_data}
    if spec.preset is not None:
        document["preset_data"] = spec.preset.preset()
    if spec.fmt == "json":
        pack_data["slots"] = [_json_row(spec, index, row) for index, row in enumerate(spec.rows)]
        write_pack(stack.packs_dir, f"{spec.pack_id}.json", document)
        return
    write_pack(stack.packs_dir, f"{spec.pack_id}.json", document)
    definitions = _text_definitions(spec)
    if spec.fmt == "txt":
        blocks = ["# written by the property test\n" + "\n".join(definitions)] if definitions \
            else []
        for row in spec.rows:
            block = _positive(spec, row).replace(", a [[", ",\na [[", 1)
            if _negative(row):
                block += f"\nneg: {_negative(row)}"
            blocks.append(block)
        text = "\n\n".join(blocks) + "\n"
    else:
        lines = [*definitions, "positive\tnegative"]
        lines += [f"{_positive(spec, row)}\t{_negative(row)}".rstrip("\t") for row in spec.rows]
        text = "\n".join(lines) + "\n"
    write_pack(stack.packs_dir, f"{spec.pack_id}.{spec.fmt}", text)


def _json_row(spec: PackSpec, index: int, row: Row) -> dict[str, Any]:
    item: dict[str, Any] = {"index": index, "text": _positive(spec, row),
                            "negative": _negative(row)}
    if row.tag.startswith("<lora:"):
        name, weight = row.tag.strip("<>").split(":")[1:]
        item["loras"] = [[name, float(weight)]]
    elif row.tag:
        item["positive_embeddings"] = ["good_hands"]
    return item


@dataclass
class DraftPlan:
    spec: PackSpec
    rows: list[int]  # empty: every row
    prepend: str
    overrides: Config | None
    partial_steps: int  # an override of the steps alone (0: none)
    manual: str
    manual_config: Config
    page_size: int


@st.composite
def draft_plans(draw: st.DrawFn) -> DraftPlan:
    spec = draw(pack_specs())
    count = len(spec.rows)
    rows = draw(st.one_of(st.just([]), st.lists(st.integers(min_value=0, max_value=count - 1),
                                                min_size=1, max_size=count + 1)))
    # A pack without a preset runs no stage: the part must bring its own.
    overrides = draw(configs if spec.preset is None else st.one_of(st.none(), configs))
    return DraftPlan(spec=spec, rows=rows, prepend=draw(st.sampled_from(["", "masterpiece"])),
                     overrides=overrides,
                     partial_steps=draw(st.sampled_from([0, 0, 12, 40])),
                     manual=draw(phrases) + draw(st.sampled_from(["", ", <lora:film_grain:0.5>"])),
                     manual_config=draw(configs),
                     page_size=draw(st.integers(min_value=1, max_value=7)))


def _overrides(plan: DraftPlan) -> pipeline_pb2.PipelineConfig:
    config = plan.overrides.proto() if plan.overrides else pipeline_pb2.PipelineConfig()
    if plan.partial_steps:
        config.txt2img.steps = plan.partial_steps
    return config


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plan=draft_plans())
def test_the_queue_holds_exactly_the_previewed_jobs(stack: Stack, plan: DraftPlan) -> None:
    bundle, spec = stack.bundle, plan.spec
    write_spec(stack, spec)
    draft_id = bundle.new_draft().draft_id
    added = bundle.add_pack(draft_id, spec.pack_id, plan.rows, plan.prepend, _overrides(plan))
    chosen = plan.rows or list(range(len(spec.rows)))
    assert [part.row_index for part in added.parts] == chosen
    manual = bundle.add_manual(draft_id, plan.manual, plan.manual_config.proto(),
                               negative="blurry")
    draft = manual.draft

    jobs, pages = bundle.preview_all(draft_id, plan.page_size)
    assert {page.draft_revision for page in pages} == {draft.revision}
    assert all(len(page.jobs) <= plan.page_size for page in pages)
    summary = pages[-1].summary
    assert summary == draft.summary
    assert [job.index for job in jobs] == list(range(len(jobs)))
    assert summary.job_count == len(jobs)
    assert summary.part_count == len(chosen) + 1
    assert summary.estimated_images == sum(job.batch_size * job.n_iter for job in jobs)
    _check_rows(spec, added.parts, manual.part.part_id, jobs, summary.errors)

    queued = bundle.enqueue(draft_id, expected_revision=draft.revision)
    held = full_job(stack.queue, queued.job_id)
    assert list(held.entries) == jobs  # field for field
    assert [entry.config_hash for entry in held.entries] == [job.config_hash for job in jobs]
    assert all(config_hash(from_proto(NormalizedJob, job)) == job.config_hash for job in jobs)
    assert held.config_hash == queued.config_hash == bundle_hash(
        [job.config_hash for job in jobs])
    assert held.entry_count == len(jobs)
    assert held.estimated_images == summary.estimated_images
    assert held.origin.draft_id == draft_id
    assert held.origin.draft_revision == draft.revision
    assert held.origin.prompt_source == pipeline_pb2.PROMPT_SOURCE_PACK
    assert held.origin.prompt_pack_id == spec.pack_id
    assert held.origin.run_mode == job_pb2.RUN_MODE_QUEUE
    after = bundle.draft(draft_id)
    assert (len(after.parts), after.revision) == (0, draft.revision + 1)


def _check_rows(spec: PackSpec, parts: Any, manual_part: str,
                jobs: list[pipeline_pb2.NormalizedJob], errors: Any) -> None:
    """Every good row made its variants; a row with an undefined token made none and is
    reported with the pack and row; no token reaches a prompt."""
    by_part: dict[str, int] = {}
    for job in jobs:
        by_part[job.origin.part_id] = by_part.get(job.origin.part_id, 0) + 1
        assert "[[" not in job.prompt + job.negative_prompt
        assert not any(f"__{name}__" in job.prompt + job.negative_prompt
                       for name in WILDCARD_NAMES)
    assert by_part.get(manual_part) == 1
    failed = {(error.part_id, error.row_index) for error in errors}
    for part in parts:
        row = spec.rows[part.row_index]
        if row.undefined:
            assert part.part_id not in by_part
            assert (part.part_id, part.row_index) in failed
            error = next(e for e in errors if e.part_id == part.part_id)
            assert error.reason == pb.ROW_ERROR_REASON_UNRESOLVED_TOKEN
            assert error.prompt_pack_id == spec.pack_id
            assert f"{spec.pack_id} row {part.row_index}" in error.message
        else:
            assert by_part.get(part.part_id) == spec.variants(row), part
            assert part.estimated_images == sum(
                job.batch_size * job.n_iter for job in jobs
                if job.origin.part_id == part.part_id)
