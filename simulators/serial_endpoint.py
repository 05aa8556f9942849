"""Where a simulated serial device is served: a pty (with optional symlink) or a TCP port."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from abc import ABC, abstractmethod
from pathlib import Path


class SerialEndpoint(ABC):
    """The device side of a serial line; the driver opens :attr:`url`."""

    @property
    @abstractmethod
    def url(self) -> str:
        """What the driver passes to ``serial_for_url``."""

    @abstractmethod
    def write(self, data: bytes) -> bool:
        """Send bytes to the driver; False when nobody is connected."""

    @abstractmethod
    def read(self, timeout: float) -> bytes:
        """Bytes the driver sent, waiting up to ``timeout``; b"" if none."""

    @abstractmethod
    def close(self) -> None:
        """Hang up (the driver sees the device vanish)."""


class PtyEndpoint(SerialEndpoint):
    """A pseudo-terminal pair; the slave path (or a symlink to it) is the device.

    The slave is put in raw mode here, before anything is written, so the line discipline
    never rewrites CR or echoes bytes back; the simulator keeps a slave descriptor open so
    its writes are buffered until the driver opens the port.
    """

    def __init__(self, link: str | Path | None = None) -> None:
        self._link = Path(link) if link is not None else None
        if self._link is not None and os.path.lexists(self._link) and not self._link.is_symlink():
            raise FileExistsError(f"{self._link} exists and is not a symlink; not replacing it")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.slave_path = os.ttyname(self._slave)
        self._closed = False
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        if self._link is not None:
            self._link.unlink(missing_ok=True)
            self._link.symlink_to(self.slave_path)

    @property
    def url(self) -> str:
        return str(self._link) if self._link is not None else self.slave_path

    def write(self, data: bytes) -> bool:
        view = memoryview(data)
        with self._write_lock:
            while view and not self._closed:
                try:
                    written = os.write(self._master, view)
                except BlockingIOError:
                    select.select([], [self._master], [], 0.05)
                    continue
                except OSError:
                    return False
                view = view[written:]
        return not view

    def read(self, timeout: float) -> bytes:
        # Held while the descriptor is in use, so close() cannot free its number for a
        # new pty (a replug) while a read is still waiting on it.
        with self._read_lock:
            if self._closed:
                return b""
            ready, _, _ = select.select([self._master], [], [], timeout)
            if not ready:
                return b""
            try:
                return os.read(self._master, 65536)
            except OSError:
                return b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._write_lock, self._read_lock:
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._link is not None and self._link.is_symlink():
            with contextlib.suppress(OSError):
                if os.readlink(self._link) == self.slave_path:
                    self._link.unlink()


class TcpEndpoint(SerialEndpoint):
    """A TCP port serving one driver at a time (``socket://host:port``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def _connection(self, timeout: float) -> socket.socket | None:
        if self._conn is None and not self._closed:
            ready, _, _ = select.select([self._listener], [], [], timeout)
            if ready:
                conn, _ = self._listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._conn = conn
        return self._conn

    def wait_for_driver(self, timeout: float) -> bool:
        """Block until a driver connects (True) or ``timeout`` passes."""
        return self._connection(timeout) is not None

    def write(self, data: bytes) -> bool:
        conn = self._connection(0)
        if conn is None:
            return False
        try:
            with self._lock:
                conn.sendall(data)
        except OSError:
            self._drop()
            return False
        return True

    def read(self, timeout: float) -> bytes:
        conn = self._connection(timeout)
        if conn is None:
            return b""
        ready, _, _ = select.select([conn], [], [], timeout)
        if not ready:
            return b""
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop()
        return data

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self._drop()
        self._listener.close()
