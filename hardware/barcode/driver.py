"""The serial barcode scanner driver (``type: serial_scanner``).

Reads in bulk through :class:`~hardware.serial_link.SerialLink` (which reconnects by
itself when the scanner is unplugged), decodes chunks with :class:`ScanDecoder`, and
delivers each scan to an ``on_scan`` callback or, without one, to a bounded queue read
with :meth:`SerialScanner.get`. Bad input is counted in ``health().counters`` and logged
once per burst; nothing a scanner sends can stop the reader thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hardware.backoff import Backoff
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.decoder import ScanDecoder
from hardware.barcode.events import ScanEvent, ScanQueue
from hardware.base import Device
from hardware.health import BurstLogger, Counters, DeviceHealth
from hardware.registry import DeviceKind, register_driver
from hardware.serial_link import SerialLink

log = logging.getLogger(__name__)

_SAMPLE_BYTES = 40

_DISCARD_MESSAGES = {
    "overlong_discarded": "line longer than max_line_length discarded",
    "garbage_lines": "line with non-printable or non-ASCII bytes discarded (line noise?)",
    "partial_discarded": "partial read without terminator discarded",
    "missing_prefix": "line without the configured prefix discarded",
}


class SerialScanner(Device):
    """A barcode scanner in serial / USB-CDC mode."""

    def __init__(
        self,
        config: SerialScannerConfig,
        on_scan: Callable[[ScanEvent], None] | None = None,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        """``on_scan`` runs on the reader thread and should return quickly; without it,
        scans wait in a queue of ``config.queue_size`` for :meth:`get`."""
        self.name = config.name
        self.config = config
        self._on_scan = on_scan
        self._burst = BurstLogger(log)
        self._counters = Counters()
        self._queue = None if on_scan is not None else ScanQueue(config.queue_size, self._dropped)
        self._decoder = ScanDecoder(config, on_discard=self._discarded)
        self._link = SerialLink(
            config.name,
            config.port,
            self._on_data,
            baudrate=config.baudrate,
            on_open=self._on_open,
            backoff=backoff,
        )

    @property
    def url(self) -> str:
        """The port this driver opens."""
        return self.config.port

    def start(self) -> None:
        """Start reading; connecting and reconnecting happen in the background."""
        self._link.start()

    def stop(self) -> None:
        """Stop reading and close the port."""
        self._link.stop()

    def wait_healthy(self, timeout: float) -> bool:
        """Block until the port is open (True) or ``timeout`` passes (False)."""
        return self._link.wait_healthy(timeout)

    def health(self) -> DeviceHealth:
        """Link state plus every counter: lines, scans, invalid_scans, overlong_discarded,
        garbage_lines, partial_discarded, duplicates_suppressed, queue_dropped, bytes_in…"""
        link = self._link.health()
        counters = dict(link.counters)
        counters.update(self._decoder.counters())
        for name in ("bytes_in", "disconnects"):
            counters.setdefault(name, 0)
        for name in ("queue_dropped", "callback_errors", "internal_errors"):
            counters[name] = self._counters.get(name)
        return DeviceHealth(self.name, link.state, counters, link.last_error, link.reconnects)

    def get(self, timeout: float | None = None) -> ScanEvent | None:
        """The next scan, waiting up to ``timeout`` seconds; None if none came.

        Only without an ``on_scan`` callback (scans then go to the callback instead).
        """
        if self._queue is None:
            raise RuntimeError(f"{self.name}: scans go to on_scan; there is no queue to get from")
        return self._queue.get(timeout)

    def _on_open(self, _link: SerialLink) -> None:
        # A partial line from before the device went away must not prefix the next read.
        self._decoder.reset_stream()

    def _on_data(self, chunk: bytes) -> None:
        # Runs on the link's reader thread: it must never raise, or the thread would
        # treat the error as a vanished device (or die).
        try:
            events = self._decoder.feed(chunk, time.monotonic(), time.time())
        except Exception:
            self._counters.add("internal_errors")
            if self._burst.warning("internal", "%s: error decoding scanner data", self.name):
                log.debug("%s: decoder error", self.name, exc_info=True)
            return
        for event in events:
            if not event.valid:
                self._burst.warning(
                    "invalid_scan", "%s: invalid scan %r: %s", self.name, event.raw, event.error
                )
            self._deliver(event)

    def _deliver(self, event: ScanEvent) -> None:
        if self._queue is not None:
            self._queue.put(event)
            return
        assert self._on_scan is not None
        try:
            self._on_scan(event)
        except Exception:
            self._counters.add("callback_errors")
            self._burst.warning("callback", "%s: on_scan callback raised", self.name)
            log.debug("%s: on_scan callback raised", self.name, exc_info=True)

    def _dropped(self, event: ScanEvent) -> None:
        self._counters.add("queue_dropped")
        self._burst.warning(
            "queue_dropped", "%s: scan queue full, dropped oldest scan %r", self.name, event.raw
        )

    def _discarded(self, kind: str, data: bytes) -> None:
        sample = data[:_SAMPLE_BYTES]
        more = "…" if len(data) > _SAMPLE_BYTES else ""
        self._burst.warning(
            kind, "%s: %s: %r%s", self.name, _DISCARD_MESSAGES.get(kind, kind), sample, more
        )


@register_driver(DeviceKind.BARCODE, SerialScannerConfig)
def build_serial_scanner(config: SerialScannerConfig) -> SerialScanner:
    """Build a :class:`SerialScanner` from its validated config (scans go to its queue)."""
    return SerialScanner(config)
