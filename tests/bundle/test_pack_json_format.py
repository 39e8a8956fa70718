"""The `.json` pack format, preset_data defaults, sibling defaults and format precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stablenew.bundle.domain import PackError
from stablenew.bundle.packs import MatrixMode, PackFormat, PackLibrary
from stablenew.contract.model import (
    AdetailerPass,
    PromptTag,
    PromptTagKind,
    ResizeMode,
    UpscaleMode,
)
from tests.bundle.helpers import write, write_json

REFERENCE_PACK: dict[str, Any] = {
    "pack_data": {
        "name": "Castles",
        "slots": [
            {"index": 0, "text": "a [[job]] guarding a [[place]] at dawn", "negative": "blurry",
             "loras": [["detail_tweaker", 0.6]], "positive_embeddings": ["good_hands"],
             "negative_embeddings": []}
        ],
        "matrix": {"enabled": True, "mode": "fanout", "limit": 8,
                   "slots": [{"name": "job", "values": ["knight", "wizard"]},
                             {"name": "place", "values": ["gate", "tower"]}]}
    },
    "preset_data": {
        "txt2img": {"model": "v1-5-pruned-emaonly", "sampler_name": "Euler a", "steps": 25,
                    "cfg_scale": 7, "width": 512, "height": 768, "seed": -1},
        "adetailer": {"adetailer_model": "face_yolov8n.pt", "adetailer_confidence": 0.35},
        "upscale": {"upscaler": "R-ESRGAN 4x+", "upscaling_resize": 2},
        "pipeline": {"txt2img_enabled": True, "adetailer_enabled": True, "upscale_enabled": False,
                     "images_per_prompt": 1, "n_iter": 1}
    }
}


@pytest.fixture
def library(tmp_path: Path) -> PackLibrary:
    return PackLibrary(tmp_path)


def test_the_reference_json_pack(tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "castles.json", REFERENCE_PACK)

    pack = library.load_pack("castles")

    assert (pack.pack_id, pack.name, pack.format) == ("castles", "Castles", PackFormat.JSON)
    (row,) = pack.rows
    assert row.positive == ("a [[job]] guarding a [[place]] at dawn, <embedding:good_hands>,"
                            " <lora:detail_tweaker:0.6>")
    assert (row.negative, row.line) == ("blurry", 0)
    assert row.tags == [PromptTag(PromptTagKind.EMBEDDING, "good_hands", 1.0),
                        PromptTag(PromptTagKind.LORA, "detail_tweaker", 0.6)]
    assert (pack.matrix.enabled, pack.matrix.mode, pack.matrix.limit) == (
        True, MatrixMode.FANOUT, 8)
    assert [slot.values for slot in pack.matrix.slots] == [["knight", "wizard"], ["gate", "tower"]]


def test_preset_data_becomes_the_pipeline_defaults(tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "castles.json", REFERENCE_PACK)

    defaults = library.load_pack("castles").defaults

    txt2img = defaults.txt2img
    assert (txt2img.model, txt2img.sampler_name, txt2img.steps, txt2img.cfg_scale) == (
        "v1-5-pruned-emaonly", "Euler a", 25, 7.0)
    assert (txt2img.width, txt2img.height, txt2img.seed) == (512, 768, -1)
    # What the pass leaves out is the extension's default (mask blur, dilate/erode 4, inpaint
    # only the masked area with 32 pixels of padding).
    assert defaults.adetailer.passes == [AdetailerPass(
        model="face_yolov8n.pt", confidence=0.35, mask_blur=4, dilate_erode=4,
        inpaint_only_masked=True, inpaint_padding=32)]
    assert (defaults.upscale.upscaler, defaults.upscale.factor) == ("R-ESRGAN 4x+", 2.0)
    stages = defaults.stages
    assert (stages.txt2img_enabled, stages.img2img_enabled, stages.adetailer_enabled,
            stages.upscale_enabled) == (True, False, True, False)
    assert (defaults.batch_size, defaults.n_iter) == (1, 1)


def test_more_preset_keys_hires_refiner_img2img_and_several_adetailer_passes(
        tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "full.json", {"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {
        "txt2img": {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent",
                    "denoising_strength": 0.55, "refiner_checkpoint": "sdxl_refiner",
                    "refiner_switch_at": 0.8, "clip_skip": 2},
        "img2img": {"denoising_strength": 0.3, "resize_mode": 1},
        "upscale": {"upscale_mode": "img2img", "denoising_strength": 0.2},
        "adetailer": {"passes": [{"model": "face_yolov8n.pt"},
                                 {"model": "hand_yolov8n.pt", "confidence": 0.5}]},
        "pipeline": {"img2img_enabled": True, "batch_size": 2, "n_iter": 3}}})

    defaults = library.load_pack("full").defaults

    hires = defaults.txt2img.hires_fix
    assert (hires.enabled, hires.scale, hires.upscaler, hires.denoising_strength) == (
        True, 1.5, "Latent", 0.55)
    assert (defaults.txt2img.refiner.checkpoint, defaults.txt2img.refiner.switch_at) == (
        "sdxl_refiner", 0.8)
    assert (defaults.img2img.denoising_strength, defaults.img2img.resize_mode) == (
        0.3, ResizeMode.CROP_AND_RESIZE)
    assert (defaults.upscale.mode, defaults.upscale.denoising_strength) == (
        UpscaleMode.IMG2IMG, 0.2)
    assert [p.model for p in defaults.adetailer.passes] == ["face_yolov8n.pt", "hand_yolov8n.pt"]
    assert (defaults.batch_size, defaults.n_iter, defaults.stages.img2img_enabled) == (2, 3, True)


def test_adetailer_fields_a_pass_sets_to_zero_stay_zero(
        tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "zeros.json", {"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {
        "adetailer": {"adetailer_model": "face.pt", "adetailer_mask_blur": 0,
                      "adetailer_inpaint_only_masked": False,
                      "passes": [{"model": "hand.pt", "dilate_erode": 0, "inpaint_padding": 0},
                                 {"model": "person.pt", "mask_blur": 9}]}}})

    first, second, third = library.load_pack("zeros").defaults.adetailer.passes

    fields = ("mask_blur", "dilate_erode", "inpaint_only_masked", "inpaint_padding")
    assert [getattr(first, name) for name in fields] == [0, 4, False, 32]
    assert [getattr(second, name) for name in fields] == [4, 0, True, 0]
    assert [getattr(third, name) for name in fields] == [9, 4, True, 32]


def test_no_detection_says_whether_a_pass_that_finds_nothing_fails(
        tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "strict.json", {"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {
        "adetailer": {"adetailer_model": "face.pt", "adetailer_no_detection": "error",
                      "passes": [{"model": "hand.pt", "no_detection": "allow"},
                                 {"model": "person.pt"}]}}})

    passes = library.load_pack("strict").defaults.adetailer.passes

    assert [p.fail_on_no_detection for p in passes] == [True, False, False]


def test_an_unknown_no_detection_is_a_pack_error_naming_it(
        tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "odd.json", {"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {
        "adetailer": {"passes": [{"model": "hand.pt", "no_detection": "fail"}]}}})

    with pytest.raises(PackError) as caught:
        library.load_pack("odd")

    assert caught.value.field == "preset_data.adetailer.passes[0].no_detection"
    assert "use 'allow' or 'error'" in caught.value.detail


@pytest.mark.parametrize("mode", list(ResizeMode), ids=[mode.name for mode in ResizeMode])
def test_resize_mode_is_the_webui_number(tmp_path: Path, library: PackLibrary,
                                         mode: ResizeMode) -> None:
    write_json(tmp_path, "resize.json", {"pack_data": {"slots": [{"text": "a"}]},
                                         "preset_data": {"img2img": {"resize_mode": mode.value}}})

    assert library.load_pack("resize").defaults.img2img.resize_mode is mode


def test_a_pack_without_a_seed_asks_for_random_seeds(tmp_path: Path,
                                                     library: PackLibrary) -> None:
    write_json(tmp_path, "noseed.json", {"pack_data": {"slots": [{"text": "a"}]}})
    write(tmp_path, "plain.txt", "a\n")

    assert library.load_pack("noseed").defaults.txt2img.seed == -1
    assert library.load_pack("plain").defaults.txt2img.seed == -1


def test_loras_and_embeddings_in_every_accepted_shape_and_not_duplicated(
        tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "shapes.json", {"pack_data": {"slots": [{
        "text": "castle <lora:already:0.3>", "negative": "ugly",
        "loras": ["plain", ["weighted", 0.7], {"name": "dict", "weight": 0.2}, ["already", 0.9]],
        "positive_embeddings": [["strong", 0.8]],
        "negative_embeddings": ["easynegative"]}]}})

    row = library.load_pack("shapes").rows[0]

    assert row.positive == ("castle <lora:already:0.3>, (<embedding:strong>:0.8), <lora:plain:1>,"
                            " <lora:weighted:0.7>, <lora:dict:0.2>")
    assert row.negative == "ugly, <embedding:easynegative>"


@pytest.mark.parametrize(("document", "field", "message"), [
    ({"pack_data": {"slots": [{"text": 5}]}}, "pack_data.slots[0].text", "expected a string"),
    ({"pack_data": {"slots": "row"}}, "pack_data.slots", "expected a list"),
    ({"pack_data": {"slots": [{"text": "a", "loras": [[1, 0.5]]}]}},
     "pack_data.slots[0].loras[0][0]", "expected a string"),
    ({"pack_data": {"slots": [{"text": "a"}], "matrix": {"mode": "zigzag"}}},
     "pack_data.matrix.mode", "unknown mode"),
    ({"pack_data": {"slots": [{"text": "a"}], "matrix": {"limit": -1}}},
     "pack_data.matrix.limit", "must be 0"),
    ({"pack_data": {"slots": [{"text": "a"}], "matrix": {"slots": [
        {"name": "job", "values": []}]}}}, "pack_data.matrix.slots[0].values", "no values"),
    ({"pack_data": {"slots": [{"text": "a"}], "matrix": {"slots": [
        {"name": "job", "values": ["a"]}, {"name": "job", "values": ["b"]}]}}},
     "pack_data.matrix.slots", "defined twice"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {"txt2img": {"steps": "25"}}},
     "preset_data.txt2img.steps", "expected an integer, got a string"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {"txt2img": {"steps": 2.5}}},
     "preset_data.txt2img.steps", "expected an integer"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {"txt2img": {"width": True}}},
     "preset_data.txt2img.width", "expected an integer, got a boolean"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {"pipeline": []}},
     "preset_data.pipeline", "expected an object"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {
        "pipeline": {"inpaint_enabled": True}}},
     "preset_data.pipeline.inpaint_enabled", "unknown stage 'inpaint'"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {
        "upscale": {"upscale_mode": "magic"}}},
     "preset_data.upscale.upscale_mode", "unknown upscale mode"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {"img2img": {"resize_mode": 4}}},
     "preset_data.img2img.resize_mode", "unknown resize mode 4"),
    ({"pack_data": {"slots": [{"text": "a"}]}, "preset_data": {
        "img2img": {"resize_mode": "crop"}}},
     "preset_data.img2img.resize_mode", "expected an integer, got a string"),
    ({"pack_data": {"slots": [{"text": "a"}], "wildcards": {"bad__name": ["x"]}}},
     "pack_data.wildcards.bad__name", "not a usable wildcard name"),
    (["not", "an", "object"], "(top level)", "expected an object"),
])
def test_wrong_json_types_name_the_field(tmp_path: Path, library: PackLibrary, document: Any,
                                         field: str, message: str) -> None:
    write_json(tmp_path, "wrong.json", document)

    with pytest.raises(PackError) as caught:
        library.load_pack("wrong")

    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value).startswith(f"wrong.json ({field}): ")


@pytest.mark.parametrize("flag", ["hires_enabled", "refiner_enabled", "inpaint_enabled"])
def test_an_unknown_stage_is_refused_even_switched_off(tmp_path: Path, library: PackLibrary,
                                                       flag: str) -> None:
    write_json(tmp_path, "off.json", {"pack_data": {"slots": [{"text": "a"}]},
                                      "preset_data": {"pipeline": {flag: False}}})

    with pytest.raises(PackError) as caught:
        library.load_pack("off")

    assert caught.value.field == f"preset_data.pipeline.{flag}"
    assert "the stages are txt2img, img2img, adetailer, upscale" in caught.value.detail
    assert "txt2img options" in caught.value.detail


# --- unknown keys ----------------------------------------------------------------------------

ROW = {"text": "a"}


@pytest.mark.parametrize(("document", "field"), [
    ({"pack_data": {"slots": [ROW]}, "presets": {}}, "presets"),
    ({"pack_data": {"slots": [ROW], "title": "Castles"}}, "pack_data.title"),
    ({"pack_data": {"slots": [ROW, {"positive": "a castle"}]}}, "pack_data.slots[1].positive"),
    ({"pack_data": {"slots": [{"text": "a", "neg": "b"}]}}, "pack_data.slots[0].neg"),
    ({"pack_data": {"slots": [{"text": "a", "loras": [{"name": "x", "strength": 0.5}]}]}},
     "pack_data.slots[0].loras[0].strength"),
    ({"pack_data": {"slots": [ROW], "matrix": {"mode": "fanout", "max": 3}}},
     "pack_data.matrix.max"),
    ({"pack_data": {"slots": [ROW], "matrix": {"slots": [{"name": "job", "value": ["a"]}]}}},
     "pack_data.matrix.slots[0].value"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"hires": {}}}, "preset_data.hires"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"txt2img": {"sampler": "Euler a"}}},
     "preset_data.txt2img.sampler"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"img2img": {"model": "x"}}},
     "preset_data.img2img.model"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"upscale": {"factor": 2}}},
     "preset_data.upscale.factor"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"pipeline": {"batch": 2}}},
     "preset_data.pipeline.batch"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"adetailer": {"model": "face.pt"}}},
     "preset_data.adetailer.model"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"adetailer": {
        "adetailer_model": "face.pt", "adetailer_strength": 0.4}}},
     "preset_data.adetailer.adetailer_strength"),
    ({"pack_data": {"slots": [ROW]}, "preset_data": {"adetailer": {"passes": [
        {"model": "face.pt", "adetailer_confidence": 0.4}]}}},
     "preset_data.adetailer.passes[0].adetailer_confidence"),
    # A key that is there but null is still a key the author wrote.
    ({"pack_data": {"slots": [{"text": "a", "weight": None}]}}, "pack_data.slots[0].weight"),
])
def test_an_unknown_key_at_any_level_is_a_pack_error_naming_it(
        tmp_path: Path, library: PackLibrary, document: Any, field: str) -> None:
    write_json(tmp_path, "wrong.json", document)

    with pytest.raises(PackError) as caught:
        library.load_pack("wrong")

    key = field.rsplit(".", 1)[-1]
    assert caught.value.field == field
    assert caught.value.detail.startswith(f"unknown key {key!r}; ")
    assert str(caught.value).startswith(f"wrong.json ({field}): unknown key")


def test_the_message_lists_the_keys_a_row_takes(tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "rows.json", {"pack_data": {"slots": [
        {"positive": "a castle", "negative": "blurry"}]}})

    with pytest.raises(PackError) as caught:
        library.load_pack("rows")

    assert str(caught.value) == (
        "rows.json (pack_data.slots[0].positive): unknown key 'positive'; a row takes text,"
        " negative, loras, positive_embeddings, negative_embeddings, index")


def test_an_unknown_key_in_a_sibling_defaults_file_names_that_file(
        tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "castles.txt", "a castle\n")
    write_json(tmp_path, "castles.json", {"preset_data": {"txt2img": {"stpes": 30}}})

    with pytest.raises(PackError) as caught:
        library.load_pack("castles")

    assert (caught.value.file, caught.value.field) == ("castles.json", "preset_data.txt2img.stpes")
    assert "unknown key 'stpes'" in str(caught.value)
    assert "steps" in caught.value.detail  # the keys it takes are listed


def test_wildcard_names_are_the_authors_own(tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "wild.json", {"pack_data": {
        "slots": [{"text": "a __anything_goes__ cat"}],
        "wildcards": {"anything_goes": ["red", "blue"]}}})

    assert [w.name for w in library.load_pack("wild").wildcards] == ["anything_goes"]


def test_every_key_the_format_documents_is_accepted(tmp_path: Path,
                                                    library: PackLibrary) -> None:
    """One file with each key of every level (docs/PROMPT_PACKS.md lists the same)."""
    write_json(tmp_path, "all.json", EVERY_KEY)

    pack = library.load_pack("all")

    assert pack.errors == []
    assert (pack.name, len(pack.rows), pack.matrix.mode) == ("All keys", 1, MatrixMode.ROTATE)
    assert len(pack.defaults.adetailer.passes) == 2


EVERY_KEY: dict[str, Any] = {
    "pack_data": {
        "name": "All keys",
        "slots": [{"index": 0, "text": "a [[job]] with __color__ eyes", "negative": "blurry",
                   "loras": ["a", ["b", 0.5], {"name": "c", "weight": 0.7}],
                   "positive_embeddings": ["good"], "negative_embeddings": [["bad", 0.8]]}],
        "matrix": {"enabled": True, "mode": "rotate", "limit": 0,
                   "slots": [{"name": "job", "values": ["knight"]}]},
        "wildcards": {"color": ["green"]},
        "wildcard_mode": "sequential",
    },
    "preset_data": {
        "txt2img": {"model": "m", "sd_model_checkpoint": "m", "vae": "v", "sampler_name": "Euler",
                    "scheduler": "Karras", "steps": 20, "cfg_scale": 7, "width": 512,
                    "height": 512, "seed": -1, "subseed": -1, "subseed_strength": 0,
                    "clip_skip": 1, "enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent",
                    "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0,
                    "denoising_strength": 0.5, "hr_checkpoint_name": "", "hr_sampler_name": "",
                    "hr_scheduler": "", "hr_prompt": "", "hr_negative_prompt": "",
                    "refiner_enabled": True, "refiner_checkpoint": "r",
                    "refiner_switch_at": 0.8},
        "img2img": {"denoising_strength": 0.3, "resize_mode": 0, "steps": 0, "cfg_scale": 0,
                    "sampler_name": "", "scheduler": ""},
        "adetailer": {"adetailer_model": "face.pt", "adetailer_prompt": "",
                      "adetailer_negative_prompt": "", "adetailer_confidence": 0.3,
                      "adetailer_mask_blur": 4, "adetailer_dilate_erode": 4,
                      "adetailer_denoising_strength": 0.4,
                      "adetailer_inpaint_only_masked": True, "adetailer_inpaint_padding": 32,
                      "adetailer_steps": 0, "adetailer_cfg_scale": 0,
                      "adetailer_sampler_name": "",
                      "passes": [{"model": "hand.pt", "prompt": "", "negative_prompt": "",
                                  "confidence": 0.3, "mask_blur": 4, "dilate_erode": 4,
                                  "denoising_strength": 0.4, "inpaint_only_masked": True,
                                  "inpaint_padding": 32, "steps": 0, "cfg_scale": 0,
                                  "sampler_name": ""}]},
        "upscale": {"upscaler": "Lanczos", "upscaling_resize": 2, "upscale_mode": "extras",
                    "denoising_strength": 0.2, "upscaler_2": "None",
                    "extras_upscaler_2_visibility": 0},
        "pipeline": {"txt2img_enabled": True, "img2img_enabled": False,
                     "adetailer_enabled": True, "upscale_enabled": True,
                     "images_per_prompt": 1, "batch_size": 1, "n_iter": 1},
    },
}


# --- stages when a pack names none -----------------------------------------------------------


def _stages(library: PackLibrary, pack_id: str) -> tuple[bool, bool, bool, bool]:
    flags = library.load_pack(pack_id).defaults.stages
    return (flags.txt2img_enabled, flags.img2img_enabled, flags.adetailer_enabled,
            flags.upscale_enabled)


TXT2IMG_ONLY = (True, False, False, False)


@pytest.mark.parametrize(("files", "expected"), [
    pytest.param({"p.txt": "a castle\n"}, TXT2IMG_ONLY, id="txt-alone"),
    pytest.param({"p.tsv": "a castle\tblurry\n"}, TXT2IMG_ONLY, id="tsv-alone"),
    pytest.param({"p.json": {"pack_data": {"slots": [ROW]}}}, TXT2IMG_ONLY, id="json-rows-only"),
    pytest.param({"p.txt": "a [[job]]\n", "p.json": {"pack_data": {"matrix": {"slots": [
        {"name": "job", "values": ["knight"]}]}}}}, TXT2IMG_ONLY, id="sibling-matrix-only"),
    pytest.param({"p.json": {"pack_data": {"slots": [ROW]}, "preset_data": {
        "txt2img": {"steps": 30}, "pipeline": {"images_per_prompt": 2}}}}, TXT2IMG_ONLY,
        id="settings-but-no-stage-flag"),
    pytest.param({"p.json": {"pack_data": {"slots": [ROW]}, "preset_data": {"pipeline": {
        "txt2img_enabled": None}}}}, TXT2IMG_ONLY, id="null-flag-is-unset"),
    pytest.param({"p.json": {"pack_data": {"slots": [ROW]}, "preset_data": {"pipeline": {
        "img2img_enabled": True}}}}, (False, True, False, False), id="named-stages-only"),
    pytest.param({"p.json": {"pack_data": {"slots": [ROW]}, "preset_data": {
        "adetailer": {"adetailer_model": "face.pt"}, "pipeline": {"adetailer_enabled": True}}}},
        (False, False, True, False), id="named-adetailer-alone-stays-alone"),
    pytest.param({"p.json": {"pack_data": {"slots": [ROW]}, "preset_data": {"pipeline": {
        "txt2img_enabled": False}}}}, (False, False, False, False), id="all-named-off"),
])
def test_a_pack_that_names_no_stage_runs_txt2img(tmp_path: Path, library: PackLibrary,
                                                 files: dict[str, Any],
                                                 expected: tuple[bool, ...]) -> None:
    for name, content in files.items():
        if isinstance(content, dict):
            write_json(tmp_path, name, content)
        else:
            write(tmp_path, name, content)

    assert _stages(library, "p") == expected
    assert library.load_pack("p").defaults.txt2img.seed == -1


def test_broken_json_names_line_and_column(tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "broken.json", '{\n  "pack_data": {\n    "slots": [\n      {"text": "a",}\n')

    with pytest.raises(PackError) as caught:
        library.load_pack("broken")

    error = caught.value
    assert (error.file, error.line, error.column) == ("broken.json", 4, 20)
    assert str(error).startswith("broken.json line 4 column 20: is not valid JSON")


def test_nan_is_not_json(tmp_path: Path, library: PackLibrary) -> None:
    write(tmp_path, "nan.json", '{"pack_data": {"slots": [{"text": "a"}]},'
                                ' "preset_data": {"txt2img": {"cfg_scale": NaN}}}')

    with pytest.raises(PackError, match="NaN is not a JSON number"):
        library.load_pack("nan")


def test_json_with_rows_wins_over_txt_which_wins_over_tsv(tmp_path: Path,
                                                          library: PackLibrary) -> None:
    write(tmp_path, "a.tsv", "from tsv\n")
    write(tmp_path, "a.txt", "from txt\n")
    write(tmp_path, "b.tsv", "from tsv\n")
    write(tmp_path, "b.txt", "from txt\n")
    write_json(tmp_path, "b.json", {"pack_data": {"slots": [{"text": "from json"}]}})
    write(tmp_path, "c.tsv", "from tsv\n")

    assert library.load_pack("a").rows[0].positive == "from txt"
    assert library.load_pack("b").rows[0].positive == "from json"
    assert library.load_pack("c").rows[0].positive == "from tsv"
    assert [(s.pack_id, s.format) for s in library.list_packs()] == [
        ("a", PackFormat.TXT), ("b", PackFormat.JSON), ("c", PackFormat.TSV)]


def test_a_json_without_rows_is_the_sibling_defaults_of_the_txt(tmp_path: Path,
                                                                library: PackLibrary) -> None:
    write(tmp_path, "castles.txt", "a [[job]]\n")
    write_json(tmp_path, "castles.json", {
        "pack_data": {"name": "Castles", "matrix": {"slots": [
            {"name": "job", "values": ["knight"]}]}, "wildcards": {"color": ["red"]},
            "wildcard_mode": "sequential"},
        "preset_data": {"txt2img": {"steps": 33}}})

    pack = library.load_pack("castles")

    assert (pack.format, pack.name, pack.defaults.txt2img.steps) == (PackFormat.TXT, "Castles", 33)
    assert pack.matrix.enabled and pack.matrix.slots[0].name == "job"
    assert [(w.name, w.values) for w in pack.wildcards] == [("color", ["red"])]
    assert pack.wildcard_mode == MatrixMode.SEQUENTIAL


def test_a_shadowed_txt_is_not_read_when_the_json_has_rows(tmp_path: Path,
                                                           library: PackLibrary) -> None:
    write(tmp_path, "x.txt", b"\x00\x01binary")
    write_json(tmp_path, "x.json", {"pack_data": {"slots": [{"text": "json row"}]}})

    assert library.load_pack("x").rows[0].positive == "json row"


def test_a_broken_sibling_json_breaks_the_pack_clearly(tmp_path: Path,
                                                       library: PackLibrary) -> None:
    write(tmp_path, "p.txt", "a cat\n")
    write(tmp_path, "p.json", "{oops")

    with pytest.raises(PackError, match=r"p\.json line 1 column 2: is not valid JSON"):
        library.load_pack("p")


def test_a_json_without_rows_and_without_a_sibling_is_an_empty_pack(
        tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "only.json", {"pack_data": {"slots": []},
                                       "preset_data": {"txt2img": {"steps": 5}}})

    with pytest.raises(PackError, match=r"only\.json: has no prompt rows"):
        library.load_pack("only")
