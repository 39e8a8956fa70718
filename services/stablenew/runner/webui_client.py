"""The runner's HTTP client for a Stable Diffusion WebUI (AUTOMATIC1111 v1.10.1 API and forks
that keep it, plus the ADetailer extension's routes).

Every call has a bounded connect and read timeout. Only transient failures (no answer, a
timeout, 502/503/504) are retried, with exponential backoff; the WebUI's own errors (its 500s,
422, out-of-memory) would fail the same way again and are reported at once (webui_errors.py).
Everything that goes wrong surfaces as a WebuiError (webui_errors.py); answers are checked and
parsed by webui_responses.py.

Model and VAE switches go through POST /sdapi/v1/options only when the wanted one is not
already loaded (stablenew.sdwebui.model_matching says which one a name means): a switch blocks
the WebUI for seconds to a minute.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from stablenew.runner.domain import Capabilities
from stablenew.runner.webui_errors import (
    WebuiError,
    WebuiErrorKind,
    bad_response,
    error_from_response,
    is_transient,
    text_snippet,
    unreachable,
)
from stablenew.runner.webui_responses import (
    GenerationResult,
    Progress,
    parse_adetailer_models,
    parse_extras_image,
    parse_generation,
    parse_loaded_model_title,
    parse_model_entries,
    parse_names,
    parse_options,
    parse_progress,
    parse_scheduler_entries,
)
from stablenew.sdwebui.model_matching import AUTOMATIC_VAE, ModelEntry, find_model, match_vae
from stablenew.sdwebui.names import SchedulerEntry

log = logging.getLogger("stablenew.runner.webui")

# Control calls (progress, interrupt, skip, reading options) answer in milliseconds on a
# healthy WebUI, even during a generation: a short read timeout keeps a hung WebUI from
# stalling a cancel or a heartbeat.
CONTROL_READ_TIMEOUT = 5.0
# Lists (models, samplers, ...) are cheap but may be built lazily on first use.
LIST_READ_TIMEOUT = 30.0
# is_ready() is a probe: it must answer quickly whatever state the WebUI is in.
PROBE_TIMEOUT = 2.0
# "At most twice a second": the progress endpoint is cheap, but not free during sampling.
PROGRESS_INTERVAL = 0.5
# A hung progress poll must not hold the generation's result back for long.
PROGRESS_READ_TIMEOUT = 2.0
# No single backoff sleep exceeds this, however many retries are configured.
MAX_BACKOFF_SECONDS = 10.0
# Up to +10 % so runners restarted together do not retry in lockstep.
BACKOFF_JITTER = 0.1


def backoff_delay(attempt: int, base_seconds: float) -> float:
    """The sleep before retry number `attempt` + 1: base * 2**attempt, a little jitter, capped."""
    delay = base_seconds * (2.0 ** attempt) * (1 + random.uniform(0, BACKOFF_JITTER))
    return max(0.0, min(delay, MAX_BACKOFF_SECONDS))


class WebuiClient:
    """One WebUI over one requests.Session; safe to call from several threads (a cancel may
    interrupt while another thread waits on a generation)."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None,
                 connect_timeout: float = 3.0, read_timeout: float = 600.0, retries: int = 3,
                 backoff_seconds: float = 0.5, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = max(0, retries)
        self.backoff_seconds = backoff_seconds
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session()
        if auth is not None:
            self._session.auth = auth
        # Replaced in tests to observe backoff without waiting for it.
        self._sleep: Callable[[float], None] = time.sleep
        # The checkpoint this client last read from, or set on, the WebUI: ensure_model trusts
        # it rather than asking before every entry (forget_loaded_model drops it).
        self._loaded_title: str | None = None
        self._generations = _CallThread()

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # The WebUI sits on this host or its LAN: an HTTP(S)_PROXY meant for the internet
        # must not capture these calls, nor a ~/.netrc override the configured credentials.
        session.trust_env = False
        return session

    def __enter__(self) -> WebuiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session if this client created it (a caller's session stays open)."""
        self._generations.close()
        if self._owns_session:
            self._session.close()

    # Generation ---------------------------------------------------------------------------

    def txt2img(self, payload: dict[str, Any],
                on_progress: Callable[[Progress], None] | None = None) -> GenerationResult:
        """POST txt2img; `on_progress` gets the WebUI's progress while it generates."""
        return self._generate("/sdapi/v1/txt2img", payload, on_progress)

    def img2img(self, payload: dict[str, Any],
                on_progress: Callable[[Progress], None] | None = None) -> GenerationResult:
        """POST img2img; `on_progress` as for txt2img."""
        return self._generate("/sdapi/v1/img2img", payload, on_progress)

    def extra_single_image(self, payload: dict[str, Any]) -> bytes:
        """POST extra-single-image (an extras upscale); the PNG it made."""
        path = "/sdapi/v1/extra-single-image"
        body = self._call("POST", path, json_body=payload, read_timeout=self.read_timeout)
        return parse_extras_image(body, f"POST {path}")

    def _generate(self, path: str, payload: dict[str, Any],
                  on_progress: Callable[[Progress], None] | None) -> GenerationResult:
        def post() -> Any:
            return self._call("POST", path, json_body=payload, read_timeout=self.read_timeout)

        body = post() if on_progress is None else self._while_polling(post, on_progress)
        return parse_generation(body, f"POST {path}")

    def _while_polling(self, call: Callable[[], Any],
                       on_progress: Callable[[Progress], None]) -> Any:
        """Run `call` on the generation thread and report progress from this one until it
        returns; the callback therefore runs on the caller's thread."""
        outcome = self._generations.submit(call)
        while not outcome.done.wait(PROGRESS_INTERVAL):
            self._report_progress(on_progress)
        return outcome.result()

    def _report_progress(self, on_progress: Callable[[Progress], None]) -> None:
        # Progress is a courtesy: no polling or callback failure may fail the generation.
        try:
            snapshot = self._progress(PROGRESS_READ_TIMEOUT)
        except WebuiError as error:
            log.debug("progress poll failed: %s", error)
            return
        try:
            on_progress(snapshot)
        except Exception:
            log.exception("the progress callback failed")

    # Progress and control -----------------------------------------------------------------

    def progress(self) -> Progress:
        """One snapshot, one attempt: a poller simply asks again later."""
        return self._progress(CONTROL_READ_TIMEOUT)

    def _progress(self, read_timeout: float) -> Progress:
        path = "/sdapi/v1/progress"
        body = self._call("GET", path, params={"skip_current_image": "true"},
                          read_timeout=read_timeout, retries=0)
        return parse_progress(body, f"GET {path}")

    def interrupt(self) -> None:
        """One attempt with short timeouts: a cancel must not wait out a backoff schedule."""
        self._call("POST", "/sdapi/v1/interrupt", read_timeout=CONTROL_READ_TIMEOUT, retries=0)

    def skip(self) -> None:
        """Skip the current image of a batch; one attempt, as interrupt()."""
        self._call("POST", "/sdapi/v1/skip", read_timeout=CONTROL_READ_TIMEOUT, retries=0)

    # Options, models and VAEs -------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """Every WebUI setting (GET /sdapi/v1/options)."""
        path = "/sdapi/v1/options"
        body = self._call("GET", path, read_timeout=CONTROL_READ_TIMEOUT)
        return parse_options(body, f"GET {path}")

    def set_options(self, options: dict[str, Any]) -> None:
        """Change WebUI settings (POST /sdapi/v1/options)."""
        # A checkpoint switch blocks until the weights are loaded: allow a generation's time.
        self._call("POST", "/sdapi/v1/options", json_body=options,
                   read_timeout=self.read_timeout)

    def loaded_model_title(self) -> str:
        """The title of the checkpoint the WebUI has loaded (asked, and remembered)."""
        self._loaded_title = parse_loaded_model_title(self.options(), "GET /sdapi/v1/options")
        return self._loaded_title

    @property
    def remembered_model_title(self) -> str | None:
        """The checkpoint last read or set (None once forgotten): no call to the WebUI."""
        return self._loaded_title

    def forget_loaded_model(self) -> None:
        """The remembered checkpoint may be wrong (a reply ran another, the WebUI restarted):
        the next ensure_model asks the WebUI."""
        self._loaded_title = None

    def ensure_model(self, model: str, known: list[ModelEntry] | None = None) -> bool:
        """Load `model` (a title, file name, or name without extension) unless it already is;
        True when it switched. An unknown model is NOT_FOUND and nothing is posted. `known`:
        the checkpoints as last listed; the WebUI is asked again only when it lacks `model`.
        The loaded checkpoint is the one remembered, when there is one (each reply names the
        checkpoint it ran: the executor checks it)."""
        entries = known or []
        wanted = find_model(entries, model)
        if wanted is None:
            entries = self.sd_models()
            wanted = find_model(entries, model)
        if wanted is None:
            self.refresh_checkpoints()  # a checkpoint copied in since the WebUI started
            entries = self.sd_models()
            wanted = find_model(entries, model)
        if wanted is None:
            listed = ", ".join(e.title for e in entries) or "none"
            raise WebuiError(WebuiErrorKind.NOT_FOUND, f"model {model!r} not found; the WebUI "
                             f"has: {listed}", "GET /sdapi/v1/sd-models")
        loaded = find_model(entries, self._loaded_title or self.loaded_model_title())
        if loaded is not None and loaded.title == wanted.title:
            return False
        log.info("switching model", extra={"model": wanted.title})
        self._loaded_title = None  # unknown until the switch answers
        self.set_options({"sd_model_checkpoint": wanted.title})
        self._loaded_title = wanted.title
        return True

    def ensure_vae(self, vae: str) -> bool:
        """Select `vae` ("" or "Automatic" for automatic, "None" for the checkpoint's own)
        unless it already is; True when it switched. Unknown VAE → NOT_FOUND."""
        names, wanted = self._resolve_vae(vae)
        loaded_option = self.options().get("sd_vae", AUTOMATIC_VAE)
        loaded = match_vae(names, str(loaded_option or AUTOMATIC_VAE))
        if loaded == wanted:
            return False
        log.info("switching VAE", extra={"vae": wanted})
        self.set_options({"sd_vae": wanted})
        return True

    def _resolve_vae(self, vae: str) -> tuple[list[str], str]:
        """The listed VAEs and the sd_vae option value for `vae`; the list is refreshed once
        when `vae` is not on it."""
        names = self.sd_vaes()
        found = match_vae(names, vae)
        if found is None:
            self._call("POST", "/sdapi/v1/refresh-vae", read_timeout=self.read_timeout)
            names = self.sd_vaes()
            found = match_vae(names, vae)
            if found is None:
                known = ", ".join(names) or "none"
                raise WebuiError(WebuiErrorKind.NOT_FOUND, f"VAE {vae!r} not found; the WebUI "
                                 f"has: {known}", "GET /sdapi/v1/sd-vae")
        return names, found

    def refresh_checkpoints(self) -> None:
        """Make the WebUI rescan its checkpoint folder."""
        # The WebUI rescans under its generation lock: it may wait behind a generation.
        self._call("POST", "/sdapi/v1/refresh-checkpoints", read_timeout=self.read_timeout)

    # Lists --------------------------------------------------------------------------------

    def sd_models(self) -> list[ModelEntry]:
        """The checkpoints the WebUI offers."""
        path = "/sdapi/v1/sd-models"
        return parse_model_entries(self._get_list(path), f"GET {path}")

    def samplers(self) -> list[str]:
        """Sampler names ("Euler a")."""
        return self._names("samplers", "name")

    def schedulers(self) -> list[SchedulerEntry]:
        """The schedulers: names ("karras"), labels ("Karras", as infotexts write them) and
        aliases (sdwebui.names says where the WebUI accepts which). [] from a WebUI older than
        the route (1.9)."""
        path = "/sdapi/v1/schedulers"
        return parse_scheduler_entries(self._optional_list(path), f"GET {path}")

    def latent_upscale_modes(self) -> list[str]:
        """The hires fix's latent upscalers ("Latent", "Latent (bicubic)", ...); [] from a
        WebUI without the route."""
        path = "/sdapi/v1/latent-upscale-modes"
        return parse_names(self._optional_list(path), "name", f"GET {path}")

    def upscalers(self) -> list[str]:
        """Upscaler names ("Lanczos", "R-ESRGAN 4x+")."""
        return self._names("upscalers", "name")

    def sd_vaes(self) -> list[str]:
        """VAE file names, as the sd_vae option takes them."""
        return self._names("sd-vae", "model_name")

    def adetailer_models(self) -> list[str]:
        """ADetailer's detection models; [] when the extension is not installed."""
        path = "/adetailer/v1/ad_model"
        return parse_adetailer_models(self._optional_list(path, {"ad_model": []}),
                                      f"GET {path}")

    def _optional_list(self, path: str, missing: Any = None) -> Any:
        """A route some WebUIs lack: its body, or `missing` ([] when None) when it is 404."""
        try:
            return self._get_list(path)
        except WebuiError as error:
            if error.kind is WebuiErrorKind.NOT_FOUND:
                return [] if missing is None else missing
            raise

    def capabilities(self) -> Capabilities:
        """Everything the WebUI offers, read now."""
        schedulers = self.schedulers()
        return Capabilities(
            models=self.sd_models(), vaes=self.sd_vaes(), samplers=self.samplers(),
            schedulers=[entry.name for entry in schedulers], upscalers=self.upscalers(),
            adetailer_models=self.adetailer_models(), fetch_time=datetime.now(UTC),
            scheduler_entries=schedulers, latent_upscale_modes=self.latent_upscale_modes())

    def _get_list(self, path: str) -> Any:
        return self._call("GET", path, read_timeout=LIST_READ_TIMEOUT)

    def _names(self, name: str, key: str) -> list[str]:
        path = f"/sdapi/v1/{name}"
        return parse_names(self._get_list(path), key, f"GET {path}")

    # Readiness ----------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """The port accepts connections and GET sd-models answers 200. Never raises."""
        try:
            if not self._port_open():
                return False
            response = self._session.get(self.base_url + "/sdapi/v1/sd-models",
                                         timeout=(PROBE_TIMEOUT, PROBE_TIMEOUT * 2))
            return response.status_code == 200
        except (OSError, ValueError, requests.RequestException):
            return False

    def _port_open(self) -> bool:
        # A bare TCP probe first: cheaper than an HTTP attempt while the WebUI is booting.
        url = urlsplit(self.base_url)
        default_port = 443 if url.scheme == "https" else 80
        host = url.hostname or "127.0.0.1"
        with socket.create_connection((host, url.port or default_port), timeout=PROBE_TIMEOUT):
            return True

    # HTTP ---------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, read_timeout: float,
              json_body: Any = None, params: Mapping[str, str] | None = None,
              retries: int | None = None) -> Any:
        """One API call with retries; returns the parsed JSON body of a 2xx answer."""
        endpoint = f"{method} {path}"
        attempts = 1 + (self.retries if retries is None else retries)
        failure: WebuiError | None = None
        for attempt in range(attempts):
            if attempt > 0:
                delay = backoff_delay(attempt - 1, self.backoff_seconds)
                log.warning("retrying the WebUI in %.2f s: %s", delay, failure)
                self._sleep(delay)
            try:
                response = self._session.request(
                    method, self.base_url + path, json=json_body, params=params,
                    timeout=(self.connect_timeout, read_timeout))
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as error:
                failure = unreachable(error, endpoint)
                continue
            if response.status_code < 400:
                return _json_body(response, endpoint)
            failure = error_from_response(response.status_code, response.text, endpoint)
            if not is_transient(failure):
                failure.attempts = attempt + 1
                raise failure
        assert failure is not None  # the loop ran at least once and did not return
        failure.attempts = attempts
        raise failure


class _CallThread:
    """One daemon thread that runs the calls handed to it, one at a time. Cheaper than a thread
    per generation (starting one waits for it to run: milliseconds between two generations on
    a loaded machine); a daemon, so that a hung WebUI does not hold the interpreter's exit."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], _Outcome] | None] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, call: Callable[[], Any]) -> _Outcome:
        """Run `call` on the thread (started the first time); its outcome."""
        outcome = _Outcome()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="webui-generation",
                                                daemon=True)
                self._thread.start()
        self._calls.put((call, outcome))
        return outcome

    def close(self) -> None:
        """End the thread after the call it runs."""
        with self._lock:
            if self._thread is not None:
                self._calls.put(None)
                self._thread = None

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            call, outcome = item
            outcome.run(call)


class _Outcome:
    """The result or exception of a call made on another thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self, call: Callable[[], Any]) -> None:
        try:
            self._value = call()
        except BaseException as error:  # handed to the waiting thread, which re-raises it
            self._error = error
        finally:
            self.done.set()

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


def _json_body(response: requests.Response, endpoint: str) -> Any:
    if not response.content:
        return None  # some forks answer POST options/skip with an empty 200
    try:
        return response.json()
    except ValueError:
        raise bad_response(endpoint, "the response is not JSON: "
                           + text_snippet(response.text)) from None
