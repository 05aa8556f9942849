"""The ThingMagic Mercury reader driver: configure, stream an inventory, emit sightings.

On every (re)connect of the serial link the reader is initialised from scratch: stop any
inventory left running, Get Version (Boot Firmware if the bootloader answers), Set Region,
Set Protocol Gen2, the antenna search list, Set and Get Read Power, then a continuous
(streamed) inventory. Tag reads become :class:`~hardware.rfid.sightings.TagSighting`
objects, delivered to ``on_sighting`` and to a bounded queue read with :meth:`get`
(see :mod:`hardware.rfid.sightings` for when they are emitted).

Threads: the serial link's reader thread parses frames and folds tag reads; the driver's
own worker runs the command exchanges (which wait for replies that the reader thread
delivers), closes sighting windows on time and gives up on partial frames after the line
has been quiet for ``idle_flush_s``. ``on_sighting`` is called from either thread, one
call at a time and in emission order; keep it quick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Final

from hardware.backoff import Backoff
from hardware.base import Device
from hardware.health import BurstLogger, Counters, DeviceHealth, DeviceState
from hardware.registry import DeviceKind, register_driver
from hardware.rfid.commands import (
    Model,
    Opcode,
    ProtocolError,
    Status,
    VersionInfo,
    antenna_search_list,
    command,
    continuous_read_start,
    continuous_read_stop,
    decode_read_power,
    decode_region,
    decode_version,
    is_stop_reply,
    set_protocol_gen2,
    set_read_power,
    set_region,
    status_text,
)
from hardware.rfid.config import ThingMagicConfig
from hardware.rfid.frames import Frame, FrameParser
from hardware.rfid.records import decode_stream_reads
from hardware.rfid.sightings import SightingAggregator, SightingQueue, TagSighting
from hardware.serial_link import SerialLink

__all__ = ["ReaderError", "ThingMagicConfig", "ThingMagicReader", "build_thingmagic_reader"]

log = logging.getLogger(__name__)

BOOT_TIMEOUT_S: Final = 3.0
STOP_TIMEOUT_S: Final = 0.5
_MODEL_NAMES: Final = {"m6e": Model.M6E, "m6e_nano": Model.M6E_NANO, "m7e": Model.M7E}
_MAX_TICK_S: Final = 0.05


class ReaderError(Exception):
    """A command the reader did not answer, or answered with an error status."""


class ThingMagicReader(Device):
    """Drives one reader: keeps it configured and streaming, and emits tag sightings."""

    def __init__(
        self,
        config: ThingMagicConfig,
        *,
        on_sighting: Callable[[TagSighting], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = config.name
        self.config = config
        self.on_sighting = on_sighting
        """Called with every sighting (from a driver thread); may be set after building."""
        self.counters = Counters()
        self._clock = clock
        self._burst = BurstLogger(log)
        self._parser = FrameParser()
        self._aggregator = SightingAggregator(config.window_s, emit_first=config.emit_first_read)
        self._queue = SightingQueue(config.queue_size) if config.queue_size else None
        self._lock = threading.Lock()  # parser, aggregator, pending command
        self._reply_ready = threading.Condition(self._lock)
        self._awaiting: int | None = None
        self._reply: Frame | None = None
        self._deliver_lock = threading.Lock()  # keeps deliveries in emission order
        self._last_rx = 0.0
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._streaming = threading.Event()
        self._worker: threading.Thread | None = None
        self._init_error: str | None = None
        self._version: VersionInfo | None = None
        self._tick_s = min(_MAX_TICK_S, config.window_s / 4, config.idle_flush_s / 2)
        self._link = SerialLink(
            config.name,
            config.port,
            self._on_data,
            baudrate=config.baudrate,
            on_open=self._on_open,
            backoff=Backoff(config.reconnect_initial_s, config.reconnect_max_s),
        )

    # --- public surface ---------------------------------------------------------------

    def start(self) -> None:
        """Open the port and keep the reader streaming (reconnects by itself)."""
        if self._worker is not None:
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name=f"rfid-{self.name}", daemon=True)
        self._worker.start()
        self._link.start()

    def stop(self) -> None:
        """Stop the inventory, close the port, and emit the final sightings still open."""
        self._stop.set()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(timeout=10)
        if self._streaming.is_set() and self._link.health().healthy:
            with suppress(ReaderError):
                self._transact(
                    Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_stop(), 1.0, while_stopping=True
                )
        self._streaming.clear()
        self._link.stop()
        with self._deliver_lock:
            with self._lock:
                closing = self._aggregator.close_all()
            self._deliver(closing)

    def health(self) -> DeviceHealth:
        """Link state and counters, plus whether the reader is initialised and streaming."""
        link = self._link.health()
        counters = {**link.counters, **self._parser.counters(), **self.counters.snapshot()}
        state, last_error = link.state, link.last_error
        if state is DeviceState.HEALTHY and not self._streaming.is_set():
            state = DeviceState.UNHEALTHY if self._init_error else DeviceState.CONNECTING
            last_error = self._init_error
        return DeviceHealth(self.name, state, counters, last_error, link.reconnects)

    def get(self, timeout: float | None = None) -> TagSighting | None:
        """The next sighting from the queue, waiting up to ``timeout`` s; None if none."""
        if self._queue is None:
            raise RuntimeError(f"{self.name}: the sighting queue is disabled (queue_size 0)")
        return self._queue.get(timeout)

    def wait_streaming(self, timeout: float) -> bool:
        """Block until the reader is initialised and streaming (True) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if self._streaming.wait(max(0.0, remaining)) and self._link.health().healthy:
                return True
            if remaining <= 0:
                return False
            time.sleep(min(remaining, self._tick_s))  # the flag is stale: the port is gone

    @property
    def version(self) -> VersionInfo | None:
        """The reader's version reply from the latest initialisation."""
        return self._version

    # --- serial link callbacks (reader thread) ------------------------------------------

    def _on_open(self, _link: SerialLink) -> None:
        with self._lock:
            self._parser.reset()
            self._streaming.clear()
        self._opened.set()  # the worker initialises: replies need this thread reading

    def _on_data(self, chunk: bytes) -> None:
        now = self._clock()
        with self._deliver_lock:
            with self._lock:
                self._last_rx = now
                emitted = self._handle(self._parsed(chunk), now)
            self._deliver(emitted)

    # --- frames and sightings -----------------------------------------------------------

    def _parsed(self, chunk: bytes | None) -> list[Frame]:
        """Frames from feeding ``chunk`` (None: flush); a burst of line noise logs once."""
        parser = self._parser
        before = parser.crc_errors + parser.truncated_frames, parser.discarded_bytes
        frames = parser.flush() if chunk is None else parser.feed(chunk)
        if (parser.crc_errors + parser.truncated_frames, parser.discarded_bytes) != before:
            self._burst.warning(
                "line_noise",
                "%s: corrupt input on the line (%d bad frames, %d bytes discarded so far)",
                self.name,
                parser.crc_errors + parser.truncated_frames,
                parser.discarded_bytes,
            )
        return frames

    def _handle(self, frames: Iterable[Frame], now: float) -> list[TagSighting]:
        """Route frames: tag reports to the aggregator, replies to the waiting command."""
        out: list[TagSighting] = []
        for frame in frames:
            if frame.opcode == self._awaiting:
                self._reply = frame
                self._awaiting = None
                self._reply_ready.notify_all()
            elif frame.opcode == Opcode.READ_TAG_MULTIPLE:
                out += self._tag_report(frame, now)
            else:
                self.counters.add("unexpected_frames")
                self._burst.warning(
                    "unexpected", "%s: unexpected frame opcode 0x%02X", self.name, frame.opcode
                )
        return out

    def _tag_report(self, frame: Frame, now: float) -> list[TagSighting]:
        if frame.status != Status.OK:
            if frame.status == Status.NO_TAGS_FOUND:
                self.counters.add("no_tag_reports")
            else:
                self.counters.add("reader_errors")
                self._burst.warning(
                    "reader_error",
                    "%s: reader reported %s while streaming",
                    self.name,
                    status_text(frame.status),
                )
            return []
        try:
            reads = decode_stream_reads(frame.data)
        except ProtocolError as exc:
            self.counters.add("bad_records")
            self._burst.warning("bad_record", "%s: bad tag record: %s", self.name, exc)
            return []
        out: list[TagSighting] = []
        for read in reads:
            out += self._aggregator.observe(read, now)
        self.counters.add("tag_reads", len(reads))
        return out

    def _deliver(self, sightings: list[TagSighting]) -> None:
        """Hand sightings to the queue and callback; caller holds ``_deliver_lock``."""
        for sighting in sightings:
            if sighting.final:
                self.counters.add("sightings")
                if not sighting.ok:
                    self.counters.add("invalid_sightings")
                    self._burst.warning(
                        "invalid_epc",
                        "%s: tag %s is not a valid item ID: %s",
                        self.name,
                        sighting.epc_hex,
                        sighting.outcome.error,
                    )
            if self._queue is not None and not self._queue.put(sighting):
                self.counters.add("sightings_dropped")
                self._burst.warning(
                    "queue_full", "%s: sighting queue full; dropped the oldest", self.name
                )
            callback = self.on_sighting
            if callback is not None:
                try:
                    callback(sighting)
                except Exception:  # a consumer's bug must not stop the reader
                    self.counters.add("callback_errors")
                    if self._burst.warning("callback", "%s: on_sighting raised", self.name):
                        log.exception("%s: on_sighting traceback", self.name)

    def _flush_if_idle(self, now: float) -> list[TagSighting]:
        """Give up on a partial frame once the line has been quiet; caller holds _lock."""
        if self._parser.pending and now - self._last_rx >= self.config.idle_flush_s:
            return self._handle(self._parsed(None), now)
        return []

    # --- worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        retry = Backoff(initial=0.5, maximum=10.0)
        retry_at: float | None = None
        while not self._stop.is_set():
            if self._opened.is_set() or (retry_at is not None and self._clock() >= retry_at):
                self._opened.clear()
                retry_at = None
                if self._initialise():
                    retry.reset()
                elif self._link.health().healthy:
                    retry_at = self._clock() + retry.next_delay()
            self._tick()
            self._stop.wait(self._tick_s)

    def _tick(self) -> None:
        if self._streaming.is_set() and not self._link.health().healthy:
            self._streaming.clear()  # the port vanished; on_open re-initialises
        now = self._clock()
        with self._deliver_lock:
            with self._lock:
                emitted = self._flush_if_idle(now) + self._aggregator.expire(now)
            self._deliver(emitted)

    def _initialise(self) -> bool:
        """Configure the reader and start streaming; False (reported) on any failure."""
        cfg = self.config
        self._streaming.clear()
        try:
            with suppress(ReaderError):  # an inventory left running by a previous session
                self._transact(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_stop(), STOP_TIMEOUT_S)
            version = decode_version(self._transact(Opcode.VERSION).data)
            if version.in_bootloader:
                self._transact(Opcode.BOOT_FIRMWARE, timeout=BOOT_TIMEOUT_S)
                version = decode_version(self._transact(Opcode.VERSION).data)
            self._version = version
            self._check_model(version)
            if not version.supports_gen2:
                raise ReaderError(f"{version.model_name} does not support Gen2")
            self._transact(Opcode.SET_REGION, set_region(cfg.region_code))
            region = decode_region(self._transact(Opcode.GET_REGION).data)
            self._transact(Opcode.SET_PROTOCOL, set_protocol_gen2())
            self._transact(Opcode.SET_ANTENNA, antenna_search_list(cfg.antennas))
            self._transact(Opcode.SET_READ_POWER, set_read_power(round(cfg.read_power_dbm * 100)))
            power = decode_read_power(self._transact(Opcode.GET_READ_POWER, b"\x00").data)
            self._transact(
                Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_start(cfg.on_time_ms, cfg.off_time_ms)
            )
        except (ReaderError, ProtocolError) as exc:
            self._init_error = f"initialising reader: {exc}"
            self.counters.add("init_failures")
            self._burst.warning("init", "%s: %s", self.name, self._init_error)
            return False
        self._init_error = None
        self.counters.add("initialisations")
        self._streaming.set()
        log.info(
            "%s: %s firmware %s, region %s, %.2f dBm, antennas %s: streaming",
            self.name,
            version.model_name,
            version.firmware,
            getattr(region, "name", region),
            power / 100,
            ",".join(map(str, cfg.antennas)),
        )
        return True

    def _check_model(self, version: VersionInfo) -> None:
        expected = _MODEL_NAMES.get(self.config.model)
        if expected is not None and version.model is not expected:
            self.counters.add("model_mismatch")
            self._burst.warning(
                "model",
                "%s: configured for %s but the reader is %s",
                self.name,
                expected.name,
                version.model_name,
            )

    def _transact(
        self,
        opcode: int,
        data: bytes = b"",
        timeout: float | None = None,
        *,
        while_stopping: bool = False,
    ) -> Frame:
        """Send one command and wait for its reply (same opcode); raise ReaderError.

        Gives up early when the driver is stopping, unless ``while_stopping``.
        """
        wait_s = self.config.command_timeout_s if timeout is None else timeout
        with self._lock:
            self._awaiting, self._reply = opcode, None
        if not self._link.write(command(opcode, data)):
            with self._lock:
                self._awaiting = None
            raise ReaderError(f"cannot send command 0x{opcode:02X}: port not open")
        deadline = self._clock() + wait_s
        while True:
            with self._lock:
                remaining = deadline - self._clock()
                if self._reply is None and remaining > 0:
                    self._reply_ready.wait(min(remaining, self._tick_s))
                reply, timed_out = self._reply, self._clock() >= deadline
                aborted = self._stop.is_set() and not while_stopping
                if reply is not None or timed_out or aborted:
                    self._awaiting, self._reply = None, None
                    break
            # keep windows closing, and flush a partial frame (a garbage FF with a long
            # length) that may be hiding the reply
            self._tick()
        if reply is None and aborted:
            raise ReaderError(f"command 0x{opcode:02X} abandoned: the driver is stopping")
        if reply is None:
            self.counters.add("command_timeouts")
            raise ReaderError(f"no reply to command 0x{opcode:02X} within {wait_s:g} s")
        if reply.status != Status.OK:
            self.counters.add("command_errors")
            raise ReaderError(f"command 0x{opcode:02X} failed: {status_text(reply.status)}")
        stopping = opcode == Opcode.MULTI_PROTOCOL_SEARCH and data == continuous_read_stop()
        if stopping and not is_stop_reply(reply.data):
            raise ReaderError("stop reply does not confirm the stop")
        return reply


@register_driver(DeviceKind.RFID, ThingMagicConfig)
def build_thingmagic_reader(config: ThingMagicConfig) -> ThingMagicReader:
    """Registry factory: a reader driver for ``config`` (set ``on_sighting`` or use get)."""
    return ThingMagicReader(config)
