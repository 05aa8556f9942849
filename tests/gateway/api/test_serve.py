"""The API served by uvicorn in a thread (as `provgate gateway run` does), over real HTTP."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.api import make_server
from simulators.broker import free_tcp_port
from tests.gateway.api.conftest import BOOTSTRAP, make_settings
from tests.support.waiting import wait_until


def test_server_in_a_thread_answers_and_stops(tmp_path: Path) -> None:
    port = free_tcp_port()
    server = make_server(make_settings(str(tmp_path / "db.sqlite"), tmp_path), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, timeout=10.0)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/me", headers={"X-API-Key": BOOTSTRAP}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert json.loads(reply.read())["role"] == "admin"
        # A seller ID that is a URI travels in the path as it is, "//" included.
        seller = "https://provgate.dev/seller/s-01"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/sellers/{seller}", headers={"X-API-Key": BOOTSTRAP}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 404
        with refused.value as error:
            assert json.loads(error.read())["detail"] == f"unknown seller {seller!r}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
