"""Errors turned into HTTP answers that never carry secrets.

Database and keystore failures are logged here (credentials redacted) and answered with
a generic 503: their messages can hold the database URL, host, user or a password.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import Request
from fastapi.responses import JSONResponse

__all__ = ["DB_UNAVAILABLE", "KEYS_UNAVAILABLE", "detail_of", "redact", "unavailable"]

DB_UNAVAILABLE: Final = "ledger database unavailable"
KEYS_UNAVAILABLE: Final = "signing keystore unavailable"
log = logging.getLogger("gateway.api")

# user:password@ in a URL; password=… as a URL query parameter or a conninfo keyword.
_USERINFO: Final = re.compile(r"(://[^:/@\s]*):[^@\s]*@")
_PASSWORD: Final = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s'\"]+)", re.IGNORECASE)


def redact(text: str, url: str | None = None) -> str:
    """``text`` with passwords replaced by ``***``: in URLs (``user:pw@``, ``?password=``),
    conninfo strings, and anywhere the password of ``url`` (a database URL) appears."""
    secret = _password_of(url) if url else None
    if secret:
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\1:***@", text)
    return _PASSWORD.sub(r"\1***", text)


def _password_of(url: str) -> str | None:
    try:
        from psycopg import conninfo  # the postgres extra; SQLite URLs hold no password
    except ImportError:
        return None
    try:
        secret = conninfo.conninfo_to_dict(url).get("password")
    except Exception:  # not a libpq URL or conninfo string: nothing to find
        return None
    return secret if isinstance(secret, str) and secret else None


def detail_of(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """A handler answering ``code`` with the exception's message (for errors about the
    request itself: they say what is wrong with it)."""

    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handler


def unavailable(
    detail: str, url: str | None = None
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """A handler that logs the failure (redacted) and answers 503 ``detail``."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "%s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            redact(str(exc), url),
        )
        return JSONResponse({"detail": detail}, status_code=503)

    return handler
