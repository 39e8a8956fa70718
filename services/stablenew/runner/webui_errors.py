"""What went wrong with a WebUI call: every failure becomes one exception type, WebuiError, whose
`kind` tells the runner what happened and whose `message` carries the WebUI's own error text.

The WebUI (AUTOMATIC1111 v1.10.1 and forks that keep its API) answers errors in a few shapes:
its own handler's {"error": <exception class>, "errors": <str(exception)>, ...}, FastAPI's
{"detail": "..."} and validation lists {"detail": [{"loc": [...], "msg": "..."}]}, and whatever
a proxy in front of it sends. CUDA out-of-memory is a 500 like any other, recognised by its
exception class or text.

Only a transient failure is worth another try: no answer at all (refused, reset, timed out) or
a 502/503/504 from a proxy or a WebUI that is restarting. The WebUI answers every exception its
request raised as a 500 ("could not find upscaler named ...", a KeyError for a bad option, a
model that does not load), and such a request fails the same way every time; so do a 4xx
(422: a field the request model rejects) and out-of-memory.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import requests

# Shown in messages built from a non-JSON body (a proxy's HTML page, a traceback).
MAX_RAW_TEXT = 300


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
        return " ".join(f"WebUI {self.endpoint}: {self.kind.value}{status}: "
                        f"{self.message}{tries}".split())


def error_from_response(status: int, text: str, endpoint: str) -> WebuiError:
    """The WebuiError for a 4xx/5xx answer, with the WebUI's own error text."""
    body = _parse_json_or_none(text)
    message = _error_text(body, text, status)
    if _is_out_of_memory(body, message, status):
        kind = WebuiErrorKind.OUT_OF_MEMORY
    else:
        kind = _KIND_BY_STATUS.get(status, WebuiErrorKind.HTTP_ERROR)
    return WebuiError(kind, message, endpoint, status)


def unreachable(error: requests.RequestException, endpoint: str) -> WebuiError:
    """The WebuiError for a call that got no answer: refused, reset or timed out."""
    return WebuiError(WebuiErrorKind.UNAVAILABLE, _exception_text(error), endpoint)


def bad_response(endpoint: str, message: str) -> WebuiError:
    """A 2xx answer whose body is not what the API promises."""
    return WebuiError(WebuiErrorKind.BAD_RESPONSE, message, endpoint, 200)


# What a proxy or a restarting server answers; the WebUI itself answers its errors with 500.
TRANSIENT_STATUSES = frozenset({502, 503, 504})


def is_transient(error: WebuiError) -> bool:
    """No answer, or a 502/503/504: the same call may succeed later. Anything else (a 4xx, the
    WebUI's own 500s, out-of-memory) is deterministic and would fail the same way again."""
    if error.kind is WebuiErrorKind.UNAVAILABLE:
        return True
    return error.kind is WebuiErrorKind.HTTP_ERROR and error.status in TRANSIENT_STATUSES


def text_snippet(raw: str) -> str:
    """The start of a body that is not the JSON expected, on one line."""
    return " ".join(raw.split())[:MAX_RAW_TEXT]


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
    return text_snippet(raw) or f"HTTP {status} with an empty body"


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
