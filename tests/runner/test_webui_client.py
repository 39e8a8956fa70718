"""The WebUI client: parsing of reference-shaped responses (fixtures/), every error kind, retries
and backoff, progress polling, model/VAE switching — through a fake HTTP layer (a requests
adapter) — and then against the emulator over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from PIL import Image
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from stablenew.emulator import EmulatorServer
from stablenew.emulator.testing import INFO_KEYS, fast_config
from stablenew.runner.webui_client import (
    BACKOFF_JITTER,
    CONTROL_READ_TIMEOUT,
    MAX_BACKOFF_SECONDS,
    GenerationResult,
    ModelEntry,
    Progress,
    WebuiClient,
    WebuiError,
    WebuiErrorKind,
    backoff_delay,
    find_model,
)
from tests.queue.processes import free_port

FIXTURES = Path(__file__).parent / "fixtures"
BASE_URL = "http://webui.test:7860"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


# The fake HTTP layer ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless it is already str/bytes
    raw: bool = False  # send `body` as is (for non-JSON answers)
    delay: float = 0.0
    error: Exception | None = None  # raised instead of answering (connection refused, ...)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    timeout: Any
    headers: dict[str, str]
    thread: int


Handler = Callable[[Call], Reply]


@dataclass
class FakeWebui(BaseAdapter):
    """A requests transport answering from routes; records every call."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def on(self, method: str, path: str, *replies: Reply | Handler) -> None:
        """Answer with the replies in turn (the last one repeats), or with a handler."""
        queue = list(replies)

        def answer(call: Call) -> Reply:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
            return item(call) if callable(item) else item

        self.routes[(method, path)] = answer

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for c in self.calls if (c.method, c.path) == (method, path))

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        url = urlsplit(request.url or "")
        body = json.loads(request.body) if request.body else None
        call = Call(request.method or "", url.path, dict(parse_qsl(url.query)), body, timeout,
                    dict(request.headers), threading.get_ident())
        with self._lock:
            self.calls.append(call)
        handler = self.routes.get((call.method, call.path))
        reply = handler(call) if handler else Reply(404, {"detail": "Not Found"})
        time.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        return _response(request, reply)

    def close(self) -> None:
        self.closed = True


def _response(request: requests.PreparedRequest, reply: Reply) -> requests.Response:
    response = requests.Response()
    response.status_code = reply.status
    if reply.raw:
        data = reply.body.encode() if isinstance(reply.body, str) else bytes(reply.body or b"")
    else:
        data = json.dumps(reply.body).encode()
    response._content = data
    response.headers = CaseInsensitiveDict({"content-type": "application/json"})
    response.encoding = "utf-8"
    response.url = request.url or ""
    response.request = request
    return response


def json_reply(name: str, status: int = 200) -> Reply:
    return Reply(status, fixture(name))


def refused() -> Reply:
    return Reply(error=requests.ConnectionError("[Errno 111] Connection refused"))


@pytest.fixture
def fake() -> FakeWebui:
    webui = FakeWebui()
    for name in ("sd-models", "samplers", "schedulers", "upscalers", "options"):
        webui.on("GET", f"/sdapi/v1/{name}", json_reply(f"{name.replace('-', '_')}.json"))
    webui.on("GET", "/sdapi/v1/sd-vae", json_reply("sd_vae.json"))
    webui.on("GET", "/sdapi/v1/progress", json_reply("progress_idle.json"))
    webui.on("GET", "/adetailer/v1/ad_model", json_reply("adetailer_ad_model.json"))
    for action in ("interrupt", "skip", "refresh-checkpoints", "refresh-vae"):
        webui.on("POST", f"/sdapi/v1/{action}", Reply(200, {} if action == "interrupt" else None))
    return webui


@dataclass
class Harness:
    client: WebuiClient
    fake: FakeWebui
    sleeps: list[float]


def make_client(fake: FakeWebui, **options: Any) -> Harness:
    session = requests.Session()
    session.mount("http://", fake)
    client = WebuiClient(BASE_URL, session=session, **options)
    sleeps: list[float] = []
    client._sleep = sleeps.append  # backoff is observed, not waited for
    return Harness(client, fake, sleeps)


@pytest.fixture
def harness(fake: FakeWebui) -> Iterator[Harness]:
    made = make_client(fake)
    yield made
    made.client.close()


# Parsing the reference shapes ---------------------------------------------------------------


def test_txt2img_parses_the_reference_response(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", json_reply("txt2img_response.json"))
    payload = {"prompt": "a lighthouse at dusk, oil painting", "seed": 1234, "batch_size": 2}
    result = harness.client.txt2img(payload)
    assert isinstance(result, GenerationResult)
    assert len(result.images) == 2
    for png, seed in zip(result.images, (1234, 1235), strict=True):
        assert png.startswith(PNG_SIGNATURE)
        image = Image.open(io.BytesIO(png))
        assert image.size == (8, 8)
        assert f"Seed: {seed}" in image.info["parameters"]
    assert set(result.info) >= INFO_KEYS
    assert result.info["all_seeds"] == [1234, 1235]
    assert result.info["extra_generation_params"]["ADetailer model"] == "face_yolov8n.pt"
    assert result.parameters["batch_size"] == 2
    [call] = harness.fake.calls
    assert call.body == payload
    assert call.timeout == (3.0, 600.0)


def test_img2img_and_extras_parse(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/img2img", json_reply("img2img_response.json"))
    harness.fake.on("POST", "/sdapi/v1/extra-single-image",
                    json_reply("extra_single_image_response.json"))
    result = harness.client.img2img({"init_images": ["..."], "denoising_strength": 0.35})
    assert len(result.images) == 1 and result.info["denoising_strength"] == 0.35
    assert set(result.info) >= INFO_KEYS
    upscaled = harness.client.extra_single_image({"image": "...", "upscaling_resize": 2})
    assert Image.open(io.BytesIO(upscaled)).size == (16, 16)


def test_images_may_carry_a_data_url_prefix(harness: Harness) -> None:
    body = fixture("txt2img_response.json")
    body["images"] = ["data:image/png;base64," + body["images"][0]]
    harness.fake.on("POST", "/sdapi/v1/txt2img", Reply(200, body))
    [png] = harness.client.txt2img({}).images
    assert png.startswith(PNG_SIGNATURE)


def test_progress_busy_and_idle(harness: Harness) -> None:
    harness.fake.on("GET", "/sdapi/v1/progress", json_reply("progress_busy.json"),
                    json_reply("progress_idle.json"))
    busy = harness.client.progress()
    assert busy == Progress(progress=0.4625, eta_relative=3.871, job_count=1, job_no=0,
                            sampling_step=9, sampling_steps=20, interrupted=False,
                            skipped=False, textinfo="")
    assert not busy.idle
    idle = harness.client.progress()
    assert idle.idle and idle.progress == 0.0
    call = harness.fake.calls[0]
    assert call.query == {"skip_current_image": "true"}
    assert call.timeout == (3.0, CONTROL_READ_TIMEOUT)


def test_options_models_and_lists(harness: Harness) -> None:
    client = harness.client
    assert client.options()["CLIP_stop_at_last_layers"] == 1
    assert client.loaded_model_title() == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    models = client.sd_models()
    assert models[0] == ModelEntry(
        "v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly", "6ce0161689",
        "/opt/stable-diffusion-webui/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
        "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa")
    assert models[2].hash == "" and models[2].title == "dreamshaper_8.safetensors"
    assert models[1].name == "SDXL/sd_xl_base_1.0.safetensors"
    assert client.samplers()[:3] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"]
    assert "Euler a" in client.samplers()
    assert client.schedulers()[:3] == ["automatic", "uniform", "karras"]
    assert "SGM Uniform" in client.scheduler_labels()
    assert client.upscalers()[:3] == ["None", "Lanczos", "Nearest"]
    assert "R-ESRGAN 4x+" in client.upscalers()
    assert client.sd_vaes() == ["vae-ft-mse-840000-ema-pruned.safetensors",
                                "sdxl_vae.safetensors"]
    assert "face_yolov8n.pt" in client.adetailer_models()


def test_adetailer_not_installed_is_an_empty_list(harness: Harness) -> None:
    del harness.fake.routes[("GET", "/adetailer/v1/ad_model")]  # the fake answers 404
    assert harness.client.adetailer_models() == []
    assert harness.fake.count("GET", "/adetailer/v1/ad_model") == 1


def test_every_call_has_bounded_timeouts(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", json_reply("txt2img_response.json"))
    harness.fake.on("POST", "/sdapi/v1/options", Reply(200, None))
    client = harness.client
    client.txt2img({})
    client.progress()
    client.interrupt()
    client.skip()
    client.options()
    client.set_options({"CLIP_stop_at_last_layers": 2})
    client.sd_models()
    client.samplers()
    client.adetailer_models()
    for call in harness.fake.calls:
        connect, read = call.timeout
        assert 0 < connect <= 3.0 and 0 < read <= 600.0, call
        control = call.path.endswith(("/progress", "/interrupt", "/skip"))
        if control or (call.method, call.path) == ("GET", "/sdapi/v1/options"):
            assert read <= CONTROL_READ_TIMEOUT, call


def test_basic_auth_is_sent(fake: FakeWebui) -> None:
    made = make_client(fake, auth=("user", "secret"))
    made.client.options()
    expected = "Basic " + base64.b64encode(b"user:secret").decode()
    assert fake.calls[0].headers["Authorization"] == expected


# Errors and retries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "kind", "text", "attempts"),
    [
        ("error_500.json", 500, WebuiErrorKind.HTTP_ERROR,
         "model 'no-such-model.safetensors' not found", 4),
        ("error_500_upscaler.json", 500, WebuiErrorKind.HTTP_ERROR,
         "could not find upscaler named Bogus 4x", 4),
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


def test_out_of_memory_after_a_retried_500_is_not_retried_further(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", json_reply("error_500.json", 500),
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


def test_transient_failures_recover(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", refused(), json_reply("error_500.json", 500),
                    json_reply("txt2img_response.json"))
    assert len(harness.client.txt2img({}).images) == 2
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 3


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


def test_retries_follow_the_configured_count(fake: FakeWebui) -> None:
    for retries in (0, 1, 5):
        made = make_client(fake, retries=retries)
        fake.calls.clear()
        fake.on("GET", "/sdapi/v1/upscalers", json_reply("error_500.json", 500))
        with pytest.raises(WebuiError):
            made.client.upscalers()
        assert fake.count("GET", "/sdapi/v1/upscalers") == retries + 1


def test_backoff_is_exponential_with_little_jitter(fake: FakeWebui) -> None:
    made = make_client(fake, retries=3, backoff_seconds=0.5)
    fake.on("POST", "/sdapi/v1/txt2img", refused())
    with pytest.raises(WebuiError):
        made.client.txt2img({})
    assert len(made.sleeps) == 3
    for attempt, slept in enumerate(made.sleeps):
        base = 0.5 * 2 ** attempt
        assert base <= slept <= base * (1 + BACKOFF_JITTER)


def test_backoff_is_bounded() -> None:
    assert backoff_delay(0, 0.5) <= 0.5 * (1 + BACKOFF_JITTER)
    assert backoff_delay(30, 0.5) == MAX_BACKOFF_SECONDS
    assert backoff_delay(3, 0.0) == 0.0


def test_control_calls_make_one_attempt(harness: Harness) -> None:
    for path in ("/sdapi/v1/interrupt", "/sdapi/v1/skip"):
        harness.fake.on("POST", path, refused())
    harness.fake.on("GET", "/sdapi/v1/progress", refused())
    for call in (harness.client.interrupt, harness.client.skip, harness.client.progress):
        with pytest.raises(WebuiError) as caught:
            call()
        assert caught.value.kind is WebuiErrorKind.UNAVAILABLE
    assert len(harness.fake.calls) == 3 and harness.sleeps == []


@pytest.mark.parametrize(
    "body",
    [
        "this is not json",
        {"parameters": {}, "info": "{}"},
        {"images": "abc", "parameters": {}, "info": "{}"},
        {"images": [], "parameters": {}, "info": {"seed": 1}},
        {"images": [], "parameters": {}, "info": "{not json"},
        {"images": [], "parameters": {}, "info": "[1, 2]"},
        {"images": ["!!! not base64 !!!"], "parameters": {}, "info": "{}"},
        {"images": [""], "parameters": {}, "info": "{}"},
        {"images": [None], "parameters": {}, "info": "{}"},
    ],
)
def test_bad_generation_responses(harness: Harness, body: Any) -> None:
    raw = isinstance(body, str)
    harness.fake.on("POST", "/sdapi/v1/txt2img", Reply(200, body, raw=raw))
    with pytest.raises(WebuiError) as caught:
        harness.client.txt2img({})
    assert caught.value.kind is WebuiErrorKind.BAD_RESPONSE
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 1


@pytest.mark.parametrize(
    ("method", "path", "call", "body"),
    [
        ("POST", "/sdapi/v1/extra-single-image", "extra", {"html_info": ""}),
        ("GET", "/sdapi/v1/progress", "progress", {"progress": 0.5}),
        ("GET", "/sdapi/v1/options", "options", ["not", "a", "dict"]),
        ("GET", "/sdapi/v1/samplers", "samplers", [{"label": "no name"}]),
        ("GET", "/sdapi/v1/sd-models", "models", [{"model_name": "no title"}]),
        ("GET", "/adetailer/v1/ad_model", "adetailer", {"models": []}),
    ],
)
def test_bad_shapes_elsewhere(harness: Harness, method: str, path: str, call: str,
                              body: Any) -> None:
    harness.fake.on(method, path, Reply(200, body))
    client = harness.client
    calls: dict[str, Callable[[], object]] = {
        "extra": lambda: client.extra_single_image({}), "progress": client.progress,
        "options": client.options, "samplers": client.samplers, "models": client.sd_models,
        "adetailer": client.adetailer_models}
    with pytest.raises(WebuiError) as caught:
        calls[call]()
    assert caught.value.kind is WebuiErrorKind.BAD_RESPONSE


# Progress while generating ------------------------------------------------------------------


def slow_generation(seconds: float) -> Reply:
    return Reply(200, fixture("txt2img_response.json"), delay=seconds)


def test_progress_is_polled_at_most_twice_a_second(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", slow_generation(1.2))
    harness.fake.on("GET", "/sdapi/v1/progress", json_reply("progress_busy.json"))
    seen: list[tuple[Progress, int]] = []
    result = harness.client.txt2img({}, on_progress=lambda p: seen.append(
        (p, threading.get_ident())))
    assert len(result.images) == 2
    polls = harness.fake.count("GET", "/sdapi/v1/progress")
    assert 1 <= polls <= 4
    assert len(seen) == polls
    assert all(p.sampling_step == 9 for p, _ in seen)
    # The callback runs on the caller's thread; the POST ran on another one.
    assert {thread for _, thread in seen} == {threading.get_ident()}
    post = next(c for c in harness.fake.calls if c.method == "POST")
    assert post.thread != threading.get_ident()
    # Polling stopped with the POST.
    time.sleep(0.7)
    assert harness.fake.count("GET", "/sdapi/v1/progress") == polls


def test_a_failing_progress_endpoint_does_not_fail_the_generation(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", slow_generation(1.2))
    harness.fake.on("GET", "/sdapi/v1/progress", json_reply("error_500.json", 500), refused(),
                    Reply(200, "garbage", raw=True))
    seen: list[Progress] = []
    result = harness.client.txt2img({}, on_progress=seen.append)
    assert len(result.images) == 2 and seen == []
    assert 1 <= harness.fake.count("GET", "/sdapi/v1/progress") <= 4
    assert harness.sleeps == []  # polls are not retried


def test_a_failing_callback_does_not_fail_the_generation(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", slow_generation(0.7))
    harness.fake.on("GET", "/sdapi/v1/progress", json_reply("progress_busy.json"))

    def explode(_progress: Progress) -> None:
        raise RuntimeError("callback bug")

    assert len(harness.client.txt2img({}, on_progress=explode).images) == 2


def test_generation_errors_surface_with_progress_polling(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/img2img",
                    Reply(500, fixture("error_oom.json"), delay=0.6))
    with pytest.raises(WebuiError) as caught:
        harness.client.img2img({"init_images": ["x"]}, on_progress=lambda _p: None)
    assert caught.value.kind is WebuiErrorKind.OUT_OF_MEMORY


def test_a_fast_generation_is_not_delayed_by_polling(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", json_reply("txt2img_response.json"))
    harness.client.txt2img({}, on_progress=lambda _p: None)
    # Returned when the POST did: a wait for the first tick would have polled once.
    assert harness.fake.count("GET", "/sdapi/v1/progress") == 0


# Models and VAEs ----------------------------------------------------------------------------


class OptionsState:
    """POST /options changes what GET /options returns, as on the WebUI."""

    def __init__(self, fake: FakeWebui) -> None:
        self.options: dict[str, Any] = fixture("options.json")
        self.posts: list[dict[str, Any]] = []
        fake.on("GET", "/sdapi/v1/options", lambda _c: Reply(200, dict(self.options)))
        fake.on("POST", "/sdapi/v1/options", self._post)

    def _post(self, call: Call) -> Reply:
        self.posts.append(call.body)
        self.options.update(call.body)
        return Reply(200, None)


@pytest.mark.parametrize("name", [
    "v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly.safetensors",
    "v1-5-pruned-emaonly", "6ce0161689"])
def test_ensure_model_keeps_the_loaded_model(harness: Harness, name: str) -> None:
    state = OptionsState(harness.fake)
    assert harness.client.ensure_model(name) is False
    assert state.posts == []


@pytest.mark.parametrize(("name", "title"), [
    ("sd_xl_base_1.0", "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"),
    ("SDXL/sd_xl_base_1.0.safetensors", "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"),
    ("SDXL_sd_xl_base_1.0", "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"),
    ("dreamshaper_8", "dreamshaper_8.safetensors"),
    ("sd-v1-5-inpainting.ckpt [c6bbc15e32]", "sd-v1-5-inpainting.ckpt [c6bbc15e32]"),
])
def test_ensure_model_switches_once(harness: Harness, name: str, title: str) -> None:
    state = OptionsState(harness.fake)
    assert harness.client.ensure_model(name) is True
    assert harness.client.ensure_model(name) is False
    assert state.posts == [{"sd_model_checkpoint": title}]
    post = next(c for c in harness.fake.calls if c.method == "POST")
    assert post.timeout == (3.0, 600.0)  # a model load may take a minute


def test_ensure_model_unknown_is_not_found_without_posting(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    with pytest.raises(WebuiError) as caught:
        harness.client.ensure_model("no-such-model")
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND
    assert "no-such-model" in str(caught.value)
    assert state.posts == []
    assert harness.fake.count("POST", "/sdapi/v1/refresh-checkpoints") == 1
    assert harness.fake.count("GET", "/sdapi/v1/sd-models") == 2


def test_ensure_model_finds_a_new_checkpoint_after_a_refresh(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    listed = fixture("sd_models.json")
    added = [*listed, {"title": "new_model.safetensors [0123456789]",
                       "model_name": "new_model", "hash": "0123456789", "sha256": None,
                       "filename": "new_model.safetensors", "config": None}]
    harness.fake.on("GET", "/sdapi/v1/sd-models", Reply(200, listed), Reply(200, added))
    assert harness.client.ensure_model("new_model") is True
    assert state.posts == [{"sd_model_checkpoint": "new_model.safetensors [0123456789]"}]


def test_an_exact_title_wins_over_another_folders_file_name() -> None:
    entries = [ModelEntry("a/x.safetensors [1111111111]", "a_x", "1111111111"),
               ModelEntry("x.safetensors [2222222222]", "x", "2222222222")]
    assert find_model(entries, "x.safetensors [2222222222]") is entries[1]
    assert find_model(entries, "x") is entries[1]  # model_name outranks a file-name stem
    assert find_model(entries, "a/x.safetensors") is entries[0]
    assert find_model(entries, "x.safetensors [9999999999]") is entries[1]  # re-hashed
    assert find_model(entries, "") is None


def test_ensure_vae(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    client = harness.client
    assert client.ensure_vae("") is False and client.ensure_vae("Automatic") is False
    assert client.ensure_vae("vae-ft-mse-840000-ema-pruned") is True
    assert client.ensure_vae("vae-ft-mse-840000-ema-pruned.safetensors") is False
    assert client.ensure_vae("None") is True
    assert client.ensure_vae("") is True
    assert state.posts == [{"sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"},
                           {"sd_vae": "None"}, {"sd_vae": "Automatic"}]



def test_ensure_vae_lists_the_vaes_once(harness: Harness) -> None:
    OptionsState(harness.fake)
    assert harness.client.ensure_vae("vae-ft-mse-840000-ema-pruned") is True
    assert harness.fake.count("GET", "/sdapi/v1/sd-vae") == 1
    harness.fake.calls.clear()
    harness.fake.on("GET", "/sdapi/v1/sd-vae", Reply(200, []), json_reply("sd_vae.json"))
    assert harness.client.ensure_vae("vae-ft-mse-840000-ema-pruned") is False
    # Not listed at first: once before and once after the refresh, no more.
    assert harness.fake.count("POST", "/sdapi/v1/refresh-vae") == 1
    assert harness.fake.count("GET", "/sdapi/v1/sd-vae") == 2

def test_ensure_vae_unknown_is_not_found_without_posting(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    with pytest.raises(WebuiError) as caught:
        harness.client.ensure_vae("no-such-vae")
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND and state.posts == []
    assert harness.fake.count("POST", "/sdapi/v1/refresh-vae") == 1


def test_loaded_model_title_needs_a_string(harness: Harness) -> None:
    harness.fake.on("GET", "/sdapi/v1/options", Reply(200, {"sd_vae": "Automatic"}))
    with pytest.raises(WebuiError) as caught:
        harness.client.loaded_model_title()
    assert caught.value.kind is WebuiErrorKind.BAD_RESPONSE


# Readiness and the session ------------------------------------------------------------------


def test_is_ready_is_false_on_a_closed_port() -> None:
    client = WebuiClient(f"http://127.0.0.1:{free_port()}", retries=0)
    started = time.monotonic()
    assert client.is_ready() is False
    assert time.monotonic() - started < 5
    client.close()


def test_is_ready_never_raises_on_a_bad_url() -> None:
    assert WebuiClient("http://[not a host").is_ready() is False


def test_close_leaves_a_callers_session_open(fake: FakeWebui) -> None:
    made = make_client(fake)
    made.client.close()
    assert fake.closed is False
    with WebuiClient(BASE_URL) as owned:
        assert owned.base_url == BASE_URL


# Against the emulator over real HTTP --------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(fast_config())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live(emulator: EmulatorServer) -> Iterator[WebuiClient]:
    client = WebuiClient(emulator.url, connect_timeout=2.0, read_timeout=30.0,
                         backoff_seconds=0.05)
    yield client
    client.close()


def test_emulator_txt2img_with_progress(emulator: EmulatorServer, live: WebuiClient) -> None:
    emulator.faults.update({"step_seconds": 0.03})  # 20 steps x 2 images: ~1.2 s
    seen: list[Progress] = []
    result = live.txt2img({"prompt": "a red fox", "seed": 7, "steps": 20, "width": 64,
                           "height": 64, "batch_size": 2}, on_progress=seen.append)
    assert len(result.images) == 2
    assert all(Image.open(io.BytesIO(png)).size == (64, 64) for png in result.images)
    assert set(result.info) >= INFO_KEYS and result.info["all_seeds"] == [7, 8]
    assert result.parameters["prompt"] == "a red fox"
    assert 1 <= len(seen) <= 4
    assert any(not p.idle and p.sampling_steps == 20 for p in seen)
    assert live.progress().idle


def test_emulator_lists_and_readiness(live: WebuiClient) -> None:
    assert live.is_ready()
    assert "Euler a" in live.samplers() and "karras" in live.schedulers()
    assert "Lanczos" in live.upscalers() and live.sd_vaes()
    assert "face_yolov8n.pt" in live.adetailer_models()
    titles = [m.title for m in live.sd_models()]
    assert live.loaded_model_title() in titles


def test_emulator_model_and_vae_switching(emulator: EmulatorServer, live: WebuiClient) -> None:
    loaded = live.loaded_model_title()
    assert live.ensure_model(loaded.split(" [")[0]) is False
    assert live.ensure_model("dreamshaper_8") is True
    assert live.loaded_model_title().startswith("dreamshaper_8.safetensors [")
    assert live.ensure_model("dreamshaper_8.safetensors") is False
    with pytest.raises(WebuiError) as caught:
        live.ensure_model("no-such-model")
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND
    vae = live.sd_vaes()[0]
    assert live.ensure_vae(vae) is True and live.ensure_vae(vae) is False
    assert live.options()["sd_vae"] == vae
    assert live.ensure_vae("Automatic") is True


def test_emulator_faults(emulator: EmulatorServer, live: WebuiClient) -> None:
    payload = {"prompt": "entry 2", "steps": 1, "width": 64, "height": 64}
    emulator.faults.update({"fail_next": 2})
    assert len(live.txt2img(payload).images) == 1  # two 500s, then success
    emulator.faults.update({"fail_next": 5})
    with pytest.raises(WebuiError) as caught:
        live.txt2img(payload)
    assert caught.value.kind is WebuiErrorKind.HTTP_ERROR and caught.value.attempts == 4
    assert caught.value.message  # the emulator's error text
    emulator.faults.update({"clear": True, "oom_next": 1})
    with pytest.raises(WebuiError) as caught:
        live.txt2img(payload)
    assert caught.value.kind is WebuiErrorKind.OUT_OF_MEMORY
    assert "CUDA out of memory" in caught.value.message
    assert emulator.faults.snapshot()["injected"]["oom"] == 1  # asked once, not retried
    assert len(live.txt2img(payload).images) == 1


def test_emulator_refused_connections_are_retried(emulator: EmulatorServer) -> None:
    client = WebuiClient(emulator.url, connect_timeout=1.0, read_timeout=30.0, retries=4,
                         backoff_seconds=0.2)
    emulator.faults.update({"refuse_seconds": 0.5})
    result = client.txt2img({"prompt": "x", "steps": 1, "width": 64, "height": 64})
    assert len(result.images) == 1
    client.close()


def test_emulator_error_kinds(live: WebuiClient) -> None:
    with pytest.raises(WebuiError) as caught:
        live.img2img({"prompt": "no init image"})
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND
    assert "Init image not found" in caught.value.message
    with pytest.raises(WebuiError) as caught:
        live.txt2img({"steps": "many"})
    assert caught.value.kind is WebuiErrorKind.VALIDATION and "steps" in caught.value.message


def test_emulator_upscale_and_interrupt(emulator: EmulatorServer, live: WebuiClient) -> None:
    [png] = live.txt2img({"prompt": "x", "steps": 1, "width": 64, "height": 64}).images
    upscaled = live.extra_single_image({"image": base64.b64encode(png).decode(),
                                        "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    assert Image.open(io.BytesIO(upscaled)).size == (128, 128)
    emulator.faults.update({"step_seconds": 0.05})
    interrupter = threading.Timer(0.3, live.interrupt)
    interrupter.start()
    started = time.monotonic()
    result = live.txt2img({"prompt": "x", "steps": 200, "width": 64, "height": 64})
    interrupter.join()
    assert len(result.images) == 1  # an interrupted generation still answers 200
    assert time.monotonic() - started < 5


def test_emulator_basic_auth() -> None:
    server = EmulatorServer(fast_config(api_auth=(("user", "secret"),)))
    server.start()
    try:
        anonymous = WebuiClient(server.url, retries=0)
        with pytest.raises(WebuiError) as caught:
            anonymous.options()
        assert caught.value.kind is WebuiErrorKind.UNAUTHORIZED
        assert anonymous.is_ready() is False
        wrong = WebuiClient(server.url, auth=("user", "nope"), retries=0)
        with pytest.raises(WebuiError) as caught:
            wrong.samplers()
        assert "Incorrect username or password" in caught.value.message
        right = WebuiClient(server.url, auth=("user", "secret"))
        assert right.is_ready() and right.samplers()
        for client in (anonymous, wrong, right):
            client.close()
    finally:
        server.stop()
