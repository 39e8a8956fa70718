"""The runner's HTTP client for a Stable Diffusion WebUI (AUTOMATIC1111 v1.10.1 API and forks
that keep it, plus the ADetailer extension's routes).

Every call has a bounded connect and read timeout. Connection errors, timeouts and 5xx answers
are retried with exponential backoff, except CUDA out-of-memory: the same request would fail
the same way, so it is reported at once as OUT_OF_MEMORY. 4xx answers are never retried.
Everything that goes wrong surfaces as one exception type, WebuiError, whose `kind` tells the
runner what happened and whose `message` carries the WebUI's own error text.

Model and VAE switches go through POST /sdapi/v1/options only when the wanted one is not
already loaded: a switch blocks the WebUI for seconds to a minute.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import requests

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

AUTOMATIC_VAE = "Automatic"
NO_VAE = "None"
# Shown in messages built from a non-JSON body (a proxy's HTML page, a traceback).
_MAX_RAW_TEXT = 300
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]+\]$")


class WebuiErrorKind(Enum):
    UNAVAILABLE = "unavailable"
    OUT_OF_MEMORY = "out of memory"
    HTTP_ERROR = "server error"
    VALIDATION = "validation error"
    NOT_FOUND = "not found"
    UNAUTHORIZED = "unauthorized"
    BAD_RESPONSE = "bad response"


class WebuiError(Exception):
    """A failed WebUI call. `message` is the WebUI's own error text when it gave one."""

    def __init__(self, kind: WebuiErrorKind, message: str, endpoint: str,
                 status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.endpoint = endpoint
        self.attempts = attempts

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        tries = f" [after {self.attempts} attempts]" if self.attempts > 1 else ""
        text = " ".join(f"WebUI {self.endpoint}: {self.kind.value}{status}: "
                        f"{self.message}{tries}".split())
        return text


@dataclass(frozen=True)
class GenerationResult:
    images: list[bytes]
    info: dict[str, Any]
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    progress: float
    eta_relative: float
    job_count: int
    job_no: int
    sampling_step: int
    sampling_steps: int
    interrupted: bool
    skipped: bool
    textinfo: str

    @property
    def idle(self) -> bool:
        return self.job_count == 0


@dataclass(frozen=True)
class ModelEntry:
    title: str
    model_name: str
    hash: str
    filename: str = ""
    sha256: str = ""

    @property
    def name(self) -> str:
        """The checkpoint's path relative to the models folder ("sub/x.safetensors")."""
        return _HASH_SUFFIX.sub("", self.title)

    def aliases(self) -> tuple[str, str, str, str, str, str, str]:
        """The names the WebUI accepts for this checkpoint, most specific first: title,
        relative file name, model_name, file name, file name without extension, short hash,
        sha256 (the hashes are "" until the WebUI has computed them)."""
        base = _basename(self.name)
        return (self.title, self.name, self.model_name, base, _stem(base), self.hash,
                self.sha256)


# The length of ModelEntry.aliases() (its return type pins it).
_ALIAS_RANKS = 7


def backoff_delay(attempt: int, base_seconds: float) -> float:
    """The sleep before retry number `attempt` + 1: base * 2**attempt, a little jitter, capped."""
    delay = base_seconds * (2.0 ** attempt) * (1 + random.uniform(0, BACKOFF_JITTER))
    return max(0.0, min(delay, MAX_BACKOFF_SECONDS))


def decode_image(encoded: Any, endpoint: str) -> bytes:
    """Base64 image text as the WebUI sends it; a data: URL prefix is accepted too."""
    if not isinstance(encoded, str) or not encoded:
        raise _bad(endpoint, "an image is not a base64 string")
    text = encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(endpoint, "an image is not valid base64") from None
    if not data:
        raise _bad(endpoint, "an image is empty")
    return data


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
        if self._owns_session:
            self._session.close()

    # Generation ---------------------------------------------------------------------------

    def txt2img(self, payload: dict[str, Any],
                on_progress: Callable[[Progress], None] | None = None) -> GenerationResult:
        return self._generate("/sdapi/v1/txt2img", payload, on_progress)

    def img2img(self, payload: dict[str, Any],
                on_progress: Callable[[Progress], None] | None = None) -> GenerationResult:
        return self._generate("/sdapi/v1/img2img", payload, on_progress)

    def extra_single_image(self, payload: dict[str, Any]) -> bytes:
        path = "/sdapi/v1/extra-single-image"
        body = self._call("POST", path, json_body=payload, read_timeout=self.read_timeout)
        if not isinstance(body, dict) or "image" not in body:
            raise _bad(f"POST {path}", 'the response has no "image"')
        return decode_image(body["image"], f"POST {path}")

    def _generate(self, path: str, payload: dict[str, Any],
                  on_progress: Callable[[Progress], None] | None) -> GenerationResult:
        def post() -> Any:
            return self._call("POST", path, json_body=payload, read_timeout=self.read_timeout)

        body = post() if on_progress is None else self._while_polling(post, on_progress)
        return parse_generation(body, f"POST {path}")

    def _while_polling(self, call: Callable[[], Any],
                       on_progress: Callable[[Progress], None]) -> Any:
        """Run `call` in a background thread and report progress from this one until it
        returns; the callback therefore runs on the caller's thread."""
        outcome = _Outcome()
        worker = threading.Thread(target=outcome.run, args=(call,), name="webui-generation",
                                  daemon=True)  # a hung WebUI must not block interpreter exit
        worker.start()
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
        self._call("POST", "/sdapi/v1/skip", read_timeout=CONTROL_READ_TIMEOUT, retries=0)

    # Options, models and VAEs -------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        path = "/sdapi/v1/options"
        body = self._call("GET", path, read_timeout=CONTROL_READ_TIMEOUT)
        if not isinstance(body, dict):
            raise _bad(f"GET {path}", "the options are not a JSON object")
        return body

    def set_options(self, options: dict[str, Any]) -> None:
        # A checkpoint switch blocks until the weights are loaded: allow a generation's time.
        self._call("POST", "/sdapi/v1/options", json_body=options,
                   read_timeout=self.read_timeout)

    def loaded_model_title(self) -> str:
        title = self.options().get("sd_model_checkpoint")
        if not isinstance(title, str):
            raise _bad("GET /sdapi/v1/options", "sd_model_checkpoint is not a string")
        return title

    def ensure_model(self, model: str) -> bool:
        """Load `model` (a title, file name, or name without extension) unless it already is;
        True when it switched. An unknown model is NOT_FOUND and nothing is posted."""
        entries = self.sd_models()
        wanted = find_model(entries, model)
        if wanted is None:
            self.refresh_checkpoints()  # a checkpoint copied in since the WebUI started
            entries = self.sd_models()
            wanted = find_model(entries, model)
        if wanted is None:
            known = ", ".join(e.title for e in entries) or "none"
            raise WebuiError(WebuiErrorKind.NOT_FOUND, f"model {model!r} not found; the WebUI "
                             f"has: {known}", "GET /sdapi/v1/sd-models")
        loaded = find_model(entries, self.loaded_model_title())
        if loaded is not None and loaded.title == wanted.title:
            return False
        log.info("switching model", extra={"model": wanted.title})
        self.set_options({"sd_model_checkpoint": wanted.title})
        return True

    def ensure_vae(self, vae: str) -> bool:
        """Select `vae` ("" or "Automatic" for automatic, "None" for the checkpoint's own)
        unless it already is; True when it switched. Unknown VAE → NOT_FOUND."""
        names, wanted = self._resolve_vae(vae)
        loaded_option = self.options().get("sd_vae", AUTOMATIC_VAE)
        loaded = _match_vae(names, str(loaded_option or AUTOMATIC_VAE))
        if loaded == wanted:
            return False
        log.info("switching VAE", extra={"vae": wanted})
        self.set_options({"sd_vae": wanted})
        return True

    def _resolve_vae(self, vae: str) -> tuple[list[str], str]:
        """The listed VAEs and the sd_vae option value for `vae`; the list is refreshed once
        when `vae` is not on it."""
        names = self.sd_vaes()
        found = _match_vae(names, vae or AUTOMATIC_VAE)
        if found is None:
            self._call("POST", "/sdapi/v1/refresh-vae", read_timeout=self.read_timeout)
            names = self.sd_vaes()
            found = _match_vae(names, vae)
            if found is None:
                known = ", ".join(names) or "none"
                raise WebuiError(WebuiErrorKind.NOT_FOUND, f"VAE {vae!r} not found; the WebUI "
                                 f"has: {known}", "GET /sdapi/v1/sd-vae")
        return names, found

    def refresh_checkpoints(self) -> None:
        # The WebUI rescans under its generation lock: it may wait behind a generation.
        self._call("POST", "/sdapi/v1/refresh-checkpoints", read_timeout=self.read_timeout)

    # Lists --------------------------------------------------------------------------------

    def sd_models(self) -> list[ModelEntry]:
        return [_model_entry(item) for item in self._list("sd-models")]

    def samplers(self) -> list[str]:
        return self._names("samplers", "name")

    def schedulers(self) -> list[str]:
        """Scheduler names ("karras"); the WebUI also accepts their labels ("Karras")."""
        return self._names("schedulers", "name")

    def scheduler_labels(self) -> list[str]:
        """Scheduler labels ("Karras"), as infotexts write them."""
        return self._names("schedulers", "label")

    def upscalers(self) -> list[str]:
        return self._names("upscalers", "name")

    def sd_vaes(self) -> list[str]:
        return self._names("sd-vae", "model_name")

    def adetailer_models(self) -> list[str]:
        """ADetailer's detection models; [] when the extension is not installed."""
        path = "/adetailer/v1/ad_model"
        try:
            body = self._call("GET", path, read_timeout=LIST_READ_TIMEOUT)
        except WebuiError as error:
            if error.kind is WebuiErrorKind.NOT_FOUND:
                return []
            raise
        models = body.get("ad_model") if isinstance(body, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise _bad(f"GET {path}", 'the response has no "ad_model" list of names')
        return list(models)

    def _list(self, name: str) -> list[dict[str, Any]]:
        path = f"/sdapi/v1/{name}"
        body = self._call("GET", path, read_timeout=LIST_READ_TIMEOUT)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise _bad(f"GET {path}", "the response is not a list of objects")
        return body

    def _names(self, name: str, key: str) -> list[str]:
        items = self._list(name)
        if not all(isinstance(item.get(key), str) for item in items):
            raise _bad(f"GET /sdapi/v1/{name}", f'an item has no "{key}"')
        return [str(item[key]) for item in items]

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
                failure = WebuiError(WebuiErrorKind.UNAVAILABLE, _exception_text(error),
                                     endpoint)
                continue
            if response.status_code < 400:
                return _json_body(response, endpoint)
            failure = error_from_response(response.status_code, response.text, endpoint)
            if not _retryable(failure):
                failure.attempts = attempt + 1
                raise failure
        assert failure is not None  # the loop ran at least once and did not return
        failure.attempts = attempts
        raise failure


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


# Parsing ------------------------------------------------------------------------------------


def parse_generation(body: Any, endpoint: str) -> GenerationResult:
    """A txt2img/img2img body: {"images": [base64...], "parameters": {...}, "info": "<JSON>"}."""
    if not isinstance(body, dict) or not isinstance(body.get("images"), list):
        raise _bad(endpoint, 'the response has no "images" list')
    images = [decode_image(item, endpoint) for item in body["images"]]
    info_text = body.get("info")
    if not isinstance(info_text, str):
        raise _bad(endpoint, '"info" is not a JSON string')
    try:
        info = json.loads(info_text)
    except ValueError:
        raise _bad(endpoint, '"info" is not valid JSON') from None
    if not isinstance(info, dict):
        raise _bad(endpoint, '"info" is not a JSON object')
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad(endpoint, '"parameters" is not an object')
    return GenerationResult(images=images, info=info, parameters=parameters)


def parse_progress(body: Any, endpoint: str) -> Progress:
    """A /sdapi/v1/progress body; state fields a fork leaves out count as 0/false."""
    if not isinstance(body, dict) or not isinstance(body.get("state"), dict):
        raise _bad(endpoint, 'the response has no "state" object')
    state = body["state"]
    try:
        return Progress(
            progress=float(body.get("progress") or 0.0),
            eta_relative=float(body.get("eta_relative") or 0.0),
            job_count=int(state.get("job_count") or 0),
            job_no=int(state.get("job_no") or 0),
            sampling_step=int(state.get("sampling_step") or 0),
            sampling_steps=int(state.get("sampling_steps") or 0),
            interrupted=bool(state.get("interrupted")),
            skipped=bool(state.get("skipped")),
            textinfo=str(body.get("textinfo") or ""))
    except (TypeError, ValueError):
        raise _bad(endpoint, "a progress field is not a number") from None


def error_from_response(status: int, text: str, endpoint: str) -> WebuiError:
    """The WebuiError for a 4xx/5xx answer, with the WebUI's own error text."""
    body = _parse_json_or_none(text)
    message = _error_text(body, text, status)
    if _is_out_of_memory(body, message, status):
        kind = WebuiErrorKind.OUT_OF_MEMORY
    else:
        kind = _KIND_BY_STATUS.get(status, WebuiErrorKind.HTTP_ERROR)
    return WebuiError(kind, message, endpoint, status)


_KIND_BY_STATUS = {401: WebuiErrorKind.UNAUTHORIZED, 404: WebuiErrorKind.NOT_FOUND,
                   422: WebuiErrorKind.VALIDATION}


def _error_text(body: Any, raw: str, status: int) -> str:
    """The WebUI's message: "errors" (its handler's str(exception)), else "detail" (FastAPI's
    HTTPException and validation lists), else the start of the raw body."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, str) and errors.strip():
            return errors.strip()
        detail = body.get("detail")
        if isinstance(detail, list):
            return "; ".join(_validation_item(item) for item in detail)
        if isinstance(detail, str) and detail.strip():
            return detail.strip()
        if isinstance(body.get("error"), str) and body["error"]:
            return str(body["error"])
    snippet = " ".join(raw.split())[:_MAX_RAW_TEXT]
    return snippet or f"HTTP {status} with an empty body"


def _validation_item(item: Any) -> str:
    """FastAPI's {"loc": ["body", "steps"], "msg": "..."} as "body.steps: ..."."""
    if not isinstance(item, dict):
        return str(item)
    loc = item.get("loc")
    where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
    message = str(item.get("msg") or item.get("type") or "invalid")
    return f"{where}: {message}" if where else message


def _is_out_of_memory(body: Any, message: str, status: int) -> bool:
    if status < 500:
        return False
    error_class = body.get("error") if isinstance(body, dict) else None
    return error_class == "OutOfMemoryError" or "CUDA out of memory" in message


def _retryable(error: WebuiError) -> bool:
    if error.kind is WebuiErrorKind.UNAVAILABLE:
        return True
    return error.kind is WebuiErrorKind.HTTP_ERROR and (error.status or 0) >= 500


def _json_body(response: requests.Response, endpoint: str) -> Any:
    if not response.content:
        return None  # some forks answer POST options/skip with an empty 200
    try:
        return response.json()
    except ValueError:
        raise _bad(endpoint, "the response is not JSON: "
                   + " ".join(response.text.split())[:_MAX_RAW_TEXT]) from None


def _parse_json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _exception_text(error: requests.RequestException) -> str:
    if isinstance(error, requests.Timeout):
        return f"timed out ({type(error).__name__})"
    # requests nests urllib3's reason several levels deep; the innermost says the most.
    reason: BaseException = error
    while reason.args and isinstance(reason.args[0], BaseException):
        reason = reason.args[0]
    return f"cannot connect: {reason}"


def _bad(endpoint: str, message: str) -> WebuiError:
    return WebuiError(WebuiErrorKind.BAD_RESPONSE, message, endpoint, 200)


def _model_entry(item: Mapping[str, Any]) -> ModelEntry:
    title = item.get("title")
    if not isinstance(title, str) or not title:
        raise _bad("GET /sdapi/v1/sd-models", 'a model has no "title"')
    # hash and sha256 are null until the WebUI has hashed the file.
    return ModelEntry(title=title, model_name=str(item.get("model_name") or ""),
                      hash=str(item.get("hash") or ""), filename=str(item.get("filename") or ""),
                      sha256=str(item.get("sha256") or ""))


def find_model(entries: list[ModelEntry], name: str) -> ModelEntry | None:
    """The checkpoint `name` means. Aliases are tried rank by rank over all entries, so an
    exact title always wins over another folder's checkpoint with the same file name."""
    wanted = name.strip()
    if not wanted:
        return None
    table = [(entry, entry.aliases()) for entry in entries]
    for rank in range(_ALIAS_RANKS):
        for entry, aliases in table:
            if aliases[rank] == wanted:
                return entry
    # A title with another hash than the listed one (the file was replaced): match the name.
    bare = _HASH_SUFFIX.sub("", wanted)
    return find_model(entries, bare) if bare != wanted else None


def _match_vae(names: list[str], wanted: str) -> str | None:
    """The sd_vae option value for `wanted`: Automatic/None, or a listed VAE by its name,
    file name or name without extension."""
    value = wanted.strip()
    if value.lower() in ("", AUTOMATIC_VAE.lower()):
        return AUTOMATIC_VAE
    if value.lower() == NO_VAE.lower():
        return NO_VAE
    for name in names:
        if value in (name, _basename(name), _stem(_basename(name))):
            return name
    return None


def _basename(name: str) -> str:
    return re.split(r"[\\/]", name)[-1]


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name
