"""The WebUI's HTTP client: bounded timeouts, basic auth, retries and backoff, one attempt for
control calls, progress polling during a generation, readiness and the session — through a fake
HTTP layer (fake_webui.py) — and then against the emulator over real HTTP."""

from __future__ import annotations

import base64
import io
import threading
import time

import pytest
from PIL import Image

from stablenew.emulator import EmulatorServer
from stablenew.emulator.testing import INFO_KEYS, fast_config
from stablenew.runner.webui_client import (
    BACKOFF_JITTER,
    CONTROL_READ_TIMEOUT,
    MAX_BACKOFF_SECONDS,
    WebuiClient,
    backoff_delay,
)
from stablenew.runner.webui_errors import WebuiError, WebuiErrorKind
from stablenew.runner.webui_responses import Progress
from tests.queue.processes import free_port
from tests.runner.fake_webui import (
    BASE_URL,
    FakeWebui,
    Harness,
    Reply,
    fixture,
    json_reply,
    make_client,
    refused,
)
from tests.service_harness import wait_for

# Timeouts and auth ---------------------------------------------------------------------------


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


# Retries and backoff -------------------------------------------------------------------------


def test_transient_failures_recover(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", refused(),
                    Reply(502, "<html>502 Bad Gateway</html>", raw=True),
                    json_reply("txt2img_response.json"))
    assert len(harness.client.txt2img({}).images) == 2
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 3


def test_a_deterministic_500_is_not_retried(harness: Harness) -> None:
    # "could not find upscaler named" fails the same way however often it is sent.
    harness.fake.on("POST", "/sdapi/v1/txt2img", json_reply("error_500_upscaler.json", 500),
                    json_reply("txt2img_response.json"))
    with pytest.raises(WebuiError) as caught:
        harness.client.txt2img({})
    assert caught.value.attempts == 1 and "could not find upscaler" in caught.value.message
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 1


def test_retries_follow_the_configured_count(fake: FakeWebui) -> None:
    for retries in (0, 1, 5):
        made = make_client(fake, retries=retries)
        fake.calls.clear()
        fake.on("GET", "/sdapi/v1/upscalers", Reply(503, "Service Unavailable", raw=True))
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


# Progress while generating -------------------------------------------------------------------


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


# Readiness and the session -------------------------------------------------------------------


@pytest.mark.timeout(30)  # a probe that hangs on a refused connection fails the test here
def test_is_ready_is_false_on_a_closed_port() -> None:
    # The HTTP layer is the recording fake: a closed port must be judged by the TCP probe alone,
    # with no HTTP attempt and no backoff, so nothing reaches the fake.
    fake = FakeWebui()
    harness = make_client(fake)
    harness.client.base_url = f"http://127.0.0.1:{free_port()}"
    assert harness.client.is_ready() is False
    assert fake.calls == [] and harness.sleeps == []


def test_is_ready_never_raises_on_a_bad_url() -> None:
    assert WebuiClient("http://[not a host").is_ready() is False


def test_close_leaves_a_callers_session_open(fake: FakeWebui) -> None:
    made = make_client(fake)
    made.client.close()
    assert fake.closed is False
    with WebuiClient(BASE_URL) as owned:
        assert owned.base_url == BASE_URL


# Against the emulator over real HTTP ---------------------------------------------------------


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
    assert "Euler a" in live.samplers()
    assert "karras" in [entry.name for entry in live.schedulers()]
    assert "Latent" in live.latent_upscale_modes()
    assert "Lanczos" in live.upscalers() and live.sd_vaes()
    assert "face_yolov8n.pt" in live.adetailer_models()
    titles = [m.title for m in live.sd_models()]
    assert live.loaded_model_title() in titles


def test_emulator_faults(emulator: EmulatorServer, live: WebuiClient) -> None:
    payload = {"prompt": "entry 2", "steps": 1, "width": 64, "height": 64}
    emulator.faults.update({"fail_next": 2})
    with pytest.raises(WebuiError) as caught:
        live.txt2img(payload)
    # The WebUI's 500 is deterministic: reported at once, not retried.
    assert caught.value.kind is WebuiErrorKind.HTTP_ERROR and caught.value.attempts == 1
    assert emulator.faults.snapshot()["fail_next"] == 1
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


@pytest.mark.timeout(60)  # an interrupt that is not obeyed leaves 200 s of sampling
def test_emulator_upscale_and_interrupt(emulator: EmulatorServer, live: WebuiClient) -> None:
    [png] = live.txt2img({"prompt": "x", "steps": 1, "width": 64, "height": 64}).images
    upscaled = live.extra_single_image({"image": base64.b64encode(png).decode(),
                                        "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    assert Image.open(io.BytesIO(upscaled)).size == (128, 128)
    # 200 steps of 1 s: only the interrupt ends this generation within the test's timeout.
    emulator.faults.update({"step_seconds": 1.0})
    interrupter = threading.Thread(target=interrupt_once_sampling, args=(live,))
    interrupter.start()
    result = live.txt2img({"prompt": "x", "steps": 200, "width": 64, "height": 64})
    interrupter.join()
    [interrupted] = result.images  # an interrupted generation still answers 200
    # Stopped within its first steps, the image is still almost all noise (the emulator's grey).
    histogram = Image.open(io.BytesIO(interrupted)).convert("L").histogram()
    levels = [level for level, count in enumerate(histogram) if count]
    assert min(levels) >= 118 and max(levels) <= 138, levels


def interrupt_once_sampling(client: WebuiClient) -> None:
    wait_for(lambda: not client.progress().idle, "the generation to start sampling", 20)
    client.interrupt()


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


def test_a_webui_without_the_newer_list_routes_offers_empty_lists(fake: FakeWebui) -> None:
    # Schedulers came with v1.9; forks may lack latent-upscale-modes or ADetailer.
    made = make_client(fake)
    for path in ("/sdapi/v1/schedulers", "/sdapi/v1/latent-upscale-modes",
                 "/adetailer/v1/ad_model"):
        fake.on("GET", path, json_reply("error_404.json", 404))
    assert made.client.schedulers() == []
    assert made.client.latent_upscale_modes() == []
    assert made.client.adetailer_models() == []
    fake.on("GET", "/sdapi/v1/schedulers", json_reply("error_500.json", 500))
    with pytest.raises(WebuiError):
        made.client.schedulers()
