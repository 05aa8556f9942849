"""Concurrent requests share a few database connections, one request per connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import anyio.to_thread
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.ledger.store import open_store
from tests.gateway.api.conftest import make_settings, set_up


def test_concurrent_commissioning_through_two_connections(tmp_path: Path) -> None:
    settings = make_settings(str(tmp_path / "db.sqlite"), tmp_path, db_connections=2)
    with TestClient(create_app(settings)) as client:
        api = set_up(client, settings)

        def commission(n: int) -> int:
            items = [{"id": f"urn:epc:id:sgtin:4012345.000001.{n}-{i}"} for i in range(20)]
            reply = client.post(
                "/v1/commissioning", json={"items": items}, headers=api.headers("acme")
            )
            return reply.status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(commission, range(16)))
        assert codes == [201] * 16
        report = client.get("/v1/ledger/audit?strict=true", headers=api.headers("admin")).json()
        assert (report["ok"], report["events"]) == (True, 16)
        assert len(client.app.state.pool._open) <= 2  # type: ignore[attr-defined]
    with open_store(settings.ledger_url) as store:
        assert store.event_count() == 16


def test_requests_waiting_for_a_connection_do_not_starve_the_thread_pool(tmp_path: Path) -> None:
    # One connection and two worker threads: were waiters to block in worker threads,
    # the request holding the connection could not get a thread to finish on.
    settings = make_settings(str(tmp_path / "db.sqlite"), tmp_path, db_connections=1)
    with TestClient(create_app(settings)) as client:
        api = set_up(client, settings)

        def shrink() -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = 2

        client.portal.call(shrink)  # type: ignore[union-attr]

        def me(_: int) -> int:
            return client.get("/v1/me", headers=api.headers("operator")).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(me, n) for n in range(24)]
            done, _pending = wait(futures, timeout=30)
        assert [f.result() for f in done] == [200] * 24
