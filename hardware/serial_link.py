"""A serial device opened by URL that survives being unplugged.

``url`` is anything pyserial's ``serial_for_url`` takes: a device path (``/dev/ttyACM0``,
a pty from a simulator), ``socket://host:port`` or ``rfc2217://host:port``. A reader
thread delivers bytes in bulk to ``on_data``; when the device vanishes the link reports
itself unhealthy, retries with exponential backoff and jitter, and resumes by itself.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable

import serial

from hardware.backoff import Backoff
from hardware.health import Counters, DeviceHealth, DeviceState

log = logging.getLogger(__name__)

READ_CHUNK = 65536
POLL_INTERVAL_S = 0.05
# What a vanished device raises: pyserial's own error, the OS error under it, or a
# ValueError from an operation on a port pyserial has already closed.
DEVICE_ERRORS = (serial.SerialException, OSError, ValueError)


class SerialLink:
    """Owns one serial port: open, read in bulk, write, reconnect."""

    def __init__(
        self,
        name: str,
        url: str,
        on_data: Callable[[bytes], None],
        *,
        baudrate: int = 115200,
        bytesize: int = serial.EIGHTBITS,
        parity: str = serial.PARITY_NONE,
        stopbits: float = serial.STOPBITS_ONE,
        on_open: Callable[[SerialLink], None] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.baudrate = baudrate
        self.bytesize, self.parity, self.stopbits = bytesize, parity, stopbits
        self.counters = Counters()
        self._on_data = on_data
        self._on_open = on_open
        self._backoff = backoff or Backoff()
        self._state = DeviceState.STOPPED
        self._last_error: str | None = None
        self._reconnects = 0
        self._port: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._healthy = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the reader thread; it connects (and reconnects) by itself."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._state = DeviceState.CONNECTING
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and close the port."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        self._close()
        self._state = DeviceState.STOPPED

    def wait_healthy(self, timeout: float) -> bool:
        """Block until the port is open (True) or ``timeout`` passes (False)."""
        return self._healthy.wait(timeout)

    def health(self) -> DeviceHealth:
        """A snapshot of state, counters and the last error."""
        return DeviceHealth(
            self.name, self._state, self.counters.snapshot(), self._last_error, self._reconnects
        )

    def write(self, data: bytes) -> bool:
        """Send ``data``; False (and counted) when the device is not there."""
        port = self._port
        if port is None:
            self.counters.add("write_while_disconnected")
            return False
        try:
            with self._write_lock:
                port.write(data)
        except DEVICE_ERRORS as exc:
            self.counters.add("write_errors")
            self._last_error = f"write failed: {exc}"
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            port = self._open()
            if port is None:
                self._stop.wait(self._backoff.next_delay())
                continue
            try:
                self._read_until_lost(port)
            except DEVICE_ERRORS as exc:
                if not self._stop.is_set():
                    self._lost(f"device lost: {exc}")

    def _open(self) -> serial.Serial | None:
        try:
            port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                bytesize=self.bytesize,
                parity=self.parity,
                stopbits=self.stopbits,
                timeout=0,
            )
        except DEVICE_ERRORS as exc:
            self._set_unhealthy(f"cannot open {self.url}: {exc}")
            return None
        self._port = port
        self._state = DeviceState.HEALTHY
        self._last_error = None
        self._backoff.reset()
        self._healthy.set()
        log.info("%s: connected to %s", self.name, self.url)
        if self._on_open is not None:
            self._on_open(self)
        return port

    def _read_until_lost(self, port: serial.Serial) -> None:
        try:
            fd: int | None = port.fileno()
        except (AttributeError, NotImplementedError, OSError):
            fd = None  # rfc2217 has no descriptor: its own thread fills a buffer
        while not self._stop.is_set():
            if fd is not None:
                ready, _, _ = select.select([fd], [], [], POLL_INTERVAL_S)
                data = port.read(READ_CHUNK) if ready else b""
                if ready and not data:
                    raise serial.SerialException("device readable but returned no data")
            else:
                waiting = port.in_waiting
                data = port.read(waiting) if waiting else b""
                if not data:
                    time.sleep(POLL_INTERVAL_S)
            if data:
                self.counters.add("bytes_in", len(data))
                self._on_data(data)

    def _lost(self, reason: str) -> None:
        self._close()
        self._reconnects += 1
        self.counters.add("disconnects")
        self._set_unhealthy(reason)

    def _set_unhealthy(self, reason: str) -> None:
        if self._state is not DeviceState.UNHEALTHY:
            log.warning("%s: %s; retrying with backoff", self.name, reason)
        self._state = DeviceState.UNHEALTHY
        self._last_error = reason
        self._healthy.clear()

    def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(*DEVICE_ERRORS):
                port.close()
