"""Draft parts -> normalized jobs: text, stages, seeds, hashes, errors and the summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stablenew.bundle.domain import ManualPart, NormalizedBundle, PackRowPart, Reason
from stablenew.bundle.normalize import normalize_draft
from stablenew.bundle.packs import PackLibrary
from stablenew.bundle.packs.model import MatrixMode
from stablenew.bundle.seeds import SEED_RANGE, DerivedSeedSource
from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    PipelineConfig,
    PromptSource,
    PromptTag,
    PromptTagKind,
    StageFlags,
    StageType,
    Txt2ImgConfig,
)
from tests.bundle.helpers import (
    FakePacks,
    face_pass,
    make_pack,
    txt2img_config,
    with_adetailer,
    write,
    write_json,
)

SEEDS = DerivedSeedSource("draft-1")
CASTLES = make_pack(("a [[job]] at the [[place]], <lora:detail:0.6>", "blurry"),
                    "plain lighthouse",
                    slots={"job": ["knight", "wizard"], "place": ["gate", "tower"]},
                    pack_id="castles", defaults=txt2img_config(steps=25))


def pack_parts(pack_id: str, rows: range, **fields: object) -> list[PackRowPart]:
    return [PackRowPart(f"part-{row}", pack_id, row, **fields) for row in rows]  # type: ignore[arg-type]


def normalize(*parts: ManualPart | PackRowPart, packs: FakePacks | PackLibrary | None = None,
              seeds: DerivedSeedSource = SEEDS) -> NormalizedBundle:
    return normalize_draft(list(parts), seeds, packs or FakePacks(CASTLES))


def test_a_manual_prompt_becomes_one_fully_resolved_job() -> None:
    part = ManualPart("m1", "  a cat <lora:fur:0.5> ", " blurry ", txt2img_config(steps=30))

    bundle = normalize(part)

    (job,) = bundle.jobs
    assert (job.index, job.prompt, job.negative_prompt) == (0, "a cat <lora:fur:0.5>", "blurry")
    assert job.stage_plan == [StageType.TXT2IMG]
    assert (job.model, job.sampler_name, job.steps, job.width, job.height) == (
        "v1-5-pruned-emaonly", "Euler a", 30, 512, 512)
    assert 0 <= job.seed < SEED_RANGE
    assert job.tags == [PromptTag(PromptTagKind.LORA, "fur", 0.5)]
    assert (job.origin.part_id, job.origin.prompt_source) == ("m1", PromptSource.MANUAL)
    assert job.config_hash == config_hash(job)
    assert bundle.errors == [] and bundle.parts[0].job_count == 1


def test_pack_rows_expand_into_jobs_with_their_origin() -> None:
    bundle = normalize(*pack_parts("castles", range(2)))

    assert [job.prompt for job in bundle.jobs] == [
        "a knight at the gate, <lora:detail:0.6>", "a knight at the tower, <lora:detail:0.6>",
        "a wizard at the gate, <lora:detail:0.6>", "a wizard at the tower, <lora:detail:0.6>",
        "plain lighthouse"]
    assert [job.index for job in bundle.jobs] == list(range(5))
    assert [(j.origin.part_id, j.origin.row_index, j.origin.variant_index)
            for j in bundle.jobs] == [("part-0", 0, 0), ("part-0", 0, 1), ("part-0", 0, 2),
                                      ("part-0", 0, 3), ("part-1", 1, 0)]
    first = bundle.jobs[0].origin
    assert (first.prompt_source, first.prompt_pack_id, first.pack_name) == (
        PromptSource.PACK, "castles", "Castles")
    assert bundle.jobs[0].negative_prompt == "blurry"
    assert bundle.jobs[0].tags == [PromptTag(PromptTagKind.LORA, "detail", 0.6)]
    assert all(job.steps == 25 and job.config_hash == config_hash(job) for job in bundle.jobs)
    assert [(p.part_id, p.job_count, p.estimated_images) for p in bundle.parts] == [
        ("part-0", 4, 4), ("part-1", 1, 1)]


def test_overrides_and_prepend_text_apply_over_the_pack() -> None:
    overrides = PipelineConfig(txt2img=Txt2ImgConfig(steps=40, seed=1234), batch_size=2)

    bundle = normalize(*pack_parts("castles", range(1, 2), prepend_text="masterpiece",
                                   config_overrides=overrides))

    (job,) = bundle.jobs
    assert (job.prompt, job.steps, job.seed, job.batch_size) == (
        "masterpiece, plain lighthouse", 40, 1234, 2)


def test_a_plain_text_pack_runs_txt2img_with_the_builtin_defaults(tmp_path: Path) -> None:
    write(tmp_path, "plain.txt", "a lighthouse\nneg: blurry\n\na harbor at night\n")
    write(tmp_path, "plain2.tsv", "a castle\tlowres\n")
    library = PackLibrary(tmp_path)

    bundle = normalize(*pack_parts("plain", range(2)), PackRowPart("t", "plain2", 0),
                       packs=library)

    assert bundle.errors == []
    assert [job.prompt for job in bundle.jobs] == ["a lighthouse", "a harbor at night",
                                                   "a castle"]
    for job in bundle.jobs:
        assert job.stage_plan == [StageType.TXT2IMG]
        assert (job.sampler_name, job.steps, job.cfg_scale, job.width, job.height) == (
            "Euler", 20, 7.0, 512, 512)
        assert (job.batch_size, job.n_iter, job.subseed, job.subseed_strength) == (1, 1, 0, 0)
        # No model named: the checkpoint the runner's WebUI has loaded (no switch, any runner).
        assert (job.model, job.vae, job.scheduler) == ("", "", "")
        assert 0 <= job.seed < SEED_RANGE
        assert job.config_hash == config_hash(job)


def test_overrides_apply_on_top_of_a_plain_text_pack(tmp_path: Path) -> None:
    write(tmp_path, "plain.txt", "a lighthouse\n")
    settings = PipelineConfig(txt2img=Txt2ImgConfig(model="sd_xl_base_1.0", steps=30, seed=7))
    more_stages = txt2img_config()
    more_stages.stages.upscale_enabled = True
    more_stages.upscale.upscaler = "R-ESRGAN 4x+"

    bundle = normalize(PackRowPart("a", "plain", 0, config_overrides=settings),
                       PackRowPart("b", "plain", 0, config_overrides=more_stages),
                       packs=PackLibrary(tmp_path))

    first, second = bundle.jobs
    assert (first.stage_plan, first.model, first.steps, first.seed, first.sampler_name) == (
        [StageType.TXT2IMG], "sd_xl_base_1.0", 30, 7, "Euler")
    assert second.stage_plan == [StageType.TXT2IMG, StageType.UPSCALE]
    assert (second.upscale.upscaler, second.upscale.factor) == ("R-ESRGAN 4x+", 2.0)


def test_global_prompts_follow_the_stage_rules() -> None:
    config = with_adetailer(txt2img_config(), face_pass(prompt="detailed face",
                                                        negative_prompt="deformed"))
    config.global_positive = "best quality"
    config.global_negative = "watermark"
    config.txt2img.hires_fix.enabled = True
    config.txt2img.hires_fix.prompt = "sharp details"

    (job,) = normalize(ManualPart("m", "a cat", "blurry", config)).jobs

    assert (job.prompt, job.negative_prompt) == ("a cat, best quality", "blurry, watermark")
    # A set hires prompt is a whole prompt, so it gets the global terms; an empty one means
    # "the main prompt", which has them already.
    assert job.hires_fix.prompt == "sharp details, best quality"
    assert job.hires_fix.negative_prompt == ""
    # ADetailer passes never get them.
    assert (job.adetailer_passes[0].prompt, job.adetailer_passes[0].negative_prompt) == (
        "detailed face", "deformed")


def test_global_prompts_reach_every_pack_row_and_variant() -> None:
    overrides = PipelineConfig(global_negative="lowres")

    bundle = normalize(*pack_parts("castles", range(2), config_overrides=overrides))

    assert [job.negative_prompt for job in bundle.jobs] == ["blurry, lowres"] * 4 + ["lowres"]


def test_tags_in_global_prompts_are_listed() -> None:
    config = txt2img_config()
    config.global_negative = "<embedding:easynegative>"

    (job,) = normalize(ManualPart("m", "a cat <lora:fur:1>", "", config)).jobs

    assert job.tags == [PromptTag(PromptTagKind.LORA, "fur", 1.0),
                        PromptTag(PromptTagKind.EMBEDDING, "easynegative", 1.0)]


def test_seeds_are_concrete_deterministic_and_stable_when_other_parts_change() -> None:
    parts = pack_parts("castles", range(2))

    first = normalize(*parts)
    again = normalize(*parts)
    with_more = normalize(ManualPart("new", "a dog", "", txt2img_config()), *parts)
    other_draft = normalize(*parts, seeds=DerivedSeedSource("draft-2"))

    seeds = [job.seed for job in first.jobs]
    assert all(0 <= seed < SEED_RANGE for seed in seeds)
    assert len(set(seeds)) == len(seeds)  # every variant its own seed
    assert first.jobs == again.jobs
    assert [job.seed for job in with_more.jobs[1:]] == seeds
    assert [job.seed for job in other_draft.jobs] != seeds


def test_a_fixed_seed_is_kept_for_every_variant() -> None:
    overrides = PipelineConfig(txt2img=Txt2ImgConfig(seed=42))

    bundle = normalize(*pack_parts("castles", range(1), config_overrides=overrides))

    assert [job.seed for job in bundle.jobs] == [42] * 4


def test_subseed_is_resolved_only_when_it_matters() -> None:
    strong = txt2img_config(subseed=-1, subseed_strength=0.3)
    idle = txt2img_config(subseed=-1, subseed_strength=0.0)

    (strong_job,) = normalize(ManualPart("a", "x", "", strong)).jobs
    (idle_job,) = normalize(ManualPart("a", "x", "", idle)).jobs

    assert 0 <= strong_job.subseed < SEED_RANGE
    assert idle_job.subseed == 0


def test_equal_work_has_equal_hashes_and_different_work_different_ones() -> None:
    fixed = txt2img_config(seed=7)
    noisy = txt2img_config(seed=7)
    noisy.img2img.denoising_strength = 0.9  # img2img is not in the plan: no effect
    noisy.upscale.upscaler = "Lanczos"  # nor is upscale

    jobs = normalize(ManualPart("a", "a cat", "", fixed), ManualPart("b", "a cat", "", noisy),
                     ManualPart("c", "a cat", "", txt2img_config(seed=8))).jobs

    assert jobs[0].config_hash == jobs[1].config_hash != jobs[2].config_hash
    assert dataclasses.replace(jobs[0], index=5, origin=jobs[2].origin).config_hash == (
        jobs[0].config_hash)


def test_a_value_holding_a_token_is_an_unresolved_error_for_that_row() -> None:
    pack = make_pack("a [[job]]", "fine", slots={"job": ["knight", "[[other]]"]},
                     pack_id="tricky", defaults=txt2img_config())

    bundle = normalize(*pack_parts("tricky", range(2)), packs=FakePacks(pack))

    assert [job.prompt for job in bundle.jobs] == ["fine"]
    (error,) = bundle.errors
    assert (error.part_id, error.prompt_pack_id, error.row_index, error.line) == (
        "part-0", "tricky", 0, 1)
    assert error.reason == Reason.UNRESOLVED_TOKEN
    assert error.message.startswith("tricky row 0 (line 1): [[other]] is left after expansion")
    assert bundle.parts[0].job_count == 0


def test_tokens_that_nothing_defines_never_reach_a_job() -> None:
    config = txt2img_config()
    bundle = normalize(ManualPart("m", "a [[job]] with __color__ hair", "", config))

    assert bundle.jobs == []
    (error,) = bundle.errors
    assert error.reason == Reason.UNRESOLVED_TOKEN and error.message.startswith("part m: [[job]]")


def test_tokens_in_global_prompts_are_reported_with_their_field() -> None:
    config = txt2img_config()
    config.global_positive = "__style__"

    bundle = normalize(ManualPart("m", "a cat", "", config))

    (field_error,) = bundle.parts[0].field_errors
    assert (field_error.field, field_error.reason) == (
        "config.global_positive", Reason.UNRESOLVED_TOKEN)


def test_undefined_tokens_in_a_pack_file_are_reported_with_pack_row_and_line(
        tmp_path: Path) -> None:
    write(tmp_path, "loose.txt", "fine row\n\n# note\na [[job]] here\n")
    write_json(tmp_path, "loose.json", {"preset_data": {"pipeline": {"txt2img_enabled": True}}})

    bundle = normalize(*pack_parts("loose", range(2)), packs=PackLibrary(tmp_path))

    assert [job.prompt for job in bundle.jobs] == ["fine row"]
    (error,) = bundle.errors
    assert (error.part_id, error.prompt_pack_id, error.row_index, error.line, error.reason) == (
        "part-1", "loose", 1, 4, Reason.UNRESOLVED_TOKEN)
    assert "loose row 1 (line 4): [[job]] is not defined" in error.message


def test_pack_problems_become_row_errors() -> None:
    bundle = normalize(PackRowPart("a", "ghost", 0), PackRowPart("b", "castles", 9),
                       PackRowPart("c", "castles", 1))

    ghost, out_of_range = bundle.errors
    assert (ghost.part_id, ghost.reason) == ("a", Reason.PACK_NOT_FOUND)
    assert (out_of_range.part_id, out_of_range.reason) == ("b", Reason.INVALID_FIELD)
    assert "has 2 rows (0..1), there is no row 9" in out_of_range.message
    assert bundle.parts[1].field_errors[0].field == "row_index"
    assert [job.origin.part_id for job in bundle.jobs] == ["c"]


def test_a_broken_pack_file_is_a_pack_invalid_error(tmp_path: Path) -> None:
    write(tmp_path, "broken.json", "{")

    (error,) = normalize(PackRowPart("a", "broken", 0), packs=PackLibrary(tmp_path)).errors

    assert (error.reason, error.line) == (Reason.PACK_INVALID, 1)
    assert error.message.startswith("broken.json line 1 column 2")


def test_stage_plan_problems_name_their_fields() -> None:
    no_stage = PipelineConfig()
    adetailer_only = PipelineConfig(stages=StageFlags(adetailer_enabled=True))
    adetailer_only.adetailer.passes = [face_pass()]
    upscale_only = PipelineConfig(stages=StageFlags(upscale_enabled=True))
    upscale_only.upscale.upscaler = "R-ESRGAN 4x+"
    bad_size = txt2img_config(width=500, height=10_000)

    bundle = normalize(ManualPart("a", "x", "", no_stage), ManualPart("b", "x", "", adetailer_only),
                       ManualPart("c", "x", "", upscale_only), ManualPart("d", "x", "", bad_size))

    assert bundle.jobs == []
    assert [[(e.field, e.reason) for e in part.field_errors] for part in bundle.parts] == [
        [("config.stages", Reason.INVALID_STAGE_PLAN)],
        [("config.stages", Reason.INVALID_STAGE_PLAN)],
        [("input_images", Reason.INVALID_STAGE_PLAN)],
        [("config.txt2img.width", Reason.INVALID_FIELD),
         ("config.txt2img.height", Reason.INVALID_FIELD)],
    ]
    assert bundle.errors[3].message == (
        "part d: config.txt2img.width: must be a multiple of 8 from 64 to 4096, got 500")


def test_an_upscale_only_part_makes_one_job_per_input_image() -> None:
    config = PipelineConfig(stages=StageFlags(upscale_enabled=True), batch_size=4, n_iter=2)
    config.upscale.upscaler = "R-ESRGAN 4x+"

    bundle = normalize(ManualPart("u", "", "", config, ["in/a.png", "in/b.png", "in/c.png"]))

    assert [job.input_images for job in bundle.jobs] == [["in/a.png"], ["in/b.png"],
                                                         ["in/c.png"]]
    assert all((job.batch_size, job.n_iter) == (1, 1) for job in bundle.jobs)
    assert all(job.stage_plan == [StageType.UPSCALE] for job in bundle.jobs)
    assert len({job.config_hash for job in bundle.jobs}) == 3
    assert bundle.summary.estimated_images == 3


def test_input_images_on_a_txt2img_plan_are_refused() -> None:
    bundle = normalize(ManualPart("m", "x", "", txt2img_config(), ["a.png"]))

    assert [e.field for e in bundle.parts[0].field_errors] == ["input_images"]


def test_the_summary() -> None:
    overrides = with_adetailer(PipelineConfig(batch_size=2, n_iter=3))
    # Override flags replace the pack's selection as a whole, so txt2img is named again.
    overrides.stages.txt2img_enabled = True
    overrides.stages.upscale_enabled = True
    overrides.upscale.upscaler = "R-ESRGAN 4x+"
    overrides.global_negative = "lowres"

    bundle = normalize(*pack_parts("castles", range(2), config_overrides=overrides),
                       PackRowPart("bad", "castles", 7))

    summary = bundle.summary
    assert (summary.part_count, summary.job_count, summary.estimated_images) == (3, 5, 30)
    assert summary.positive_preview == "a knight at the gate, <lora:detail:0.6>"
    assert summary.negative_preview == "blurry, lowres"
    assert summary.stage_summary == "txt2img → adetailer → upscale"
    assert summary.batch_summary == "5 jobs, batch 2, 3 iterations each: 30 images"
    assert [error.part_id for error in summary.errors] == ["bad"]


def test_the_summary_of_mixed_and_empty_bundles() -> None:
    mixed = normalize(ManualPart("a", "x", "", txt2img_config()),
                      ManualPart("b", "y", "", with_adetailer(txt2img_config())),
                      ManualPart("c", "z", "", dataclasses.replace(txt2img_config(),
                                                                   batch_size=4)))

    assert mixed.summary.stage_summary == "txt2img; txt2img → adetailer"
    assert mixed.summary.batch_summary == "3 jobs, 6 images (mixed batch sizes)"
    empty = normalize()
    assert (empty.summary.job_count, empty.summary.batch_summary) == (0, "no jobs")


def test_a_bundle_cap_refuses_the_part_that_crosses_it() -> None:
    bundle = normalize_draft(pack_parts("castles", range(2)), SEEDS, FakePacks(CASTLES),
                             max_jobs=3)

    assert bundle.parts[0].job_count == 0 and bundle.parts[1].job_count == 1
    assert bundle.errors[0].reason == Reason.TOO_MANY_VARIANTS


def test_each_pack_is_loaded_once_per_normalisation() -> None:
    packs = FakePacks(CASTLES)

    normalize_draft(pack_parts("castles", range(2)) * 3, SEEDS, packs)

    assert packs.loads == 1


def test_random_matrix_picks_are_reproducible_per_part() -> None:
    pack = make_pack("[[n]]", slots={"n": [str(n) for n in range(100)]}, mode=MatrixMode.RANDOM,
                     limit=3, pack_id="rnd", defaults=txt2img_config())
    packs = FakePacks(pack)

    first = normalize_draft([PackRowPart("p", "rnd", 0)], SEEDS, packs)
    again = normalize_draft([PackRowPart("p", "rnd", 0)], SEEDS, packs)
    other = normalize_draft([PackRowPart("q", "rnd", 0)], SEEDS, packs)

    assert [job.prompt for job in first.jobs] == [job.prompt for job in again.jobs]
    assert len(first.jobs) == 3
    assert [job.prompt for job in other.jobs] != [job.prompt for job in first.jobs]
