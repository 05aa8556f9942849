"""Run a private mosquitto broker on a free loopback port (tests, benchmarks, the demo)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

MOSQUITTO_SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin"


class BrokerError(RuntimeError):
    """The broker could not be found or did not start."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (Debian installs it in /usr/sbin), or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=MOSQUITTO_SEARCH_PATH)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class MosquittoBroker:
    """A mosquitto process with its own config in a temp dir, stopped by PID.

    TCP_NODELAY is on (``set_tcp_nodelay true``): without it a QoS 1 round trip on
    loopback costs tens of milliseconds instead of half of one.
    """

    def __init__(
        self, host: str = "127.0.0.1", extra_config: str = "", start_timeout: float = 10.0
    ) -> None:
        self.host = host
        self.port = 0
        self._extra_config = extra_config
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the running broker."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the broker process while it runs."""
        return None if self._proc is None else self._proc.pid

    def start(self, attempts: int = 3) -> MosquittoBroker:
        """Start on a free port and wait until it accepts TCP connections."""
        return self._launch(attempts, same_port=False)

    def restart(self) -> MosquittoBroker:
        """Stop the broker (if it runs) and start it again on the same port, as a broker
        that went away and came back (clients reconnect to the URL they had)."""
        if self.port == 0:
            raise BrokerError("restart() needs a broker that was started before")
        self.stop()
        return self._launch(1, same_port=True)

    def _launch(self, attempts: int, *, same_port: bool) -> MosquittoBroker:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto not found: install the Debian package 'mosquitto'")
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="provgate-mosquitto-")
        last_error = ""
        for _ in range(attempts):
            if not same_port:
                self.port = free_tcp_port(self.host)
            conf = Path(self._dir.name) / "mosquitto.conf"
            conf.write_text(self._config_text())
            log_path = Path(self._dir.name) / "mosquitto.log"
            with log_path.open("wb") as log:
                self._proc = subprocess.Popen(
                    [binary, "-c", str(conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            if self._wait_until_listening():
                return self
            last_error = log_path.read_text(errors="replace")[-500:]
            self.stop()
        raise BrokerError(f"mosquitto did not start: {last_error.strip()}")

    def _config_text(self) -> str:
        return (
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 100000\n"
            f"{self._extra_config}\n"
        )

    def _wait_until_listening(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the broker by PID (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """Stop the broker and remove its temp dir."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> MosquittoBroker:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def broker_available() -> bool:
    """True when mosquitto is installed."""
    return find_mosquitto() is not None and os.name == "posix"
