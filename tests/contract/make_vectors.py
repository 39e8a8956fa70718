"""Writes tests/contract/vectors.json: normalized jobs as proto3 JSON with the canonical encoding
and config hash the project's code gives each, job (bundle) hashes, and a table of doubles with
their canonical text. docs/CONTRACT.md specifies all three for clients in other languages.

Run it only on purpose, after a deliberate change of the encoding (which also bumps
ENCODING_VERSION): `python -m tests.contract.make_vectors`. The tests compare the code against the
committed file, never against a fresh run.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from stablenew.contract.config_hash import (
    ENCODING_VERSION,
    bundle_hash,
    canonical_encoding,
    config_hash,
)
from stablenew.contract.model import NormalizedJob
from stablenew.contract.proto_mapping import from_proto
from stablenew.v1 import pipeline_pb2

VECTORS_PATH = Path(__file__).with_name("vectors.json")

# (name, what it covers, the job as proto3 JSON with the proto field names, without its hash).
# Unset fields are left out, as proto3 JSON writers do; a few vectors spell defaults out.
JOBS: list[tuple[str, str, dict[str, Any]]] = [
    ("all-unset", "every field at its default: submessages are still written in full (the "
     "queue refuses the empty stage plan, but the encoding is defined)", {}),
    ("txt2img-basic", "the common case: txt2img only, a whole-number CFG (a double: \"7.0\")", {
        "index": 0, "prompt": "a lighthouse on a cliff, golden hour",
        "negative_prompt": "blurry, lowres", "stage_plan": ["STAGE_TYPE_TXT2IMG"],
        "seed": "1234567890", "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a",
        "scheduler": "Automatic", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7.0,
        "batch_size": 1, "n_iter": 1,
        "origin": {"part_id": "part-1", "prompt_source": "PROMPT_SOURCE_MANUAL"}}),
    ("txt2img-basic-other-json-form", "txt2img-basic written differently: enums as numbers, "
     "int64 as a JSON number, CFG as the integer 7, defaults spelled out, an empty submessage, "
     "other index and origin: the same hash", {
        "index": 5, "prompt": "a lighthouse on a cliff, golden hour",
        "negative_prompt": "blurry, lowres", "stage_plan": [1], "seed": 1234567890,
        "subseed": "0", "subseed_strength": 0, "model": "v1-5-pruned-emaonly", "vae": "",
        "sampler_name": "Euler a", "scheduler": "Automatic", "width": 512, "height": 512,
        "steps": 20, "cfg_scale": 7, "batch_size": 1, "n_iter": 1, "clip_skip": 0,
        "hires_fix": {}, "refiner": {"enabled": False}, "adetailer_passes": [],
        "upscale": {"mode": 0}, "input_images": [], "tags": [],
        "origin": {"part_id": "part-9", "prompt_source": 2, "row_index": 3}}),
    ("txt2img-hires-refiner", "hires fix and the SDXL refiner, every option set", {
        "index": 1, "prompt": "an astronaut riding a horse, highly detailed",
        "negative_prompt": "cartoon", "stage_plan": ["STAGE_TYPE_TXT2IMG"],
        "seed": "42", "subseed": "7", "subseed_strength": 0.25, "model": "sd_xl_base_1.0",
        "vae": "sdxl_vae.safetensors", "sampler_name": "DPM++ 2M", "scheduler": "Karras",
        "width": 1024, "height": 768, "steps": 30, "cfg_scale": 6.5, "batch_size": 2,
        "n_iter": 3, "clip_skip": 2,
        "hires_fix": {"enabled": True, "scale": 1.5, "upscaler": "Latent",
                      "second_pass_steps": 10, "resize_x": 1536, "resize_y": 1152,
                      "denoising_strength": 0.45, "checkpoint": "sd_xl_base_1.0",
                      "sampler_name": "Euler", "scheduler": "Normal",
                      "prompt": "hires prompt", "negative_prompt": "hires negative"},
        "refiner": {"enabled": True, "checkpoint": "sd_xl_refiner_1.0", "switch_at": 0.8}}),
    ("img2img-first-stage", "img2img as the only stage: input images, resize mode", {
        "index": 2, "prompt": "oil painting of the input", "stage_plan": ["STAGE_TYPE_IMG2IMG"],
        "seed": "1001", "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a",
        "width": 512, "height": 768, "steps": 20, "cfg_scale": 7.5, "batch_size": 1,
        "n_iter": 1,
        "img2img": {"denoising_strength": 0.55, "resize_mode": 1, "steps": 25,
                    "cfg_scale": 8.0, "sampler_name": "DDIM", "scheduler": "Uniform"},
        "input_images": ["photos/a.png", "photos/b.png"]}),
    ("txt2img-then-img2img", "img2img refining the txt2img images (0 = as the generation)", {
        "index": 3, "prompt": "a red fox in snow", "negative_prompt": "text, watermark",
        "stage_plan": ["STAGE_TYPE_TXT2IMG", "STAGE_TYPE_IMG2IMG"], "seed": "987654321",
        "model": "dreamshaper_8", "sampler_name": "DPM++ SDE", "scheduler": "Karras",
        "width": 640, "height": 448, "steps": 24, "cfg_scale": 5.5, "batch_size": 1,
        "n_iter": 2, "img2img": {"denoising_strength": 0.3}}),
    ("adetailer-two-passes", "ADetailer after txt2img, two passes (the second mostly default)", {
        "index": 4, "prompt": "portrait of a knight", "stage_plan": [
            "STAGE_TYPE_TXT2IMG", "STAGE_TYPE_ADETAILER"],
        "seed": "55", "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a",
        "width": 512, "height": 512, "steps": 20, "cfg_scale": 7.0, "batch_size": 1,
        "n_iter": 1, "adetailer_passes": [
            {"model": "face_yolov8n.pt", "prompt": "detailed face", "negative_prompt": "ugly",
             "confidence": 0.3, "mask_blur": 4, "dilate_erode": 4, "denoising_strength": 0.4,
             "inpaint_only_masked": True, "inpaint_padding": 32, "steps": 28,
             "cfg_scale": 6.0, "sampler_name": "DPM++ 2M"},
            {"model": "hand_yolov8n.pt", "confidence": 0.35}]}),
    ("upscale-extras", "upscale through the extras tab, with a second upscaler", {
        "index": 5, "prompt": "a city at night", "stage_plan": [
            "STAGE_TYPE_TXT2IMG", "STAGE_TYPE_UPSCALE"],
        "seed": "777", "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a",
        "width": 512, "height": 512, "steps": 20, "cfg_scale": 7.0, "batch_size": 1,
        "n_iter": 1, "upscale": {"mode": "UPSCALE_MODE_EXTRAS", "upscaler": "R-ESRGAN 4x+",
                                 "factor": 2.0, "upscaler_2": "Lanczos",
                                 "upscaler_2_visibility": 0.5}}),
    ("upscale-img2img-only", "an upscale-only plan over input images, as an img2img upscale", {
        "index": 6, "stage_plan": ["STAGE_TYPE_UPSCALE"], "seed": "3",
        "upscale": {"mode": "UPSCALE_MODE_IMG2IMG", "upscaler": "4x-UltraSharp",
                    "factor": 1.5, "denoising_strength": 0.2},
        "input_images": ["scans/page 1.png"]}),
    ("all-stages", "txt2img, img2img, ADetailer and upscale with every group of options", {
        "index": 7, "prompt": "a dragon over a castle, <lora:detail:0.6>",
        "negative_prompt": "blurry", "stage_plan": [
            "STAGE_TYPE_TXT2IMG", "STAGE_TYPE_IMG2IMG", "STAGE_TYPE_ADETAILER",
            "STAGE_TYPE_UPSCALE"],
        "seed": "2024", "subseed": "99", "subseed_strength": 0.1, "model": "sd_xl_base_1.0",
        "vae": "Automatic", "sampler_name": "DPM++ 2M", "scheduler": "Karras",
        "width": 832, "height": 1216, "steps": 35, "cfg_scale": 4.5, "batch_size": 1,
        "n_iter": 1, "clip_skip": 1,
        "hires_fix": {"enabled": True, "scale": 2.0, "upscaler": "4x-UltraSharp",
                      "denoising_strength": 0.35},
        "refiner": {"enabled": True, "checkpoint": "sd_xl_refiner_1.0", "switch_at": 0.75},
        "img2img": {"denoising_strength": 0.25, "steps": 15},
        "adetailer_passes": [{"model": "face_yolov8n.pt", "confidence": 0.3,
                              "denoising_strength": 0.4, "inpaint_only_masked": True,
                              "inpaint_padding": 32}],
        "upscale": {"mode": "UPSCALE_MODE_EXTRAS", "upscaler": "R-ESRGAN 4x+",
                    "factor": 2.0},
        "tags": [{"kind": "KIND_LORA", "name": "detail", "weight": 0.6}]}),
    ("pack-matrix-variant-0", "a pack row's first matrix variant: origin and tags are "
     "bookkeeping, not hashed", {
        "index": 8, "prompt": "a castle in fog, watercolor, <lora:paper:0.8>",
        "negative_prompt": "photo", "stage_plan": ["STAGE_TYPE_TXT2IMG"], "seed": "31337",
        "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a", "width": 512,
        "height": 512, "steps": 20, "cfg_scale": 7.0, "batch_size": 1, "n_iter": 1,
        "origin": {"part_id": "part-2", "prompt_source": "PROMPT_SOURCE_PACK",
                   "prompt_pack_id": "castles", "pack_name": "Castles", "row_index": 4,
                   "variant_index": 0},
        "tags": [{"kind": "KIND_LORA", "name": "paper", "weight": 0.8}]}),
    ("pack-matrix-variant-1", "the same row's second matrix variant: another prompt", {
        "index": 9, "prompt": "a castle in fog, ink drawing, <lora:paper:0.8>",
        "negative_prompt": "photo", "stage_plan": ["STAGE_TYPE_TXT2IMG"], "seed": "31337",
        "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a", "width": 512,
        "height": 512, "steps": 20, "cfg_scale": 7.0, "batch_size": 1, "n_iter": 1,
        "origin": {"part_id": "part-2", "prompt_source": "PROMPT_SOURCE_PACK",
                   "prompt_pack_id": "castles", "pack_name": "Castles", "row_index": 4,
                   "variant_index": 1},
        "tags": [{"kind": "KIND_LORA", "name": "paper", "weight": 0.8}]}),
    ("pack-wildcard-variant", "a wildcard variant of another row with an embedding tag", {
        "index": 10, "prompt": "a knight with a silver shield, embedding:fantasy",
        "stage_plan": ["STAGE_TYPE_TXT2IMG"], "seed": "4294967296",
        "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a", "width": 512,
        "height": 512, "steps": 20, "cfg_scale": 7.0, "batch_size": 1, "n_iter": 1,
        "origin": {"part_id": "part-3", "prompt_source": "PROMPT_SOURCE_PACK",
                   "prompt_pack_id": "heroes", "pack_name": "Heroes", "row_index": 0,
                   "variant_index": 2},
        "tags": [{"kind": "KIND_EMBEDDING", "name": "fantasy", "weight": 1.0}]}),
    ("pack-matrix-variant-0-elsewhere", "pack-matrix-variant-0 at another index, with another "
     "origin and no tags: the same hash", {
        "index": 41, "prompt": "a castle in fog, watercolor, <lora:paper:0.8>",
        "negative_prompt": "photo", "stage_plan": ["STAGE_TYPE_TXT2IMG"], "seed": "31337",
        "model": "v1-5-pruned-emaonly", "sampler_name": "Euler a", "width": 512,
        "height": 512, "steps": 20, "cfg_scale": 7.0, "batch_size": 1, "n_iter": 1,
        "origin": {"part_id": "part-7", "prompt_source": "PROMPT_SOURCE_MANUAL"}}),
    ("unicode-and-escapes", "non-ASCII text is written as UTF-8, not escaped; quotes, "
     "backslashes and control characters are escaped; / and U+2028 are not", {
        "index": 11,
        "prompt": "château «fort» 日本の城 🏰 e\u0301 \"quoted\" back\\slash a/b tab\tnew\nline"
                  " \u2028 \u007f end",
        "negative_prompt": "\u0000\u0001\u0008\u000b\u000c\r\u001f",
        "stage_plan": ["STAGE_TYPE_TXT2IMG"], "seed": "8", "model": "モデル-v2",
        "sampler_name": "Euler a", "width": 512, "height": 512, "steps": 20,
        "cfg_scale": 7.0, "batch_size": 1, "n_iter": 1,
        "input_images": ["entrées/façade.png"],
        "adetailer_passes": [{"model": "face_yolov8n.pt", "prompt": "visage détaillé 😀"}]}),
    ("float-edges", "doubles: shortest round-trip digits, exponents, -0.0, NaN and infinities", {
        "index": 12, "prompt": "floats", "stage_plan": ["STAGE_TYPE_TXT2IMG"], "seed": "1",
        "subseed_strength": 0.30000000000000004, "cfg_scale": 1e16,
        "hires_fix": {"scale": 1000000000000000.0, "denoising_strength": 0.0001},
        "refiner": {"switch_at": 1e-05},
        "img2img": {"denoising_strength": -0.0, "cfg_scale": 5e-324},
        "adetailer_passes": [{"confidence": "NaN", "denoising_strength": "Infinity",
                              "cfg_scale": "-Infinity"}],
        "upscale": {"factor": 1.7976931348623157e308, "denoising_strength": 123456789.125,
                    "upscaler_2_visibility": -2.5e-07}}),
    ("integer-edges", "the int64 and int32 extremes, negative values", {
        "index": 13, "prompt": "integers", "stage_plan": ["STAGE_TYPE_TXT2IMG"],
        "seed": "9223372036854775807", "subseed": "-9223372036854775808",
        "width": 2147483647, "height": -2147483648, "steps": -1, "clip_skip": 12,
        "batch_size": 0, "n_iter": 2147483647,
        "hires_fix": {"second_pass_steps": -5, "resize_x": 2147483647}}),
    ("empty-strings-and-lists", "a stage plan but every text empty and no input images", {
        "stage_plan": ["STAGE_TYPE_TXT2IMG"], "prompt": "", "negative_prompt": "",
        "input_images": [], "adetailer_passes": [{}]}),
]

# The jobs of one part: equal but for prompt, negative prompt, seed, subseed and input images,
# the fields the queue and the bundle splice into a shared encoding (JobHasher).
_PART_TEMPLATE: dict[str, Any] = {
    "stage_plan": ["STAGE_TYPE_TXT2IMG", "STAGE_TYPE_ADETAILER"], "model": "anything-v5",
    "sampler_name": "DPM++ 2M", "scheduler": "Karras", "width": 512, "height": 640,
    "steps": 22, "cfg_scale": 6.0, "batch_size": 1, "n_iter": 1,
    "adetailer_passes": [{"model": "face_yolov8n.pt", "confidence": 0.3}],
    "origin": {"part_id": "part-5", "prompt_source": "PROMPT_SOURCE_PACK",
               "prompt_pack_id": "seasons", "pack_name": "Seasons", "row_index": 1}}
_PART_VARIANTS = [
    ("spring meadow", "", "100", "0", []),
    ("summer beach, 100% sun", "crowds", "101", "5", []),
    ("autumn forest «feuilles»", "", "102", "0", ["ref/autumn.png"]),
    ("winter 雪 village", "summer", "103", "9223372036854775807", []),
    ("rain \"storm\" \\ night", "", "104", "0", ["a.png", "b.png"]),
    ("fog 🌫 harbour", "", "105", "1", []),
]
JOBS += [
    (f"part-variant-{number}", "one of six jobs of one part (see the bundle part-of-six)", {
        **_PART_TEMPLATE, "index": number, "prompt": prompt, "negative_prompt": negative,
        "seed": seed, "subseed": subseed, "input_images": images,
        "origin": {**_PART_TEMPLATE["origin"], "variant_index": number}})
    for number, (prompt, negative, seed, subseed, images) in enumerate(_PART_VARIANTS)]

# (name, what it shows, the vectors' names of its entries in order).
BUNDLES: list[tuple[str, str, list[str]]] = [
    ("one-entry", "one entry: the sha256 of its 64 hex characters", ["txt2img-basic"]),
    ("three-entries", "entries joined with newlines, in order",
     ["pack-matrix-variant-0", "pack-matrix-variant-1", "txt2img-hires-refiner"]),
    ("three-entries-reversed", "the same entries in another order: another hash",
     ["txt2img-hires-refiner", "pack-matrix-variant-1", "pack-matrix-variant-0"]),
    ("same-entry-twice", "an entry repeated counts twice",
     ["txt2img-basic", "txt2img-basic-other-json-form"]),
    ("part-of-six", "one part's six variants (the queue re-checks them with a JobHasher)",
     [f"part-variant-{number}" for number in range(len(_PART_VARIANTS))]),
    ("every-stage", "one entry of each stage plan",
     ["txt2img-basic", "img2img-first-stage", "adetailer-two-passes", "upscale-img2img-only",
      "all-stages", "unicode-and-escapes"]),
]

_SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 7.0, 7.5, 0.1, 0.2, 0.30000000000000004, 1 / 3, 2 / 3, 100.0,
    123456789.125, 1e15, 1e16, 1e17, 2e16 + 8, 9007199254740993.0, 1e21, 1e22, 1e100,
    1.7976931348623157e308, 0.001, 0.0001, 0.00012345, 1e-05, 1.5e-05, 1e-07, 5e-324,
    2.2250738585072014e-308, -2.5e-07, 1234.5678, 3.141592653589793, 2.718281828459045,
    1e-310, float("nan"), float("inf"), float("-inf"),
    # NaNs with the sign bit or a payload set: every NaN is written "nan".
    struct.unpack(">d", bytes.fromhex("fff8000000000001"))[0],
    struct.unpack(">d", bytes.fromhex("7ff4000000000000"))[0],
]


def _random_floats() -> list[float]:
    """Doubles from arbitrary bit patterns and from short decimals, the same on every run."""
    rng = random.Random(20240917)
    values: list[float] = []
    for _ in range(80):
        values.append(struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0])
    for _ in range(60):
        values.append(round(rng.uniform(-50, 50), rng.randint(0, 8)))
    for _ in range(40):
        values.append(rng.uniform(0, 1) * 10.0 ** rng.randint(-12, 20))
    return values


def to_message(job: dict[str, Any]) -> pipeline_pb2.NormalizedJob:
    """The NormalizedJob a proto3 JSON object stands for."""
    message = pipeline_pb2.NormalizedJob()
    json_format.ParseDict(job, message)
    return message


def to_entry(job: dict[str, Any]) -> NormalizedJob:
    """The domain twin the services hash, read from the job's proto3 JSON."""
    return from_proto(NormalizedJob, to_message(job))


def float_text(value: float) -> str:
    """A double's canonical text, read out of a job's encoding (cfg_scale is a double)."""
    encoded = canonical_encoding(NormalizedJob(cfg_scale=value))
    text: str = json.loads(encoded)["job"]["cfg_scale"]
    return text


def _job_vector(name: str, note: str, job: dict[str, Any]) -> dict[str, Any]:
    entry = to_entry(job)
    digest = config_hash(entry)
    return {"name": name, "note": note, "job": {**job, "config_hash": digest},
            "canonical": canonical_encoding(entry).decode(), "config_hash": digest}


def build() -> dict[str, Any]:
    """The whole vectors document."""
    jobs = [_job_vector(name, note, job) for name, note, job in JOBS]
    hashes = {vector["name"]: vector["config_hash"] for vector in jobs}
    bundles = [{"name": name, "note": note, "entries": entries,
                "entry_hashes": [hashes[entry] for entry in entries],
                "bundle_hash": bundle_hash([hashes[entry] for entry in entries])}
               for name, note, entries in BUNDLES]
    floats = [{"bits": struct.pack(">d", value).hex(), "text": float_text(value)}
              for value in [*_SPECIAL_FLOATS, *_random_floats()]]
    return {
        "about": "Test vectors for docs/CONTRACT.md: normalized jobs as proto3 JSON (proto field "
                 "names) with their canonical encoding (UTF-8 text) and config hash, job hashes "
                 "over entry hashes, and doubles (IEEE-754 bits, big-endian hex) with their "
                 "canonical text. Written by tests/contract/make_vectors.py.",
        "encoding_version": ENCODING_VERSION,
        "jobs": jobs,
        "bundles": bundles,
        "floats": floats,
    }


def render(document: dict[str, Any]) -> str:
    """The file's text: strict JSON (no NaN literals) in ASCII, so that no editor or tool can
    change a character of the vectors (non-ASCII text is \\u-escaped in the file only)."""
    return json.dumps(document, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def main() -> None:
    VECTORS_PATH.write_text(render(build()), encoding="utf-8")
    print(f"wrote {VECTORS_PATH}")


if __name__ == "__main__":
    main()
