"""A simulated ThingMagic M6e / M6e Nano / M7e reader that speaks Mercury serial bytes.

It answers what MercuryAPI's client sends at connect and for its ``read`` and
``readasync`` samples (version, boot firmware, region, protocol, read power, antenna
search list and detection, synchronous read with tag buffer, continuous read start and
stop; any other opcode gets an ``INVALID_OPCODE`` error reply) and, while a continuous read
runs, streams tag reads for the tags "in its field" at a set rate, each tag read
``multi_reads`` times in a row. Faults, on streamed tag reads only so that configuration
always succeeds: a ``corruption_rate`` of frames with one byte changed (bad CRC) and a
``garbage_rate`` of random bytes before a frame. Everything random comes from ``seed``.

Serve it on a :class:`~simulators.serial_endpoint.PtyEndpoint` (optionally behind a
symlink) or a :class:`~simulators.serial_endpoint.TcpEndpoint`; :meth:`unplug` and
:meth:`plug` simulate a USB replug (the reader powers up again: streaming stops). The
simulator never writes before a command arrives, so pyserial's input flush on open loses
nothing. :func:`run` is the ``provgate sim rfid`` entry point; it prints nothing. The
protocol model itself (state, answers, tag streaming) is :mod:`simulators.rfid_reader`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from hardware.rfid.commands import Region
from simulators.rfid_reader import (
    MODELS,
    ModelName,
    SimulatedModel,
    SimulatedReader,
    SimulatorSettings,
    epc_bytes,
)
from simulators.serial_endpoint import PtyEndpoint, SerialEndpoint, TcpEndpoint

__all__ = ["MODELS", "SimulatedModel", "SimulatorSettings", "ThingMagicSimulator", "run"]

_IDLE_POLL_S: Final = 0.05


class ThingMagicSimulator:
    """One simulated reader serving one endpoint at a time (see the module docstring)."""

    def __init__(
        self,
        endpoint: SerialEndpoint,
        settings: SimulatorSettings | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> None:
        self.settings = settings or SimulatorSettings()
        self._reader = SimulatedReader(self.settings)
        self._lock = threading.Lock()
        # Held while reading the endpoint: unplug waits for it, so a read never lands on a
        # descriptor number that a newly plugged pty has just reused.
        self._io_lock = threading.Lock()
        self._endpoint: SerialEndpoint | None = endpoint
        self._stop = threading.Event()
        self._streaming_changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        for tag in tags:
            self.add_tag(tag)

    @property
    def url(self) -> str:
        """What a driver opens (pty path, symlink or socket:// URL)."""
        endpoint = self._endpoint
        if endpoint is None:
            raise RuntimeError("the simulated reader is unplugged")
        return endpoint.url

    def start(self) -> ThingMagicSimulator:
        """Serve on a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="sim-thingmagic", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and hang up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.unplug()

    def __enter__(self) -> ThingMagicSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def unplug(self) -> None:
        """Hang up the endpoint, as when the USB cable is pulled."""
        with self._io_lock:
            with self._lock:
                endpoint, self._endpoint = self._endpoint, None
                self._reader.streaming = False
                self._streaming_changed.notify_all()
            if endpoint is not None:
                endpoint.close()

    def plug(self, endpoint: SerialEndpoint) -> None:
        """Serve ``endpoint`` as a freshly powered reader."""
        with self._lock:
            self._reader.power_up()
            self._endpoint = endpoint

    def add_tag(self, epc: str, *, rssi_dbm: int = -55, antenna: int = 1) -> str:
        """Put a tag in the field (EPC hex or SGTIN URI); return its EPC hex."""
        with self._lock:
            return self._reader.add_tag(epc, rssi_dbm, antenna).hex().upper()

    def remove_tag(self, epc: str) -> bool:
        """Take a tag out of the field; False if it was not there."""
        data = epc_bytes(epc)
        with self._lock:
            return self._reader.tags.pop(data, None) is not None

    def clear_tags(self) -> None:
        """Empty the field."""
        with self._lock:
            self._reader.tags.clear()

    @property
    def tags(self) -> list[str]:
        """EPC hex of the tags in the field."""
        with self._lock:
            return [epc.hex().upper() for epc in self._reader.tags]

    @property
    def streaming(self) -> bool:
        """True while a continuous read runs."""
        return self._reader.streaming

    def wait_streaming(self, timeout: float, streaming: bool = True) -> bool:
        """Block until a continuous read runs (or, with False, does not)."""
        with self._lock:
            return self._streaming_changed.wait_for(
                lambda: self._reader.streaming == streaming, timeout
            )

    @property
    def region(self) -> Region | int:
        """The region last set."""
        return self._reader.region

    @property
    def read_power_centi_dbm(self) -> int:
        """The read power last set."""
        return self._reader.power

    @property
    def antennas(self) -> tuple[int, ...]:
        """The antenna search list last set."""
        return self._reader.antennas

    @property
    def opcodes(self) -> list[int]:
        """Opcodes of the commands received, in order."""
        with self._lock:
            return list(self._reader.opcodes)

    def counters(self) -> dict[str, int]:
        """What the simulator did: frames sent, faults injected, commands answered."""
        with self._lock:
            return {**self._reader.counts, "command_crc_errors": self._reader.parser.crc_errors}

    def _serve(self) -> None:
        reader = self._reader
        while not self._stop.is_set():
            endpoint = self._endpoint
            if endpoint is None:
                self._stop.wait(_IDLE_POLL_S)
                continue
            with self._io_lock:
                if self._endpoint is not endpoint:
                    continue
                data = endpoint.read(reader.next_wait(_IDLE_POLL_S))
            with self._lock:
                if self._endpoint is not endpoint:
                    continue
                out = reader.receive(data) if data else b""
                if data:
                    self._streaming_changed.notify_all()
                if reader.streaming:
                    out += reader.stream()
            if out:
                endpoint.write(out)


def run(
    port: Literal["pty", "tcp"] = "pty",
    *,
    link: str | Path | None = None,
    host: str = "127.0.0.1",
    tcp_port: int = 0,
    tags: Sequence[str] = (),
    model: ModelName = "m6e_nano",
    read_rate_hz: float = 200.0,
    multi_reads: int = 3,
    corruption_rate: float = 0.0,
    garbage_rate: float = 0.0,
    dwell_s: float | None = None,
    seed: int = 0,
    duration_s: float | None = None,
    on_ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Serve a simulated reader until ``duration_s`` passes or ``stop`` is set.

    ``port`` "pty" serves on a pseudo-terminal (``link``: a symlink to create for it),
    "tcp" on ``socket://host:tcp_port`` (0 picks a free port). ``tags`` are EPC hex or SGTIN
    URIs. ``on_ready(url)`` is called once serving, so the caller can print the URL.
    Returns the simulator's counters. KeyboardInterrupt propagates after cleanup.
    """
    settings = SimulatorSettings(
        model=model,
        read_rate_hz=read_rate_hz,
        multi_reads=multi_reads,
        corruption_rate=corruption_rate,
        garbage_rate=garbage_rate,
        dwell_s=dwell_s,
        seed=seed,
    )
    endpoint: SerialEndpoint = PtyEndpoint(link) if port == "pty" else TcpEndpoint(host, tcp_port)
    stop = stop or threading.Event()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    with ThingMagicSimulator(endpoint, settings, tags=tags) as simulator:
        if on_ready is not None:
            on_ready(simulator.url)
        while not stop.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            stop.wait(0.2 if remaining is None else min(0.2, remaining))
        return simulator.counters()
