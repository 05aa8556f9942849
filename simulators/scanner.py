"""A simulated serial barcode scanner that sends what a real one sends.

Each read goes out as ``prefix + AIM ID + data + suffix`` with GS (0x1D) separators in GS1
element strings, like a Honeywell or Zebra scanner in USB-CDC mode, on a pty (optionally
behind a symlink) or a TCP port. Codes come from a list, a file, or
:func:`generate_items` (valid GTIN + expiry + batch + serial element strings). Faults,
each with a per-read rate and deterministic from the seed:

- ``duplicate``: the same read sent again at once (a re-read; one scan for the driver);
- ``overlong``: a terminated line of printable junk longer than ``max_line_length``;
- ``garbage``: a burst of line noise (control and non-ASCII bytes) ending in the suffix;
- ``truncated``: the start of the next read, cut short, its terminator lost.

Faults go out right after a read, in that order, so each shows in its own driver counter
(``duplicates_suppressed``, ``overlong_discarded``, ``garbage_lines``,
``partial_discarded``). The next read follows a fragment after the rate's interval: a
driver recovers it from its AIM ID, the prefix, or (without either) its partial-line
timeout. Nothing is printed; :attr:`SimulatedScanner.url` (or ``on_ready`` of
:func:`run`) says where the device is.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import random
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

from simulators.serial_endpoint import PtyEndpoint, SerialEndpoint, TcpEndpoint

GS: Final = "\x1d"
SUFFIXES: Final[dict[str, bytes]] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}
# GS1 example company prefixes (GS1 Global Office, GS1 US, GS1 Germany, GS1 UK).
COMPANY_PREFIXES: Final = ("9506000", "0614141", "4012345", "5012345")
NOISE_BYTES: Final = bytes(
    b for b in range(256) if (b < 0x20 and b not in (0x0A, 0x0D, 0x1D)) or b >= 0x7F
)
"""Bytes no scanner sends: control characters (not CR, LF, GS) and non-ASCII."""
_JUNK_CHARS: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SERIAL_CHARS: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_WRITE_BATCH: Final = 65536
_TCP_SETTLE_S: Final = 0.2  # pyserial discards input while it opens a socket:// port
_UNSEEN_S: Final = 0.5


def gs1_check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit for ``digits`` (GTIN, SSCC… without their check digit)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def generate_items(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct valid GS1 element strings: (01) GTIN (17) (10) batch GS (21) serial.

    Deterministic from ``seed``; every item has its own serial, a few dozen products share
    the GTINs (as on a real inbound pallet mix).
    """
    rng = random.Random(seed)
    gtins = []
    for _ in range(max(1, min(count, 40))):
        body = rng.choice(COMPANY_PREFIXES) + f"{rng.randrange(100000):05d}"
        gtins.append("0" + body + gs1_check_digit(body))
    items = []
    for index in range(count):
        expiry = f"{rng.randrange(26, 31):02d}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        batch = f"L{rng.randrange(10000):04d}"
        tag = "".join(rng.choice(_SERIAL_CHARS) for _ in range(4))
        serial = f"{tag}{index:07d}"
        items.append(f"01{rng.choice(gtins)}17{expiry}10{batch}{GS}21{serial}")
    return items


def load_codes(path: str | Path) -> list[str]:
    """Codes from a text file, one per line; blank lines and ``#`` comments skipped.

    GS separators may be written literally, as ``\\x1d`` or as ``<GS>``.
    """
    codes = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        code = line.strip().replace("\\x1d", GS).replace("\\x1D", GS).replace("<GS>", GS)
        if code and not code.startswith("#"):
            codes.append(code)
    return codes


def with_aim(code: str) -> str:
    """``code`` with the AIM symbology identifier a scanner would put in front of it.

    Kept if present; 8 digits ``]E4`` (EAN-8); 12/13 digits ``]E0`` (UPC-A goes out as 13);
    14 digits ``]I1`` (ITF-14); other GS1 element strings ``]d2`` (GS1 DataMatrix);
    anything else (a Digital Link, an EPC URI) ``]Q1`` (QR Code).
    """
    if code.startswith("]"):
        return code
    if code.isdigit() and len(code) in (8, 12, 13, 14):
        if len(code) == 8:
            return "]E4" + code
        return "]I1" + code if len(code) == 14 else "]E0" + code.zfill(13)
    if code[:2].isdigit():
        return "]d2" + code
    return "]Q1" + code


def without_aim(code: str) -> str:
    """``code`` as a scanner with AIM IDs turned off sends it."""
    if len(code) >= 3 and code[0] == "]" and code[1].isalpha() and code[2].isalnum():
        return code[3:]
    return code


@dataclass(frozen=True, slots=True)
class ScannerFaults:
    """Per-read probabilities (0–1) of each fault."""

    garbage: float = 0.0
    truncated: float = 0.0
    duplicate: float = 0.0
    overlong: float = 0.0

    def __post_init__(self) -> None:
        for name, rate in asdict(self).items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {name} must be between 0 and 1, got {rate}")


@dataclass(slots=True)
class ScannerStats:
    """What the simulator sent: reads, and each fault it injected."""

    reads: int = 0
    duplicates: int = 0
    garbage: int = 0
    truncated: int = 0
    overlong: int = 0
    bytes_sent: int = 0
    write_failed: bool = False


class SimulatedScanner:
    """Sends codes to ``endpoint`` at ``rate`` reads/s (None: as fast as the line takes).

    Sends ``count`` reads (default: each code once; codes cycle if ``count`` is larger),
    or cycles forever with ``repeat``, until :meth:`stop` or ``duration`` seconds.
    With ``wait_for_reader`` it first waits until a driver has the port open (pyserial
    discards what arrived before). ``stop`` may be shared with the caller. Start it once.
    """

    def __init__(
        self,
        endpoint: SerialEndpoint,
        codes: Sequence[str],
        *,
        rate: float | None = None,
        suffix: str = "CR",
        prefix: str = "",
        aim: bool = True,
        faults: ScannerFaults | None = None,
        seed: int = 0,
        max_line_length: int = 512,
        count: int | None = None,
        repeat: bool = False,
        duration: float | None = None,
        wait_for_reader: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        if not codes:
            raise ValueError("no codes to send")
        if suffix not in SUFFIXES:
            raise ValueError(f"suffix must be one of {', '.join(SUFFIXES)}, got {suffix!r}")
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0 (0 or None: as fast as possible)")
        self.endpoint = endpoint
        self.codes = list(codes)
        self.rate = rate or None
        self.suffix = SUFFIXES[suffix]
        self.prefix = prefix.encode("latin-1")
        self.aim = aim
        self.faults = faults or ScannerFaults()
        self.max_line_length = max_line_length
        self.count = None if repeat else (len(self.codes) if count is None else count)
        self.duration = duration
        self.wait_for_reader = wait_for_reader
        self.stats = ScannerStats()
        self._rng = random.Random(seed)
        self._stop = stop or threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """What a driver opens."""
        return self.endpoint.url

    def encode(self, code: str) -> bytes:
        """The bytes a scanner sends for one read of ``code``."""
        text = with_aim(code) if self.aim else without_aim(code)
        return self.prefix + text.encode("latin-1") + self.suffix

    def start(self) -> SimulatedScanner:
        """Send in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="sim-scanner", daemon=True)
            self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every read is sent (True) or ``timeout`` passes (False)."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop sending (the endpoint stays open; close it to unplug)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run(self) -> ScannerStats:
        """Send in the calling thread until done, stopped or out of time."""
        try:
            if self.wait_for_reader and not wait_for_reader(self.endpoint, self._stop):
                return self.stats
            if self.rate is None:
                self._send_fast()
            else:
                self._send_paced(self.rate)
        finally:
            self._done.set()
        return self.stats

    def _reads(self) -> Iterable[int]:
        return range(self.count) if self.count is not None else itertools.count()

    def _deadline(self) -> float:
        return float("inf") if self.duration is None else time.monotonic() + self.duration

    def _send_fast(self) -> None:
        deadline = self._deadline()
        batch = bytearray()
        for index in self._reads():
            batch += self._read_with_faults(index)
            if len(batch) >= _WRITE_BATCH:
                if not self._write(bytes(batch)):
                    return
                batch.clear()
                if self._stop.is_set() or time.monotonic() >= deadline:
                    return
        if batch:
            self._write(bytes(batch))

    def _send_paced(self, rate: float) -> None:
        start = time.monotonic()
        deadline = self._deadline()
        for index in self._reads():
            delay = start + index / rate - time.monotonic()
            if (delay > 0 and self._stop.wait(delay)) or self._stop.is_set():
                return
            if time.monotonic() >= deadline or not self._write(self._read_with_faults(index)):
                return

    def _read_with_faults(self, index: int) -> bytes:
        """One read plus the faults the dice give it, as bytes."""
        rng, faults, stats = self._rng, self.faults, self.stats
        line = self.encode(self.codes[index % len(self.codes)])
        out = bytearray(line)
        stats.reads += 1
        if faults.duplicate and rng.random() < faults.duplicate:
            out += line
            stats.duplicates += 1
        if faults.overlong and rng.random() < faults.overlong:
            size = self.max_line_length + rng.randint(1, 64)
            out += "".join(rng.choice(_JUNK_CHARS) for _ in range(size)).encode() + self.suffix
            stats.overlong += 1
        if faults.garbage and rng.random() < faults.garbage:
            noise = bytes(rng.choice(NOISE_BYTES) for _ in range(rng.randint(1, 24)))
            out += noise + self.suffix
            stats.garbage += 1
        if faults.truncated and rng.random() < faults.truncated:
            following = self.encode(self.codes[(index + 1) % len(self.codes)])
            body = following[: -len(self.suffix)]
            out += body[: rng.randint(1, max(1, len(body) - 1))]
            stats.truncated += 1
        return bytes(out)

    def _write(self, data: bytes) -> bool:
        if not self.endpoint.write(data):
            self.stats.write_failed = True
            return False
        self.stats.bytes_sent += len(data)
        return True


def wait_for_reader(endpoint: SerialEndpoint, stop: threading.Event, poll_s: float = 0.005) -> bool:
    """Block until a driver has ``endpoint`` open; False if stopped or the endpoint closed.

    A pty gets one empty line (CR) and is ready once that line, having been seen in the
    tty's input queue, has left it: the driver read it, or pyserial flushed it while
    opening the port (what is sent next is then safe). If the line is never seen queued
    within half a second, a driver already reading took it. A TCP endpoint is ready a
    moment after the driver connects. Other endpoints are assumed ready.
    """
    if isinstance(endpoint, TcpEndpoint):
        while not stop.is_set():
            if endpoint.wait_for_driver(0.1):
                return not stop.wait(_TCP_SETTLE_S)
        return False
    if not isinstance(endpoint, PtyEndpoint):
        return True
    try:
        probe = os.open(endpoint.slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not endpoint.write(b"\r"):
            return False
        # The kernel moves written bytes into the input queue asynchronously: a queue
        # found empty right after the write does not yet mean anybody read it.
        seen = False
        unseen_until = time.monotonic() + _UNSEEN_S
        while not stop.is_set():
            try:
                queued = struct.unpack("i", fcntl.ioctl(probe, termios.FIONREAD, b"\0" * 4))[0]
            except OSError:
                return False  # the endpoint was closed
            if queued:
                seen = True
            elif seen or time.monotonic() > unseen_until:
                return True
            stop.wait(poll_s)
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(probe)


def run(
    *,
    transport: Literal["pty", "tcp"] = "pty",
    link: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    codes: Sequence[str] | None = None,
    codes_file: str | Path | None = None,
    generate: int = 100,
    rate: float | None = 10.0,
    suffix: str = "CR",
    prefix: str = "",
    aim: bool = True,
    faults: ScannerFaults | None = None,
    seed: int = 0,
    count: int | None = None,
    repeat: bool = False,
    duration: float | None = None,
    max_line_length: int = 512,
    hold_open: bool = True,
    on_ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> ScannerStats:
    """Serve a simulated scanner until it has sent everything (and, with ``hold_open``,
    until ``stop`` is set or ``duration`` ends; forever if neither is given).

    Codes: ``codes``, else ``codes_file`` (see :func:`load_codes`), else ``generate``
    items from :func:`generate_items` with ``seed``. ``on_ready(url)`` is called once the
    device exists, before a driver connects; the endpoint is closed on return.
    """
    if codes is None:
        codes = load_codes(codes_file) if codes_file is not None else generate_items(generate, seed)
    stop = stop or threading.Event()
    endpoint: SerialEndpoint = PtyEndpoint(link) if transport == "pty" else TcpEndpoint(host, port)
    started = time.monotonic()
    try:
        scanner = SimulatedScanner(
            endpoint,
            codes,
            rate=rate,
            suffix=suffix,
            prefix=prefix,
            aim=aim,
            faults=faults,
            seed=seed,
            max_line_length=max_line_length,
            count=count,
            repeat=repeat,
            duration=duration,
            stop=stop,
        )
        if on_ready is not None:
            on_ready(endpoint.url)
        scanner.run()
        if hold_open:
            remaining = None if duration is None else duration - (time.monotonic() - started)
            if remaining is None or remaining > 0:
                stop.wait(remaining)
        return scanner.stats
    finally:
        endpoint.close()
