"""The FastAPI application: routers, error mapping, body limit; and serving it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import routes_admin, routes_commission, routes_items, routes_ops
from gateway.api.auth import ApiKeyGate
from gateway.api.context import SessionPool
from gateway.api.errors import DB_UNAVAILABLE, KEYS_UNAVAILABLE, detail_of, redact, unavailable
from gateway.api.settings import ApiSettings
from gateway.items import ProjectionError
from gateway.ledger.epcis import EpcisError
from gateway.ledger.ledger import LedgerError
from gateway.ledger.signing import KeyStoreError
from gateway.ledger.store import StoreError
from gateway.registry import RegistryConflictError, RegistryError, RegistryNotFoundError

__all__ = ["create_app", "make_server", "serve_api"]

_DESCRIPTION = """\
The provgate site gateway: organisations and their GS1 company prefixes, commissioning,
provenance timelines with offline-checkable proofs, inspections, sellers (one strike and
you're out), recalls, the ledger audit and gate status.

Every call but `/v1/health` needs an API key in the `X-API-Key` header. See docs/api.md.
"""


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413 before the app parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_bytes} bytes"}, status_code=413
        )
        await response(scope, receive, send)


def create_app(settings: ApiSettings) -> FastAPI:
    """The API over ``settings.ledger_url``; the database is opened at start-up."""
    pool = SessionPool(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            pool.warm_up()
        except StoreError as exc:  # the server log shows it: no password there either
            raise StoreError(redact(str(exc), settings.ledger_url)) from None
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="provgate gateway API",
        version="1",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Added last, so outermost: the key is checked before the body is read.
    open_paths = {"/v1/health", app.openapi_url, app.docs_url, app.redoc_url}
    open_paths.add(app.swagger_ui_oauth2_redirect_url)
    app.add_middleware(
        ApiKeyGate, pool=pool, open_paths=frozenset(p for p in open_paths if p is not None)
    )
    # Most specific first: Starlette picks the handler of the nearest class in the MRO.
    app.add_exception_handler(RegistryNotFoundError, detail_of(404))
    app.add_exception_handler(RegistryConflictError, detail_of(409))
    app.add_exception_handler(RegistryError, detail_of(422))
    app.add_exception_handler(LedgerError, detail_of(422))
    app.add_exception_handler(EpcisError, detail_of(422))
    # Their messages may name the database URL, host and user: logged, never answered.
    app.add_exception_handler(StoreError, unavailable(DB_UNAVAILABLE, settings.ledger_url))
    app.add_exception_handler(ProjectionError, unavailable(DB_UNAVAILABLE, settings.ledger_url))
    app.add_exception_handler(KeyStoreError, unavailable(KEYS_UNAVAILABLE))

    @app.get("/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: answers without a key and without touching the database."""
        return {"status": "ok", "site": settings.site}

    app.include_router(routes_admin.router)
    app.include_router(routes_commission.router)
    app.include_router(routes_items.router)
    app.include_router(routes_ops.router)
    return app


def make_server(settings: ApiSettings, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the API; ``server.run()`` blocks, ``server.should_exit = True``
    (from another thread) stops it."""
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="info")
    return uvicorn.Server(config)


def serve_api(settings: ApiSettings, host: str, port: int) -> None:
    """Serve the API until interrupted (blocking; may run in a thread of its own)."""
    make_server(settings, host, port).run()
