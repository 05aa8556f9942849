"""Barcode scanner: framing and ID normalisation on one core, and end to end through a pty.

Every figure is a rate in lines (scans) per second beside the physical limit of the line
measured in the same units: a 115,200-baud 8N1 line carries 11,520 bytes/s, so its line
rate is 11,520 ÷ the mean bytes per read of the stream used. The streams are generated
GS1 DataMatrix reads (AIM ``]d2``, GTIN + expiry + batch + GS + serial, CR), each item
with its own serial as at a real gate, so ID normalisation sees mostly distinct codes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bench.report import Figure, print_figures
from gatewire.identity import ParseOutcome, clear_parse_cache, parse_item_id
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.decoder import ScanDecoder
from hardware.barcode.driver import SerialScanner
from hardware.barcode.events import ScanEvent
from hardware.barcode.framer import LineFramer
from simulators.scanner import SimulatedScanner, generate_items, with_aim
from simulators.serial_endpoint import PtyEndpoint

LINE_BYTES_PER_S = 115_200 / 10  # 8N1: 10 bits on the wire per byte
CHUNK = 4096  # what a USB-CDC or pty read typically returns under load
FRAMING_LINES = 200_000
PARSE_LINES = 4_000  # distinct codes: each one is a cold parse
HOT_CODES = 200  # a working set small enough for the parse cache
E2E_DISTINCT = 4_000
E2E_HOT = 40_000
REPEATS = 3
TARGET_CORE = "≥ 100,000 lines/s (100× line rate)"
TARGET_E2E = "≥ 10,000 scans/s"


def _config(**overrides: object) -> SerialScannerConfig:
    fields: dict[str, object] = {"type": "serial_scanner", "port": "/dev/null", "require_aim": True}
    fields.update(overrides)
    return SerialScannerConfig.model_validate(fields)


def _stream(codes: list[str]) -> tuple[list[bytes], float]:
    """The reads as CHUNK-sized pieces cut anywhere, and the line rate of this stream."""
    data = b"".join(with_aim(code).encode() + b"\r" for code in codes)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    return chunks, LINE_BYTES_PER_S / (len(data) / len(codes))


def _rate(lines: int, run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best of ``repeats`` runs: the machine is shared, the best run is the least disturbed."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return lines / best


def _no_parse(raw: str) -> ParseOutcome:
    return ParseOutcome(None, "not parsed", raw)


def measure_core() -> list[Figure]:
    """Framing alone, framing + repeat filter, and framing + normalisation, in-process."""
    distinct = generate_items(FRAMING_LINES, seed=1)
    chunks, line_rate = _stream(distinct)

    def frame() -> None:
        framer = LineFramer(b"\r", b"", 512)
        for chunk in chunks:
            framer.feed(chunk)

    def decode_without_parse() -> None:
        decoder = ScanDecoder(_config(), parse=_no_parse)
        for chunk in chunks:
            decoder.feed(chunk, 0.0, 0.0)

    parse_chunks, parse_line_rate = _stream(distinct[:PARSE_LINES])

    def decode_distinct() -> None:
        clear_parse_cache()
        decoder = ScanDecoder(_config())
        for chunk in parse_chunks:
            decoder.feed(chunk, 0.0, 0.0)

    hot = distinct[:HOT_CODES] * (PARSE_LINES * 10 // HOT_CODES)
    hot_chunks, hot_line_rate = _stream(hot)
    for code in hot[:HOT_CODES]:
        parse_item_id(with_aim(code))  # warm the cache

    def decode_hot() -> None:
        decoder = ScanDecoder(_config(dedup_window_s=0))
        for chunk in hot_chunks:
            decoder.feed(chunk, 0.0, 0.0)

    parse_only = distinct[PARSE_LINES : 2 * PARSE_LINES]
    for code in distinct[-1000:]:
        parse_item_id(with_aim(code))  # warm up the parsers (imports, tables, caches)

    def parse_cold() -> None:
        clear_parse_cache()
        for code in parse_only:
            parse_item_id(with_aim(code))

    line = "115,200-baud line rate"
    return [
        Figure("framing alone", _rate(FRAMING_LINES, frame), "lines/s", line, line_rate),
        Figure(
            "framing + repeat filter + events (no ID parse)",
            _rate(FRAMING_LINES, decode_without_parse),
            "lines/s",
            line,
            line_rate,
        ),
        Figure(
            "framing + ID normalisation, distinct codes",
            _rate(PARSE_LINES, decode_distinct),
            "lines/s",
            line,
            parse_line_rate,
            target=TARGET_CORE,
        ),
        Figure(
            "parse_item_id alone, distinct codes (cold)",
            _rate(PARSE_LINES, parse_cold),
            "codes/s",
            line,
            parse_line_rate,
        ),
        Figure(
            f"framing + ID normalisation, {HOT_CODES} codes repeated (parse cache hits)",
            _rate(len(hot), decode_hot),
            "lines/s",
            line,
            hot_line_rate,
        ),
    ]


def measure_end_to_end(codes: list[str], *, count: int) -> float:
    """Scans/s from the simulator writing into a pty to on_scan, as fast as it goes."""
    endpoint = PtyEndpoint()
    delivered = 0
    done = threading.Event()

    def on_scan(_event: ScanEvent) -> None:
        nonlocal delivered
        delivered += 1
        if delivered == count:
            done.set()

    # No partial-line timeout: a simulator writing flat out can stall mid-read on a busy
    # machine, which a real scanner never does; this measures transport and decoding.
    config = _config(port=endpoint.url, dedup_window_s=0, partial_line_timeout_s=0)
    scanner = SerialScanner(config, on_scan)
    try:
        scanner.start()
        if not scanner.wait_healthy(5):
            raise RuntimeError("scanner did not open the pty")
        sim = SimulatedScanner(endpoint, codes, count=count, rate=None, wait_for_reader=False)
        started = time.perf_counter()
        sim.start()
        if not done.wait(120):
            raise RuntimeError(f"only {delivered} of {count} scans arrived")
        return count / (time.perf_counter() - started)
    finally:
        scanner.stop()
        endpoint.close()


def run() -> list[Figure]:
    """All figures of this benchmark."""
    figures = measure_core()
    distinct = generate_items(E2E_DISTINCT, seed=2)
    _, line_rate = _stream(distinct)
    clear_parse_cache()
    figures.append(
        Figure(
            "end to end through a pty, distinct codes",
            measure_end_to_end(distinct, count=E2E_DISTINCT),
            "scans/s",
            "115,200-baud line rate",
            line_rate,
            target=TARGET_E2E,
        )
    )
    hot = generate_items(HOT_CODES, seed=3)
    for code in hot:
        parse_item_id(with_aim(code))
    figures.append(
        Figure(
            f"end to end through a pty, {HOT_CODES} codes cycling (parse cache hits)",
            measure_end_to_end(hot, count=E2E_HOT),
            "scans/s",
            "115,200-baud line rate",
            line_rate,
            target=TARGET_E2E,
        )
    )
    return figures


if __name__ == "__main__":
    print_figures(__doc__.splitlines()[0] if __doc__ else "barcode", run())
