"""The `.json` pack format, preset_data defaults, sibling defaults and format precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stablenew.bundle.packs import MatrixMode, PackFormat, PackLibrary
from stablenew.bundle.problems import PackError
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
    assert defaults.adetailer.passes == [AdetailerPass(model="face_yolov8n.pt", confidence=0.35)]
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
                    "refiner_switch_at": 0.8, "clip_skip": 2, "unknown_key": "ignored"},
        "img2img": {"denoising_strength": 0.3, "resize_mode": 1},
        "upscale": {"upscale_mode": "img2img", "denoising_strength": 0.2},
        "adetailer": {"passes": [{"model": "face_yolov8n.pt"},
                                 {"model": "hand_yolov8n.pt", "confidence": 0.5}]},
        "pipeline": {"img2img_enabled": True, "batch_size": 2, "n_iter": 3,
                     "hires_enabled": False},
        "some_future_section": {"x": 1}}})

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


def test_an_unknown_stage_switched_off_is_ignored(tmp_path: Path, library: PackLibrary) -> None:
    write_json(tmp_path, "off.json", {"pack_data": {"slots": [{"text": "a"}]},
                                      "preset_data": {"pipeline": {"inpaint_enabled": False}}})

    assert library.load_pack("off").rows[0].positive == "a"


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
