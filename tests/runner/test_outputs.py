"""Image files under the output root: names from the job id, entry, stage and seed only; the
WebUI's infotext and a `stablenew` chunk in every PNG; hashes of the bytes written; the
manifest; and resolve_inside, which keeps every read under the root."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from stablenew.contract.model import ImageRef, StageType
from stablenew.runner import outputs
from stablenew.runner.outputs import ImageContext, UnsafePathError

JOB_ID = "0123456789abcdef0123456789abcdef"
INFOTEXT = "a lighthouse\nSteps: 4, Sampler: Euler a, Seed: 42, Size: 24x16, Model: v1-5"
DAY = datetime(2025, 3, 7, 23, 59, tzinfo=UTC)


def webui_png(width: int = 24, height: int = 16, text: dict[str, str] | None = None) -> bytes:
    """A PNG as the WebUI sends it: pixels plus a `parameters` chunk."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text if text is not None else {"parameters": INFOTEXT}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def context(entry: int = 7, stage: StageType = StageType.UPSCALE, seed: int = 42) -> ImageContext:
    return ImageContext(job_id=JOB_ID, entry_index=entry, stage=stage, seed=seed,
                        config_hash="c" * 64, runner_id="runner-a")


def written(tmp_path: Path, png: bytes, image_context: ImageContext,
            source_text: dict[str, str] | None = None) -> tuple[ImageRef, bytes]:
    folder = outputs.job_folder(tmp_path, JOB_ID, DAY)
    ref = outputs.write_image(tmp_path, folder, png, image_context, source_text)
    return ref, (tmp_path / ref.path).read_bytes()


def test_the_job_folder_is_the_utc_date_then_the_job_id(tmp_path: Path) -> None:
    assert outputs.job_folder(tmp_path, JOB_ID, DAY) == tmp_path / "2025-03-07" / JOB_ID
    # Without a day: today's UTC date (checked around the call, in case midnight passes).
    before = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = outputs.job_folder(tmp_path, "deadbeef")
    after = datetime.now(UTC).strftime("%Y-%m-%d")
    assert folder.name == "deadbeef"
    assert folder.parent.name in {before, after}


@pytest.mark.parametrize("job_id", [
    "", "abc", "../../etc", "0123456789ABCDEF", "job-123456789", "01234567/89abcdef",
    "01234567\x00", "a" * 65, "0123456789abcdeg", " 0123456789abcdef",
])
def test_a_job_id_that_is_not_a_queue_hex_id_is_refused(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(UnsafePathError):
        outputs.job_folder(tmp_path, job_id)


@pytest.mark.parametrize(("entry", "stage", "seed", "name"), [
    (0, StageType.TXT2IMG, 100, "000_txt2img_100.png"),
    (7, StageType.UPSCALE, 42, "007_upscale_42.png"),
    (12, StageType.ADETAILER, 4294967294, "012_adetailer_4294967294.png"),
    (999, StageType.IMG2IMG, 0, "999_img2img_0.png"),
])
def test_files_are_named_entry_stage_seed(tmp_path: Path, entry: int, stage: StageType,
                                          seed: int, name: str) -> None:
    ref, _ = written(tmp_path, webui_png(), context(entry, stage, seed))
    assert ref.path == f"2025-03-07/{JOB_ID}/{name}"
    assert (tmp_path / "2025-03-07" / JOB_ID / name).is_file()


def test_the_image_ref_describes_the_bytes_on_disk(tmp_path: Path) -> None:
    ref, data = written(tmp_path, webui_png(24, 16), context())
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.size_bytes == len(data)
    assert (ref.width, ref.height, ref.seed) == (24, 16, 42)
    assert (ref.stage, ref.runner_id) == (StageType.UPSCALE, "runner-a")
    # Nothing but the image is left behind (the temporary file was renamed).
    assert sorted(p.name for p in (tmp_path / "2025-03-07" / JOB_ID).iterdir()) == [
        "007_upscale_42.png"]


def test_the_png_keeps_the_webui_infotext_and_adds_the_stablenew_chunk(tmp_path: Path) -> None:
    _, data = written(tmp_path, webui_png(text={"parameters": INFOTEXT,
                                                "postprocessing": "Postprocess upscale by: 2"}),
                      context())
    text = outputs.png_text(data)
    assert text["parameters"] == INFOTEXT
    assert text["postprocessing"] == "Postprocess upscale by: 2"
    assert json.loads(text["stablenew"]) == {
        "job_id": JOB_ID, "entry": 7, "stage": "upscale", "seed": 42, "config_hash": "c" * 64}
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (24, 16)
        assert image.getpixel((0, 0)) == (200, 30, 90)


def test_a_stablenew_chunk_from_the_input_is_replaced_not_kept(tmp_path: Path) -> None:
    forged = json.dumps({"job_id": "ffffffff", "entry": 99})
    _, data = written(tmp_path, webui_png(text={"parameters": INFOTEXT, "stablenew": forged}),
                      context())
    assert json.loads(outputs.png_text(data)["stablenew"])["job_id"] == JOB_ID
    assert data.count(b"stablenew") == 1


def test_our_chunk_is_inserted_before_the_image_data_which_is_not_re_encoded(
        tmp_path: Path) -> None:
    png = webui_png()
    ref, data = written(tmp_path, png, context())
    idat = png.index(b"IDAT") - 4  # the image data and every chunk after it, byte for byte
    assert data.endswith(png[idat:]) and data.startswith(png[:idat])
    assert data.index(b"stablenew") < data.index(b"IDAT")
    assert (ref.width, ref.height) == (24, 16)
    assert outputs.png_text(data)["parameters"] == INFOTEXT


@pytest.mark.parametrize("damage", ["a bit flipped in the image data", "truncated",
                                    "not a PNG"])
def test_a_damaged_png_from_the_webui_is_refused(tmp_path: Path, damage: str) -> None:
    png = webui_png()
    idat = png.index(b"IDAT") + 4
    damaged = {"a bit flipped in the image data": png[:idat] + bytes([png[idat] ^ 1])
               + png[idat + 1:],
               "truncated": png[:idat + 3],
               "not a PNG": b"not an image at all"}[damage]
    with pytest.raises(OSError):  # the entry fails with it (PIL's errors are OSErrors)
        written(tmp_path, damaged, context())


def test_an_image_without_text_chunks_gets_the_stablenew_chunk(tmp_path: Path) -> None:
    _, data = written(tmp_path, webui_png(text={}), context(stage=StageType.TXT2IMG))
    text = outputs.png_text(data)
    assert set(text) == {"stablenew"}
    assert json.loads(text["stablenew"])["stage"] == "txt2img"


def test_the_manifest_is_json_in_the_job_folder(tmp_path: Path) -> None:
    folder = outputs.job_folder(tmp_path, JOB_ID, DAY)
    ref, _ = written(tmp_path, webui_png(), context())
    outputs.write_manifest(folder, {"job_id": JOB_ID,
                                    "images": [outputs.image_ref_dict(ref)]})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["job_id"] == JOB_ID
    assert manifest["images"][0] == {
        "path": ref.path, "sha256": ref.sha256, "width": 24, "height": 16, "seed": 42,
        "stage": "upscale", "size_bytes": ref.size_bytes, "runner_id": "runner-a"}
    assert not list(folder.glob("*.tmp"))


def test_with_text_and_png_size_helpers() -> None:
    png = outputs.with_text(webui_png(10, 8, {}), {"parameters": "p"})
    assert outputs.png_text(png) == {"parameters": "p"}
    assert outputs.png_size(png) == (10, 8)


SOURCE_TEXT = {"parameters": INFOTEXT, "stablenew": json.dumps({"job_id": "ffffffff"}),
               "extra": "from the source"}


@pytest.mark.parametrize("upscaled_text", [
    {},
    {"postprocessing": "Postprocess upscale by: 2", "extra": "from the upscale"},
    {"parameters": "the upscale's own infotext", "postprocessing": "p"},
])
@pytest.mark.parametrize("source_text", [SOURCE_TEXT, {}])
def test_source_text_is_kept_in_one_encode_as_adding_it_first_did(
        tmp_path: Path, upscaled_text: dict[str, str], source_text: dict[str, str]) -> None:
    """Extras output without infotext gets its source's chunks: the file written is the one
    adding them with `with_text` and then writing would make, chunk order included."""
    upscaled = webui_png(48, 32, upscaled_text)
    kept = (upscaled if "parameters" in upscaled_text or not source_text
            else outputs.with_text(upscaled, source_text))
    _, expected = written(tmp_path / "two-steps", kept, context())
    _, data = written(tmp_path / "one-step", upscaled, context(), source_text)
    assert data == expected
    assert outputs.with_source_text(upscaled, source_text) == kept


def test_the_source_text_follows_the_upscale_chunks_and_ours_comes_last(tmp_path: Path) -> None:
    upscaled = webui_png(text={"postprocessing": "p", "extra": "from the upscale"})
    _, data = written(tmp_path, upscaled, context(), SOURCE_TEXT)
    text = outputs.png_text(data)
    assert list(text) == ["postprocessing", "extra", "parameters", "stablenew"]
    assert text["extra"] == "from the source"
    assert json.loads(text["stablenew"])["job_id"] == JOB_ID


# --- resolve_inside ----------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    (folder / "2025-03-07" / JOB_ID).mkdir(parents=True)
    (folder / "2025-03-07" / JOB_ID / "000_txt2img_1.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("outside")
    return folder


def test_a_path_inside_the_root_resolves(root: Path) -> None:
    relative = f"2025-03-07/{JOB_ID}/000_txt2img_1.png"
    assert outputs.resolve_inside(root, relative) == (root / relative).resolve()
    # ".." that stays inside is still inside.
    assert outputs.resolve_inside(root, f"2025-03-07/../2025-03-07/{JOB_ID}") == (
        root / "2025-03-07" / JOB_ID).resolve()


@pytest.mark.parametrize("relative", [
    "../secret.txt", "../../etc/passwd", "2025-03-07/../../secret.txt", "..",
    f"2025-03-07/{JOB_ID}/../../../secret.txt",
])
def test_dot_dot_out_of_the_root_is_refused(root: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError):
        outputs.resolve_inside(root, relative)


@pytest.mark.parametrize("relative", ["/etc/passwd", "\\windows\\system32", "", "a\x00b"])
def test_absolute_empty_and_nul_paths_are_refused(root: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError):
        outputs.resolve_inside(root, relative)


def test_an_absolute_path_to_a_file_inside_the_root_is_still_refused(root: Path) -> None:
    inside = root / "2025-03-07" / JOB_ID / "000_txt2img_1.png"
    with pytest.raises(UnsafePathError):
        outputs.resolve_inside(root, str(inside))


def test_symlinks_out_of_the_root_are_refused(root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", root / "link.png")
    os.symlink(tmp_path, root / "escape")
    with pytest.raises(UnsafePathError):
        outputs.resolve_inside(root, "link.png")
    with pytest.raises(UnsafePathError):
        outputs.resolve_inside(root, "escape/secret.txt")


def test_a_symlink_that_stays_inside_the_root_resolves(root: Path) -> None:
    os.symlink(root / "2025-03-07", root / "latest")
    resolved = outputs.resolve_inside(root, f"latest/{JOB_ID}/000_txt2img_1.png")
    assert resolved.read_bytes() == b"png"


def test_a_root_reached_through_a_symlink_still_works(root: Path, tmp_path: Path) -> None:
    os.symlink(root, tmp_path / "root-link")
    resolved = outputs.resolve_inside(tmp_path / "root-link",
                                      f"2025-03-07/{JOB_ID}/000_txt2img_1.png")
    assert resolved.read_bytes() == b"png"
    with pytest.raises(UnsafePathError):
        outputs.resolve_inside(tmp_path / "root-link", "../secret.txt")
