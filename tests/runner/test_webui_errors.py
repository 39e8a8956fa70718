"""How WebUI failures are classified: every reference error body (fixtures/) as its kind with
the WebUI's own text, out-of-memory by class or text and never retried, refused connections and
timeouts as UNAVAILABLE, which failures are retried; through the fake HTTP layer, then against the
emulator over real HTTP."""

from __future__ import annotations

import pytest
import requests

from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import (
    MAX_RAW_TEXT,
    WebuiError,
    WebuiErrorKind,
    bad_response,
    error_from_response,
    is_transient,
    unreachable,
)
from tests.runner.fake_webui import (
    FakeWebui,
    Harness,
    Reply,
    json_reply,
    make_client,
    refused,
)

# Error bodies and retries --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "kind", "text", "attempts"),
    [
        # The WebUI's own 500s are deterministic: the same request fails the same way.
        ("error_500.json", 500, WebuiErrorKind.HTTP_ERROR,
         "model 'no-such-model.safetensors' not found", 1),
        ("error_500_upscaler.json", 500, WebuiErrorKind.HTTP_ERROR,
         "could not find upscaler named Bogus 4x", 1),
        ("error_oom.json", 500, WebuiErrorKind.OUT_OF_MEMORY, "CUDA out of memory", 1),
        ("error_422.json", 422, WebuiErrorKind.VALIDATION,
         "body.steps: value is not a valid integer; body.width: value is not a valid integer", 1),
        ("error_422_script.json", 422, WebuiErrorKind.VALIDATION,
         "Script 'bogus script' not found", 1),
        ("error_404.json", 404, WebuiErrorKind.NOT_FOUND, "Not Found", 1),
        ("error_404_init_image.json", 404, WebuiErrorKind.NOT_FOUND, "Init image not found", 1),
        ("error_401.json", 401, WebuiErrorKind.UNAUTHORIZED, "Not authenticated", 1),
        ("error_401_wrong.json", 401, WebuiErrorKind.UNAUTHORIZED,
         "Incorrect username or password", 1),
    ],
)
def test_error_bodies(harness: Harness, name: str, status: int, kind: WebuiErrorKind,
                      text: str, attempts: int) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", json_reply(name, status))
    with pytest.raises(WebuiError) as caught:
        harness.client.txt2img({"prompt": "x"})
    error = caught.value
    assert (error.kind, error.status, error.endpoint) == (kind, status, "POST /sdapi/v1/txt2img")
    assert text in error.message
    assert text in str(error) and "\n" not in str(error)
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == attempts
    assert len(harness.sleeps) == attempts - 1


def test_out_of_memory_is_recognised_by_its_text_too(harness: Harness) -> None:
    body = {"error": "RuntimeError", "detail": "", "body": "",
            "errors": "CUDA out of memory. Tried to allocate 20.00 MiB"}
    harness.fake.on("POST", "/sdapi/v1/img2img", Reply(500, body))
    with pytest.raises(WebuiError) as caught:
        harness.client.img2img({"init_images": ["x"]})
    assert caught.value.kind is WebuiErrorKind.OUT_OF_MEMORY
    assert harness.fake.count("POST", "/sdapi/v1/img2img") == 1


def test_out_of_memory_after_a_retried_503_is_not_retried_further(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", Reply(503, "restarting", raw=True),
                    json_reply("error_oom.json", 500), json_reply("txt2img_response.json"))
    with pytest.raises(WebuiError) as caught:
        harness.client.txt2img({})
    assert caught.value.kind is WebuiErrorKind.OUT_OF_MEMORY and caught.value.attempts == 2
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 2


def test_connection_refused_is_retried_then_unavailable(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", refused())
    with pytest.raises(WebuiError) as caught:
        harness.client.txt2img({})
    error = caught.value
    assert error.kind is WebuiErrorKind.UNAVAILABLE and error.status is None
    assert "Connection refused" in error.message and error.attempts == 4
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 4


def test_timeouts_are_retried_then_unavailable(fake: FakeWebui) -> None:
    made = make_client(fake, retries=2)
    fake.on("GET", "/sdapi/v1/sd-models", Reply(error=requests.ReadTimeout("read timed out")))
    with pytest.raises(WebuiError) as caught:
        made.client.sd_models()
    assert caught.value.kind is WebuiErrorKind.UNAVAILABLE
    assert "timed out" in caught.value.message
    assert fake.count("GET", "/sdapi/v1/sd-models") == 3


def test_a_5xx_without_json_is_retried_with_its_text(harness: Harness) -> None:
    harness.fake.on("GET", "/sdapi/v1/samplers",
                    Reply(502, "<html><body>502 Bad Gateway</body></html>", raw=True))
    with pytest.raises(WebuiError) as caught:
        harness.client.samplers()
    assert caught.value.kind is WebuiErrorKind.HTTP_ERROR and caught.value.status == 502
    assert "502 Bad Gateway" in caught.value.message
    assert harness.fake.count("GET", "/sdapi/v1/samplers") == 4


def test_other_4xx_are_not_retried(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", Reply(405, {"detail": "Method Not Allowed"}))
    with pytest.raises(WebuiError) as caught:
        harness.client.txt2img({})
    assert caught.value.kind is WebuiErrorKind.HTTP_ERROR
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 1


# Classification without HTTP -----------------------------------------------------------------


ENDPOINT = "POST /sdapi/v1/txt2img"


@pytest.mark.parametrize(
    ("status", "text", "kind", "message"),
    [
        (502, "", WebuiErrorKind.HTTP_ERROR, "HTTP 502 with an empty body"),
        (500, '{"error": "ValueError"}', WebuiErrorKind.HTTP_ERROR, "ValueError"),
        (500, '{"error": "OutOfMemoryError", "errors": "boom"}', WebuiErrorKind.OUT_OF_MEMORY,
         "boom"),
        # A 4xx is the request's fault, whatever its text says.
        (400, '{"detail": "CUDA out of memory"}', WebuiErrorKind.HTTP_ERROR,
         "CUDA out of memory"),
        (422, '{"detail": [{"loc": ["body", "cfg_scale"], "type": "float_parsing"}, "odd"]}',
         WebuiErrorKind.VALIDATION, "body.cfg_scale: float_parsing; odd"),
        (422, '{"detail": [{"msg": "field required"}]}', WebuiErrorKind.VALIDATION,
         "field required"),
        (503, '["not", "an", "object"]', WebuiErrorKind.HTTP_ERROR, '["not", "an", "object"]'),
        (401, '{"detail": "  Not authenticated  "}', WebuiErrorKind.UNAUTHORIZED,
         "Not authenticated"),
    ],
)
def test_error_from_response_reads_every_body_shape(status: int, text: str,
                                                    kind: WebuiErrorKind, message: str) -> None:
    error = error_from_response(status, text, ENDPOINT)
    assert (error.kind, error.status, error.endpoint) == (kind, status, ENDPOINT)
    assert error.message == message


def test_a_long_raw_body_is_cut_to_one_line() -> None:
    page = "<html>\n" + "x" * (MAX_RAW_TEXT * 2) + "\n</html>"
    error = error_from_response(500, page, ENDPOINT)
    assert len(error.message) == MAX_RAW_TEXT and "\n" not in error.message


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (WebuiError(WebuiErrorKind.UNAVAILABLE, "refused", ENDPOINT), True),
        (WebuiError(WebuiErrorKind.HTTP_ERROR, "bad gateway", ENDPOINT, 502), True),
        (WebuiError(WebuiErrorKind.HTTP_ERROR, "restarting", ENDPOINT, 503), True),
        (WebuiError(WebuiErrorKind.HTTP_ERROR, "gateway", ENDPOINT, 504), True),
        (WebuiError(WebuiErrorKind.HTTP_ERROR, "could not find upscaler named ", ENDPOINT,
                    500), False),
        (WebuiError(WebuiErrorKind.HTTP_ERROR, "KeyError: 'no_such_option'", ENDPOINT, 500),
         False),
        (WebuiError(WebuiErrorKind.HTTP_ERROR, "not allowed", ENDPOINT, 405), False),
        (WebuiError(WebuiErrorKind.OUT_OF_MEMORY, "CUDA out of memory", ENDPOINT, 500), False),
        (WebuiError(WebuiErrorKind.VALIDATION, "steps", ENDPOINT, 422), False),
        (WebuiError(WebuiErrorKind.NOT_FOUND, "no route", ENDPOINT, 404), False),
        (WebuiError(WebuiErrorKind.UNAUTHORIZED, "no", ENDPOINT, 401), False),
        (bad_response(ENDPOINT, "no images"), False),
    ],
)
def test_only_no_answer_and_gateway_statuses_are_transient(error: WebuiError,
                                                          retryable: bool) -> None:
    assert is_transient(error) is retryable


def test_unreachable_names_the_innermost_reason_or_the_timeout() -> None:
    nested = requests.ConnectionError(ConnectionError(OSError("[Errno 111] Connection refused")))
    refused_error = unreachable(nested, ENDPOINT)
    assert refused_error.kind is WebuiErrorKind.UNAVAILABLE and refused_error.status is None
    assert refused_error.message == "cannot connect: [Errno 111] Connection refused"
    timed_out = unreachable(requests.ConnectTimeout("slow"), ENDPOINT)
    assert timed_out.message == "timed out (ConnectTimeout)"


def test_the_text_of_an_error_is_one_line_with_status_and_attempts() -> None:
    error = WebuiError(WebuiErrorKind.HTTP_ERROR, "line one\n  line two", ENDPOINT, 500,
                       attempts=4)
    assert str(error) == ("WebUI POST /sdapi/v1/txt2img: server error (HTTP 500): line one "
                          "line two [after 4 attempts]")
    assert str(bad_response(ENDPOINT, "no images")) == (
        "WebUI POST /sdapi/v1/txt2img: bad response (HTTP 200): no images")


# Against the emulator over real HTTP ---------------------------------------------------------


def test_emulator_error_kinds(live: WebuiClient) -> None:
    with pytest.raises(WebuiError) as caught:
        live.img2img({"prompt": "no init image"})
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND
    assert "Init image not found" in caught.value.message
    with pytest.raises(WebuiError) as caught:
        live.txt2img({"steps": "many"})
    assert caught.value.kind is WebuiErrorKind.VALIDATION and "steps" in caught.value.message
