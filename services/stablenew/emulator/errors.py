"""The WebUI's error bodies.

The WebUI answers three ways: its own handler for exceptions ({"error", "detail", "body",
"errors"}), FastAPI's defaults for routing ({"detail": "Not Found"}), and FastAPI's validation
errors (422 {"detail": [{"loc", "msg", "type"}]}). Handlers raise these and the HTTP layer turns
them into responses, so no handler builds an error body by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity; "
    "5.12 GiB already allocated; 1.21 GiB free; 5.40 GiB reserved in total by PyTorch) "
    "If reserved memory is >> allocated memory try setting max_split_size_mb to avoid "
    "fragmentation.  See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF"
)


class ApiError(Exception):
    """An exception the WebUI's handler answers with {"error", "detail", "body", "errors"}."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str = "",
        errors: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(errors or detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, "body": "", "errors": self.errors}


def http_exception(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> ApiError:
    """FastAPI's HTTPException as the WebUI raises it: keyword arguments only, so str(e) and
    therefore "errors" is empty and the message is in "detail"."""
    return ApiError(status, "HTTPException", detail=detail, headers=headers)


def exception(name: str, message: str) -> ApiError:
    """Any other Python exception inside the WebUI: 500, the message in "errors"."""
    return ApiError(500, name, errors=message)


def out_of_memory() -> ApiError:
    return exception("OutOfMemoryError", OOM_MESSAGE)


class PlainError(Exception):
    """A FastAPI default response that bypasses the WebUI's handler (routing, validation)."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(str(payload))
        self.status = status
        self.payload = payload


def not_found() -> PlainError:
    return PlainError(404, {"detail": "Not Found"})


def method_not_allowed() -> PlainError:
    return PlainError(405, {"detail": "Method Not Allowed"})


def validation_failed(items: list[dict[str, Any]]) -> PlainError:
    return PlainError(422, {"detail": items})
