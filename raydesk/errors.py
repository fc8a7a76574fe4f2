"""The one exception tree of raydesk.

Every error that a client can see is a :class:`RaydeskError` carrying its protocol code
(PROTOCOL.md "Conventions"). The gateway turns them into REST error bodies or WebSocket
``error`` frames in one place; anything else becomes close code 1011 (WebSocket) or
503 ``unavailable`` (REST), with no detail.

Exceptions cross Ray actor boundaries (they are pickled), so each keeps its constructor
arguments in ``args``.
"""

from __future__ import annotations

from typing import ClassVar


class RaydeskError(Exception):
    """Base of every raydesk error. ``code`` is the protocol error code."""

    code: ClassVar[str] = "unavailable"
    http_status: ClassVar[int] = 503

    def __init__(self, message: str, ref: str | None = None) -> None:
        super().__init__(message, ref)
        self.message = message
        self.ref = ref

    def __str__(self) -> str:
        return self.message

    def frame(self) -> dict[str, object]:
        """The WebSocket ``error`` frame for this error."""
        return {"type": "error", "code": self.code, "message": self.message, "ref": self.ref}

    def body(self) -> dict[str, object]:
        """The REST error body for this error."""
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(RaydeskError):
    code = "bad_request"
    http_status = 400


class Unauthorized(RaydeskError):
    code = "unauthorized"
    http_status = 401


class Forbidden(RaydeskError):
    code = "forbidden"
    http_status = 403


class NotFound(RaydeskError):
    code = "not_found"
    http_status = 404


class Conflict(RaydeskError):
    code = "conflict"
    http_status = 409


class TooLarge(RaydeskError):
    code = "too_large"
    http_status = 413


class RateLimited(RaydeskError):
    code = "rate_limited"
    http_status = 429


class Unavailable(RaydeskError):
    """The request may be retried later (a shard restarting, the store unreachable)."""

    code = "unavailable"
    http_status = 503


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and what is allowed."""


ERRORS_BY_CODE: dict[str, type[RaydeskError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        RateLimited,
        Unavailable,
    )
}
