"""SerialLink: bulk reads from a real pty or TCP port, and surviving unplug/replug."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hardware.backoff import Backoff
from hardware.health import DeviceState
from hardware.serial_link import SerialLink
from simulators.serial_endpoint import PtyEndpoint, TcpEndpoint
from tests.support.waiting import wait_until


class Collector:
    def __init__(self) -> None:
        self.data = bytearray()
        self.chunks = 0
        self.cond = threading.Condition()

    def __call__(self, chunk: bytes) -> None:
        with self.cond:
            self.data += chunk
            self.chunks += 1
            self.cond.notify_all()

    def wait_for(self, size: int, timeout: float = 5.0) -> bytes:
        with self.cond:
            self.cond.wait_for(lambda: len(self.data) >= size, timeout)
            return bytes(self.data)


def test_pty_bytes_arrive_in_bulk_not_byte_by_byte() -> None:
    endpoint = PtyEndpoint()
    got = Collector()
    link = SerialLink("t", endpoint.url, got)
    link.start()
    try:
        assert link.wait_healthy(5)
        payload = bytes(range(256)) * 40
        assert endpoint.write(payload)
        assert got.wait_for(len(payload)) == payload
        assert got.chunks < len(payload) // 100
    finally:
        link.stop()
        endpoint.close()


def test_writes_reach_the_device() -> None:
    endpoint = PtyEndpoint()
    link = SerialLink("t", endpoint.url, lambda _: None)
    link.start()
    try:
        assert link.wait_healthy(5)
        assert link.write(b"\xff\x00\x03\x1d\x0c")
        assert endpoint.read(2.0) == b"\xff\x00\x03\x1d\x0c"
    finally:
        link.stop()
        endpoint.close()


def test_unplugged_pty_reports_unhealthy_then_resumes_on_replug(tmp_path: Path) -> None:
    link_path = tmp_path / "scanner"
    first = PtyEndpoint(link_path)
    got = Collector()
    link = SerialLink("t", str(link_path), got, backoff=Backoff(initial=0.02, maximum=0.1))
    link.start()
    try:
        assert link.wait_healthy(5)
        first.write(b"before\n")
        got.wait_for(7)
        first.close()  # USB pulled
        assert wait_until(lambda: link.health().state is DeviceState.UNHEALTHY)
        assert link.write(b"x") is False
        second = PtyEndpoint(link_path)  # plugged back in, same symlink
        try:
            assert wait_until(lambda: link.health().healthy)
            second.write(b"after\n")
            assert got.wait_for(13) == b"before\nafter\n"
            health = link.health()
            assert health.reconnects == 1
            assert health.counters["disconnects"] == 1
        finally:
            second.close()
    finally:
        link.stop()


def test_missing_device_is_retried_with_backoff_until_it_appears(tmp_path: Path) -> None:
    link_path = tmp_path / "reader"
    link = SerialLink("t", str(link_path), lambda _: None, backoff=Backoff(0.02, 0.05))
    link.start()
    try:
        assert wait_until(lambda: link.health().state is DeviceState.UNHEALTHY)
        assert "cannot open" in (link.health().last_error or "")
        endpoint = PtyEndpoint(link_path)
        try:
            assert link.wait_healthy(5)
        finally:
            endpoint.close()
    finally:
        link.stop()


def test_socket_url_reads_in_bulk_and_reconnects_after_reset() -> None:
    endpoint = TcpEndpoint()
    got = Collector()
    link = SerialLink("t", endpoint.url, got, backoff=Backoff(0.02, 0.1))
    link.start()
    try:
        # pyserial flushes input while it opens a port: write once the link is up.
        assert endpoint.wait_for_driver(5)
        assert link.wait_healthy(5)
        payload = b"0123456789" * 1000
        assert endpoint.write(payload)
        assert got.wait_for(len(payload)) == payload
        assert got.chunks < 100
        endpoint._drop()  # connection reset by the device
        assert endpoint.wait_for_driver(5)
        assert wait_until(lambda: link.health().reconnects == 1 and link.health().healthy)
        assert endpoint.write(b"again")
        assert got.wait_for(len(payload) + 5).endswith(b"again")
        assert link.health().reconnects >= 1
    finally:
        link.stop()
        endpoint.close()


def test_pty_endpoint_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(FileExistsError):
        PtyEndpoint(precious)
    assert precious.read_text() == "keep me"
