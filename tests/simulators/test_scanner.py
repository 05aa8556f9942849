"""The simulated scanner: the bytes it sends, its generated items, faults and run()."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gatewire.identity import parse_item_id
from hardware.backoff import Backoff
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.driver import SerialScanner
from simulators.scanner import (
    ScannerFaults,
    SimulatedScanner,
    generate_items,
    gs1_check_digit,
    load_codes,
    run,
    wait_for_reader,
    with_aim,
    without_aim,
)
from simulators.serial_endpoint import PtyEndpoint, SerialEndpoint


class RecordingEndpoint(SerialEndpoint):
    """Keeps what the simulator writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def url(self) -> str:
        return "recording://"

    def write(self, data: bytes) -> bool:
        self.data += data
        return True

    def read(self, timeout: float) -> bytes:
        return b""

    def close(self) -> None:
        pass


def sent(codes: list[str], **options: object) -> bytes:
    endpoint = RecordingEndpoint()
    SimulatedScanner(endpoint, codes, **options).run()  # type: ignore[arg-type]
    return bytes(endpoint.data)


def test_gs1_check_digit_matches_published_gtins() -> None:
    assert gs1_check_digit("950600013435") == "2"
    assert gs1_check_digit("400638133393") == "1"
    assert gs1_check_digit("9638507") == "4"


def test_generated_items_are_valid_distinct_serialised_and_reproducible() -> None:
    items = generate_items(500, seed=4)
    assert len(set(items)) == 500
    assert items == generate_items(500, seed=4)
    assert items != generate_items(500, seed=5)
    keys = set()
    for item in items:
        outcome = parse_item_id(with_aim(item))
        assert outcome.item is not None, outcome.error
        assert None not in (outcome.item.serial, outcome.item.batch, outcome.item.expiry)
        keys.add(outcome.item.key)
    assert len(keys) == 500
    assert all("\x1d21" in item for item in items)  # GS ends the variable-length batch


@pytest.mark.parametrize(
    ("code", "aim"),
    [
        ("4006381333931", "]E0"),
        ("012345678905", "]E0"),
        ("96385074", "]E4"),
        ("04006381333931", "]I1"),
        ("0109506000134352\x1d21X", "]d2"),
        ("https://id.gs1.org/01/09506000134352/21/X", "]Q1"),
        ("]C10109506000134352", "]C1"),
    ],
)
def test_aim_identifier_follows_the_shape_of_the_code_and_parses(code: str, aim: str) -> None:
    prefixed = with_aim(code)
    assert prefixed.startswith(aim)
    assert parse_item_id(prefixed).ok


def test_without_aim_strips_only_an_aim_identifier() -> None:
    assert without_aim("]C10109506000134352") == "0109506000134352"
    assert without_aim("0109506000134352") == "0109506000134352"
    assert without_aim("]1x") == "]1x"


def test_read_goes_out_as_prefix_aim_data_suffix() -> None:
    assert sent(["0109506000134352"], suffix="CRLF", prefix="\x02", wait_for_reader=False) == (
        b"\x02]d20109506000134352\r\n"
    )
    assert sent(["]C10109506000134352"], aim=False, wait_for_reader=False) == (
        b"0109506000134352\r"
    )


def test_faults_are_deterministic_from_the_seed_and_counted() -> None:
    faults = ScannerFaults(garbage=0.3, truncated=0.3, duplicate=0.3, overlong=0.3)
    items = generate_items(50, seed=1)
    first = sent(items, faults=faults, seed=9, wait_for_reader=False)
    assert first == sent(items, faults=faults, seed=9, wait_for_reader=False)
    assert first != sent(items, faults=faults, seed=10, wait_for_reader=False)
    endpoint = RecordingEndpoint()
    sim = SimulatedScanner(endpoint, items, faults=faults, seed=9, wait_for_reader=False)
    stats = sim.run()
    assert stats.reads == 50
    assert min(stats.garbage, stats.truncated, stats.duplicates, stats.overlong) > 0
    assert stats.bytes_sent == len(endpoint.data)


def test_fault_rate_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="garbage"):
        ScannerFaults(garbage=1.5)


def test_count_cycles_the_codes_and_repeat_runs_until_the_duration_ends() -> None:
    assert sent(["96385074"], count=3, wait_for_reader=False) == b"]E496385074\r" * 3
    endpoint = RecordingEndpoint()
    sim = SimulatedScanner(endpoint, ["96385074"], repeat=True, duration=0.2, rate=100)
    sim.wait_for_reader = False
    started = time.monotonic()
    stats = sim.run()
    assert 0.15 < time.monotonic() - started < 1.0
    assert 10 <= stats.reads <= 25


def test_rate_paces_the_reads() -> None:
    endpoint = RecordingEndpoint()
    started = time.monotonic()
    SimulatedScanner(endpoint, ["96385074"] * 6, rate=50, wait_for_reader=False).run()
    assert 0.09 < time.monotonic() - started < 0.5  # 5 intervals of 20 ms


def test_codes_file_accepts_gs_as_escape_or_tag_and_skips_comments(tmp_path: Path) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("# inbound\n0109506000134352\\x1d21A\n\n0109506000134352<GS>21B\n")
    assert load_codes(path) == ["0109506000134352\x1d21A", "0109506000134352\x1d21B"]


def test_pty_simulator_waits_until_a_driver_has_opened_the_port() -> None:
    endpoint = PtyEndpoint()
    items = generate_items(30, seed=2)
    try:
        sim = SimulatedScanner(endpoint, items, rate=None).start()
        time.sleep(0.3)  # nobody listening yet: nothing may be sent
        assert sim.stats.bytes_sent == 0
        config = SerialScannerConfig(
            type="serial_scanner", port=endpoint.url, partial_line_timeout_s=0
        )
        with SerialScanner(config) as scanner:
            assert sim.wait(5)
            got = [scanner.get(2) for _ in items]
        assert [e.raw[3:] for e in got if e] == items
    finally:
        endpoint.close()


def test_wait_for_reader_gives_up_when_the_device_is_closed() -> None:
    endpoint = PtyEndpoint()
    closer = threading.Timer(0.1, endpoint.close)
    closer.start()
    assert wait_for_reader(endpoint, threading.Event()) is False
    closer.join()


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_run_serves_generated_items_until_stopped(transport: str, tmp_path: Path) -> None:
    urls: list[str] = []
    stop = threading.Event()
    result: list[object] = []
    link = tmp_path / "scanner" if transport == "pty" else None
    thread = threading.Thread(
        target=lambda: result.append(
            run(
                transport=transport,  # type: ignore[arg-type]
                link=link,
                generate=20,
                seed=6,
                rate=None,
                faults=ScannerFaults(duplicate=0.5),
                on_ready=urls.append,
                stop=stop,
            )
        )
    )
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not urls and time.monotonic() < deadline:
            time.sleep(0.01)
        if link is not None:
            assert urls == [str(link)]
        config = SerialScannerConfig(
            type="serial_scanner", port=urls[0], require_aim=True, partial_line_timeout_s=0
        )
        with SerialScanner(config, backoff=Backoff(0.02, 0.1)) as scanner:
            got = [scanner.get(3) for _ in range(20)]
            assert scanner.get(0.2) is None
    finally:
        stop.set()
        thread.join(5)
    assert [e.raw[3:] for e in got if e and e.valid] == generate_items(20, seed=6)
    assert not thread.is_alive()
    if link is not None:
        assert not link.exists()  # the endpoint was closed: the device is gone
