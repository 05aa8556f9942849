"""SerialScanner end to end: the simulator on real ptys and TCP, faults, unplug/replug."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware.backoff import Backoff
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.driver import SerialScanner
from hardware.barcode.events import ScanEvent
from hardware.health import DeviceState
from simulators.scanner import ScannerFaults, SimulatedScanner, generate_items
from simulators.serial_endpoint import PtyEndpoint, TcpEndpoint
from tests.support.waiting import wait_until

FAST = Backoff(initial=0.02, maximum=0.1)


def config(port: str, **overrides: object) -> SerialScannerConfig:
    # The simulator blasts reads in 64 KiB writes; on a busy machine a write can stall
    # mid-read for longer than the partial-line timeout, which real scanners never do.
    fields: dict[str, object] = {
        "type": "serial_scanner",
        "port": port,
        "require_aim": True,
        "partial_line_timeout_s": 0,
    }
    fields.update(overrides)
    return SerialScannerConfig.model_validate(fields)


def drain(scanner: SerialScanner, expected: int, timeout: float = 10.0) -> list[ScanEvent]:
    events: list[ScanEvent] = []
    deadline = time.monotonic() + timeout
    while len(events) < expected and time.monotonic() < deadline:
        event = scanner.get(0.1)
        if event is not None:
            events.append(event)
    extra = scanner.get(0.1)  # nothing more may come
    return events + ([extra] if extra is not None else [])


@pytest.fixture
def pty() -> Iterator[PtyEndpoint]:
    endpoint = PtyEndpoint()
    yield endpoint
    endpoint.close()


def test_every_item_arrives_once_and_each_injected_fault_is_counted(pty: PtyEndpoint) -> None:
    items = generate_items(300, seed=7)
    faults = ScannerFaults(garbage=0.1, truncated=0.1, duplicate=0.1, overlong=0.1)
    sim = SimulatedScanner(pty, items, faults=faults, seed=7).start()  # waits for the driver
    with SerialScanner(config(pty.url), backoff=FAST) as scanner:
        events = drain(scanner, len(items))
        assert sim.wait(5)
        health = scanner.health()
    assert [e.raw for e in events] == ["]d2" + item for item in items]
    assert all(e.valid for e in events)
    counters = health.counters
    assert counters["duplicates_suppressed"] == sim.stats.duplicates > 0
    assert counters["overlong_discarded"] == sim.stats.overlong > 0
    assert counters["garbage_lines"] == sim.stats.garbage > 0
    assert counters["partial_discarded"] == sim.stats.truncated > 0
    assert counters["scans"] == counters["valid_scans"] == len(items)
    assert counters["invalid_scans"] == 0
    assert counters["bytes_in"] > 0


def test_invalid_read_reaches_the_consumer_with_its_error(pty: PtyEndpoint) -> None:
    with SerialScanner(config(pty.url), backoff=FAST) as scanner:
        assert scanner.wait_healthy(5)
        pty.write(b"]C10109506000134353\r]d20109506000134352\x1d21X\r")
        events = drain(scanner, 2)
    assert [e.valid for e in events] == [False, True]
    assert events[0].error is not None
    assert "check digit" in events[0].error
    assert events[0].item is None


def test_socket_url_carries_scans_from_a_tcp_simulator() -> None:
    endpoint = TcpEndpoint()
    items = generate_items(50, seed=3)
    try:
        sim = SimulatedScanner(endpoint, items, suffix="CRLF", prefix="\x02", seed=3).start()
        cfg = config(endpoint.url, suffix="CRLF", prefix="\x02")
        with SerialScanner(cfg, backoff=FAST) as scanner:
            events = drain(scanner, len(items))
            assert sim.wait(5)
        assert [e.item.serial for e in events if e.item] == [i.split("\x1d21")[1] for i in items]
    finally:
        endpoint.close()


def test_unplugged_scanner_reports_unhealthy_and_resumes_on_replug(tmp_path: Path) -> None:
    link = tmp_path / "scanner"
    items = generate_items(40, seed=11)
    first = PtyEndpoint(link)
    scanner = SerialScanner(config(str(link)), backoff=FAST)
    scanner.start()
    try:
        SimulatedScanner(first, items[:20], seed=1).run()  # waits for the driver, sends, returns
        before = drain(scanner, 20)
        first.close()  # USB pulled
        assert wait_until(lambda: scanner.health().state is DeviceState.UNHEALTHY)
        second = PtyEndpoint(link)  # plugged back in at the same path
        try:
            SimulatedScanner(second, items[20:], seed=2).run()
            after = drain(scanner, 20)
            health = scanner.health()  # before the close below: the driver sees it at once
        finally:
            second.close()
    finally:
        scanner.stop()
    assert [e.raw[3:] for e in before + after] == items
    assert health.reconnects == 1
    assert health.counters["disconnects"] == 1


def test_partial_read_cut_by_an_unplug_does_not_prefix_the_next_read(tmp_path: Path) -> None:
    link = tmp_path / "scanner"
    first = PtyEndpoint(link)
    cfg = config(str(link), require_aim=False, partial_line_timeout_s=0)
    with SerialScanner(cfg, backoff=FAST) as scanner:
        assert scanner.wait_healthy(5)
        first.write(b"01095060001")
        assert wait_until(lambda: scanner.health().counters["bytes_in"] == 11)
        first.close()
        assert wait_until(lambda: not scanner.health().healthy)
        second = PtyEndpoint(link)
        try:
            assert scanner.wait_healthy(5)
            second.write(b"0109506000134352\r")
            [event] = drain(scanner, 1)
        finally:
            second.close()
        assert event.raw == "0109506000134352"
        assert scanner.health().counters["partial_discarded"] == 1


def test_callback_gets_scans_and_a_raising_callback_does_not_stop_reading(
    pty: PtyEndpoint,
) -> None:
    got: list[ScanEvent] = []

    def on_scan(event: ScanEvent) -> None:
        got.append(event)
        if len(got) == 1:
            raise RuntimeError("consumer bug")

    items = generate_items(5, seed=5)
    with SerialScanner(config(pty.url), on_scan, backoff=FAST) as scanner:
        assert scanner.wait_healthy(5)
        SimulatedScanner(pty, items, wait_for_reader=False).run()
        assert wait_until(lambda: len(got) == 5)
        assert scanner.health().counters["callback_errors"] == 1
        with pytest.raises(RuntimeError, match="on_scan"):
            scanner.get(0)


def test_full_queue_drops_the_oldest_scan_and_counts_it(pty: PtyEndpoint) -> None:
    items = generate_items(10, seed=9)
    with SerialScanner(config(pty.url, queue_size=4), backoff=FAST) as scanner:
        assert scanner.wait_healthy(5)
        SimulatedScanner(pty, items, wait_for_reader=False).run()
        assert wait_until(lambda: scanner.health().counters["scans"] == 10)
        kept = [scanner.get(0) for _ in range(4)]
        assert scanner.health().counters["queue_dropped"] == 6
    assert [e.raw[3:] for e in kept if e] == items[6:]


def test_burst_of_line_noise_is_logged_once(
    pty: PtyEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    with SerialScanner(config(pty.url), backoff=FAST) as scanner:
        assert scanner.wait_healthy(5)
        with caplog.at_level(logging.WARNING, logger="hardware.barcode.driver"):
            pty.write(b"\x00\xff\x13\r" * 200)
            assert wait_until(lambda: scanner.health().counters["garbage_lines"] == 200)
    noise_logs = [r for r in caplog.records if "non-printable" in r.getMessage()]
    assert len(noise_logs) == 1


def test_random_bytes_on_the_line_never_crash_the_reader_or_yield_a_scan(
    pty: PtyEndpoint,
) -> None:
    noise = random.Random(1).randbytes(200_000).replace(b"]", b"")
    with SerialScanner(config(pty.url), backoff=FAST) as scanner:
        assert scanner.wait_healthy(5)
        pty.write(noise)
        pty.write(b"\r]d20109506000134352\x1d21AFTER\r")
        event = scanner.get(5)
        while event is not None and not event.valid:
            event = scanner.get(1)
        health = scanner.health()
    assert event is not None
    assert event.raw == "]d20109506000134352\x1d21AFTER"
    assert health.healthy
    assert health.counters["internal_errors"] == 0
    assert health.counters["valid_scans"] == 1
