"""API-key authentication, done before anything else of a request.

:class:`ApiKeyGate` is ASGI middleware: it checks ``X-API-Key`` before the request body
is read or parsed and before a route opens its database session. A missing key, or one
that cannot be a key, is refused without touching the database; the bootstrap admin key
is compared first; only then is the key looked up in the registry (on a pooled session,
handed back at once). The caller lands in ``request.state.principal`` for the routes.
"""

from __future__ import annotations

import hmac
import logging
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.context import SessionPool
from gateway.api.errors import DB_UNAVAILABLE, redact
from gateway.ledger.store import StoreError
from gateway.registry import API_KEY_PREFIX, ApiPrincipal, ApiRole

__all__ = ["BOOTSTRAP_KEY_ID", "ApiKeyGate"]

BOOTSTRAP_KEY_ID: Final = "bootstrap"
_CHALLENGE: Final = {"WWW-Authenticate": 'APIKey header="X-API-Key"'}
_MAX_KEY: Final = 200
log = logging.getLogger("gateway.api")


class ApiKeyGate:
    """Refuses requests without a valid API key (401) before the app sees them; paths in
    ``open_paths`` (health, OpenAPI docs) need none."""

    def __init__(self, app: ASGIApp, pool: SessionPool, open_paths: frozenset[str]) -> None:
        self.app = app
        self.pool = pool
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        found = await self._authenticate(Headers(scope=scope).get("x-api-key"))
        if isinstance(found, JSONResponse):
            await found(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = found
        await self.app(scope, receive, send)

    async def _authenticate(self, key: str | None) -> ApiPrincipal | JSONResponse:
        if not key:
            return _refuse("missing X-API-Key header")
        bootstrap = self.pool.settings.bootstrap_admin_key
        if bootstrap is not None and hmac.compare_digest(key.encode(), bootstrap.encode()):
            return ApiPrincipal(BOOTSTRAP_KEY_ID, ApiRole.ADMIN, None)
        if not key.startswith(API_KEY_PREFIX) or len(key) > _MAX_KEY:
            return _refuse("unknown or revoked API key")
        try:
            async with self.pool.slots():
                principal = await run_in_threadpool(self._look_up, key)
        except StoreError as exc:
            log.error("API key check failed: database unavailable: %s", redact(str(exc)))
            return JSONResponse({"detail": DB_UNAVAILABLE}, status_code=503)
        if principal is None:
            return _refuse("unknown or revoked API key")
        return principal

    def _look_up(self, key: str) -> ApiPrincipal | None:
        with self.pool.session() as session:
            return session.registry.check_api_key(key)


def _refuse(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=401, headers=_CHALLENGE)
