"""Per-request database sessions, signing keys, the caller and its role check.

Routes name their role dependency before ``Db``: FastAPI resolves dependencies in that
order, so a caller without the role gets its 403 before a session is opened.

The ledger and registry stores are not thread-safe, and FastAPI runs each request's
synchronous code in a worker thread. A :class:`SessionPool` therefore hands every request
a session (one connection: a Ledger and a Registry on the same store) that no other
request uses until it is handed back. Sessions are opened lazily, at most
``db_connections`` of them; a request that finds them all busy waits for one. A session
whose database call failed is closed instead of reused (the connection may be broken).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from gateway.api.settings import ApiSettings
from gateway.items import ItemProjection
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore, OrgKey
from gateway.ledger.store import StoreError
from gateway.registry import ApiPrincipal, ApiRole, Registry

__all__ = [
    "Auth",
    "Db",
    "KeyRing",
    "Session",
    "SessionPool",
    "Settings",
    "api_key_header",
    "require",
]


@dataclass
class Session:
    """One database connection: the ledger and the registry on its store."""

    ledger: Ledger
    registry: Registry
    keys: KeyRing
    signers: set[str] = field(default_factory=set)
    _projection: ItemProjection | None = None

    def projection(self) -> ItemProjection:
        """The item projection on this connection (call its ``sync()`` before reading)."""
        if self._projection is None:
            self._projection = ItemProjection(self.ledger.store)
        return self._projection

    def forget(self) -> None:
        """Drop what this session remembers of the database: after a failed request, a
        rolled-back transaction may have undone a projection sync it counted as done."""
        self._projection = None

    def use_signer(self, org: str) -> str:
        """Make ``org``'s key (from the keystore, created on first use) sign on this
        connection; ``org``."""
        if org not in self.signers:
            self.ledger.add_signer(self.keys.get(org))
            self.signers.add(org)
        return org


class KeyRing:
    """Organisation keys from the keystore, loaded once, shared by all sessions."""

    def __init__(self, directory: Path) -> None:
        self.keystore = Keystore(directory)
        self._keys: dict[str, OrgKey] = {}
        self._lock = threading.Lock()

    def get(self, org: str) -> OrgKey:
        """``org``'s signing key, generated and stored on first use."""
        with self._lock:
            key = self._keys.get(org)
            if key is None:
                key = self._keys[org] = self.keystore.load_or_generate(org)
            return key


class SessionPool:
    """Database sessions for requests; each is used by one request at a time.

    At most ``db_connections`` requests hold a session at once. They wait for one on an
    async semaphore in the event loop, not in a worker thread: a worker thread blocked
    on a lock would hold one of the thread pool's tokens, and with enough waiters the
    requests holding sessions could not get a thread to finish on.
    """

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.keystore_dir)
        self._free: list[Session] = []
        self._open: list[Session] = []
        self._lock = threading.Lock()
        self._closed = False
        self._slots: anyio.Semaphore | None = None

    def slots(self) -> anyio.Semaphore:
        """The limit of ``db_connections`` sessions in use (call in the event loop)."""
        if self._slots is None:  # no await between test and set
            self._slots = anyio.Semaphore(self.settings.db_connections)
        return self._slots

    def checkout(self) -> Session:
        """An idle session, or a new one (opening a connection; blocking)."""
        with self._lock:
            if self._closed:
                raise StoreError("the API is shutting down")
            if self._free:
                return self._free.pop()
        ledger = Ledger.open(self.settings.ledger_url)
        try:
            session = Session(ledger, Registry(ledger.store), self.keys)
        except BaseException:
            ledger.close()
            raise
        with self._lock:
            self._open.append(session)
        return session

    def checkin(self, session: Session, *, broken: bool = False) -> None:
        """Hand a session back; a broken one (its database call failed) is closed."""
        with self._lock:
            keep = not broken and not self._closed
            if keep:
                self._free.append(session)
            elif session in self._open:
                self._open.remove(session)
        if not keep:
            # Closing a broken connection may fail too; it is dropped either way.
            with contextlib.suppress(Exception):
                session.ledger.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session outside a request (no limit; for start-up and tools)."""
        session = self.checkout()
        try:
            yield session
        except StoreError:
            self.checkin(session, broken=True)
            raise
        except BaseException:
            session.forget()
            self.checkin(session)
            raise
        else:
            self.checkin(session)

    def warm_up(self) -> None:
        """Open one session now (creating the tables), so a bad database fails at start."""
        with self.session():
            pass

    def close(self) -> None:
        """Close every idle session; busy ones close when they are handed back."""
        with self._lock:
            self._closed = True
            idle, self._free = self._free, []
            for session in idle:
                self._open.remove(session)
        for session in idle:
            session.ledger.close()


def _pool(request: Request) -> SessionPool:
    pool: SessionPool = request.app.state.pool
    return pool


async def _db(request: Request) -> AsyncIterator[Session]:
    pool = _pool(request)
    async with pool.slots():
        session = await run_in_threadpool(pool.checkout)
        try:
            yield session
        except StoreError:
            pool.checkin(session, broken=True)
            raise
        except BaseException:
            session.forget()
            pool.checkin(session)
            raise
        else:
            pool.checkin(session)


Db = Annotated[Session, Depends(_db)]
"""A database session for this request (dependency)."""


def _settings(request: Request) -> ApiSettings:
    return _pool(request).settings


Settings = Annotated[ApiSettings, Depends(_settings)]
"""The API's settings (dependency)."""

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="API key (pgk_…) created with POST /v1/api-keys, or the bootstrap admin key",
)


def _principal(
    request: Request, _key: Annotated[str | None, Security(api_key_header)]
) -> ApiPrincipal:
    # ApiKeyGate (gateway/api/auth.py) checked the key before the body was read.
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, ApiPrincipal):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    return principal


Auth = Annotated[ApiPrincipal, Depends(_principal)]
"""The caller, from its X-API-Key (any role)."""


def require(*roles: ApiRole) -> Callable[[ApiPrincipal], ApiPrincipal]:
    """A dependency that lets only ``roles`` through (403 naming them otherwise)."""
    allowed = ", ".join(r.value for r in roles)

    def check(principal: Auth) -> ApiPrincipal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this needs an API key of role {allowed}; yours is {principal.role.value}",
            )
        return principal

    return check
