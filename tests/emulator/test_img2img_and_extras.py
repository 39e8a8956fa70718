"""img2img (init images, errors, dependence on the input) and the extras upscale endpoints."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from PIL import Image

from stablenew.emulator.testing import decode_png, encode_png, info_of, png_parameters


def post(url: str, path: str, **body: Any) -> requests.Response:
    return requests.post(url + path, json=body, timeout=30)


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> str:
    return encode_png(Image.new("RGB", size, colour))


def test_img2img_without_init_images_is_404(url: str) -> None:
    response = post(url, "/sdapi/v1/img2img", prompt="x")
    assert response.status_code == 404
    assert response.json() == {"error": "HTTPException", "detail": "Init image not found",
                                "body": "", "errors": ""}


def test_img2img_undecodable_image_is_500(url: str) -> None:
    response = post(url, "/sdapi/v1/img2img", init_images=["this is not base64 png"], steps=2)
    assert response.status_code == 500
    assert response.json()["detail"] == "Invalid encoded image"
    assert response.json()["error"] == "HTTPException"


def test_img2img_output_depends_on_the_input(url: str) -> None:
    request = {"prompt": "x", "seed": 3, "steps": 4, "width": 128, "height": 128,
               "denoising_strength": 0.3}
    red = post(url, "/sdapi/v1/img2img", init_images=[solid((255, 0, 0))], **request).json()
    blue = post(url, "/sdapi/v1/img2img", init_images=[solid((0, 0, 255))], **request).json()
    red_again = post(url, "/sdapi/v1/img2img", init_images=[solid((255, 0, 0))],
                     **request).json()
    assert red["images"] == red_again["images"]
    assert red["images"] != blue["images"]
    red_pixel = decode_png(red["images"][0]).convert("RGB").getpixel((0, 0))
    blue_pixel = decode_png(blue["images"][0]).convert("RGB").getpixel((0, 0))
    assert isinstance(red_pixel, tuple) and isinstance(blue_pixel, tuple)
    assert red_pixel[0] > blue_pixel[0] and red_pixel[2] < blue_pixel[2]


def test_img2img_accepts_data_urls_and_reports_denoising(url: str) -> None:
    raw = solid((10, 200, 30))
    plain = post(url, "/sdapi/v1/img2img", init_images=[raw], seed=1, steps=4,
                 width=64, height=64).json()
    data_url = post(url, "/sdapi/v1/img2img", init_images=[f"data:image/png;base64,{raw}"],
                    seed=1, steps=4, width=64, height=64).json()
    assert plain["images"] == data_url["images"]
    info = info_of(plain)
    assert info["extra_generation_params"] == {"Denoising strength": 0.75}
    assert "Denoising strength: 0.75" in png_parameters(plain["images"][0])
    assert plain["parameters"]["init_images"] is None
    echoed = post(url, "/sdapi/v1/img2img", init_images=[raw], steps=1, width=64, height=64,
                  include_init_images=True).json()
    assert echoed["parameters"]["init_images"] == [raw]


def test_img2img_with_mask_only_changes_the_masked_part(url: str) -> None:
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (64, 0, 128, 128))
    body = post(url, "/sdapi/v1/img2img", init_images=[solid((0, 0, 0), (128, 128))],
                mask=encode_png(mask), mask_blur=0, steps=2, width=128, height=128,
                denoising_strength=1.0).json()
    image = decode_png(body["images"][0]).convert("RGB")
    assert image.getpixel((8, 64)) == (0, 0, 0)
    assert image.getpixel((120, 64)) != (0, 0, 0)
    assert info_of(body)["extra_generation_params"]["Mask blur"] == 0


def test_upscale_by_factor_really_resizes(url: str) -> None:
    source = solid((1, 2, 3), (64, 48))
    response = post(url, "/sdapi/v1/extra-single-image", image=source, upscaler_1="Lanczos",
                    upscaling_resize=2)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"html_info", "image"}
    assert decode_png(body["image"]).size == (128, 96)
    assert body["html_info"].startswith("<p>") and "Lanczos" in body["html_info"]


def test_upscale_to_size_with_crop(url: str) -> None:
    body = post(url, "/sdapi/v1/extra-single-image", image=solid((9, 9, 9), (64, 64)),
                upscaler_1="R-ESRGAN 4x+", resize_mode=1, upscaling_resize_w=200,
                upscaling_resize_h=96).json()
    assert decode_png(body["image"]).size == (200, 96)


def test_upscale_keeps_the_generation_infotext(url: str) -> None:
    generated = post(url, "/sdapi/v1/txt2img", prompt="keep me", steps=1, width=64,
                     height=64).json()["images"][0]
    upscaled = post(url, "/sdapi/v1/extra-single-image", image=generated,
                    upscaler_1="Nearest").json()["image"]
    image = decode_png(upscaled)
    assert image.size == (128, 128)
    assert image.info["parameters"].startswith("keep me")
    assert "Postprocess upscaler: Nearest" in image.info["postprocessing"]


def test_upscaler_none_leaves_the_image_alone(url: str) -> None:
    body = post(url, "/sdapi/v1/extra-single-image", image=solid((5, 5, 5), (40, 40))).json()
    assert decode_png(body["image"]).size == (40, 40)
    assert body["html_info"] == "<p></p>"


def test_unknown_upscaler_is_500(url: str) -> None:
    response = post(url, "/sdapi/v1/extra-single-image", image=solid((1, 1, 1)),
                    upscaler_1="Imaginary 8x")
    assert response.status_code == 500
    assert response.json() == {"error": "AssertionError", "detail": "", "body": "",
                                "errors": "could not find upscaler named Imaginary 8x"}
    second = post(url, "/sdapi/v1/extra-single-image", image=solid((1, 1, 1)),
                  upscaler_1="Lanczos", upscaler_2="Imaginary 2x")
    assert second.json()["errors"] == "could not find upscaler named Imaginary 2x"


def test_second_upscaler_is_blended_in(url: str) -> None:
    body = post(url, "/sdapi/v1/extra-single-image", image=solid((1, 1, 1), (32, 32)),
                upscaler_1="Lanczos", upscaler_2="Nearest",
                extras_upscaler_2_visibility=0.5).json()
    assert "Postprocess upscaler 2: Nearest" in decode_png(body["image"]).info["postprocessing"]


@pytest.mark.parametrize("factor", [0, -1])
def test_an_upscale_factor_that_is_not_positive_is_422(url: str, factor: float) -> None:
    response = post(url, "/sdapi/v1/extra-single-image", image=solid((1, 1, 1)),
                    upscaling_resize=factor)
    assert response.status_code == 422
    (item,) = response.json()["detail"]
    assert (item["loc"], item["type"]) == (["body", "upscaling_resize"],
                                           "value_error.number.not_gt")


@pytest.mark.parametrize(("factor", "size"), [(0.5, (8, 8)), (10, (160, 160))])
def test_any_positive_upscale_factor_is_accepted(url: str, factor: float,
                                                 size: tuple[int, int]) -> None:
    body = post(url, "/sdapi/v1/extra-single-image", image=solid((1, 1, 1), (16, 16)),
                upscaler_1="Lanczos", upscaling_resize=factor).json()
    assert decode_png(body["image"]).size == size


def test_extra_batch_images(url: str) -> None:
    image_list = [{"data": solid((i, i, i), (32, 32)), "name": f"{i}.png"} for i in range(3)]
    body = post(url, "/sdapi/v1/extra-batch-images", imageList=image_list,
                upscaler_1="Lanczos", upscaling_resize=3).json()
    assert set(body) == {"html_info", "images"}
    assert [decode_png(image).size for image in body["images"]] == [(96, 96)] * 3
    missing = post(url, "/sdapi/v1/extra-batch-images", imageList=[{"name": "a.png"}])
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "imageList", 0, "data"]
