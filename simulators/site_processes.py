"""The child processes of a simulated site run, and how they are started and stopped.

:func:`start_broker` starts the private broker (mosquitto, or the embedded one where it is
not installed); :func:`spawn` starts a child in its own process group, so that a terminal's
Ctrl-C reaches only the run, which stops its children in order; :func:`reap` waits for one
and kills it if it does not stop; :class:`GatewayWatch` waits for the gateway's retained
availability to say online; :func:`last_line` quotes a child's log in an error message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import threading
from pathlib import Path
from typing import Any, Final

from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import SiteTopics
from simulators.broker import BrokerError, MosquittoBroker, find_mosquitto
from simulators.embedded_broker import EmbeddedBroker

__all__ = [
    "GatewayWatch",
    "SiteRunError",
    "last_line",
    "reap",
    "spawn",
    "start_broker",
]

log = logging.getLogger(__name__)

STOP_WAIT_S: Final = 20.0
"""How long a child may take to stop when asked before it is killed."""


class SiteRunError(RuntimeError):
    """The site could not be prepared or started; the message says what failed."""


def start_broker(kind: str) -> tuple[MosquittoBroker | EmbeddedBroker, str]:
    """The private broker and what it is; SiteRunError if it does not start."""
    mosquitto = find_mosquitto() is not None
    try:
        if kind == "mosquitto" or (kind == "auto" and mosquitto):
            return MosquittoBroker().start(), "private mosquitto"
        why = "as asked" if kind == "embedded" else "mosquitto is not installed"
        return EmbeddedBroker().start(), f"embedded MQTT broker ({why})"
    except (BrokerError, OSError) as exc:
        raise SiteRunError(f"the private broker did not start: {exc}") from exc


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """A child in its own process group (a terminal's Ctrl-C reaches only us)."""
    try:
        return subprocess.Popen(args, process_group=0, **kwargs)
    except OSError as exc:
        raise SiteRunError(f"cannot start {' '.join(args[:4])}: {exc}") from exc


def last_line(log_path: Path) -> str:
    """``: <the log's last line>`` or nothing."""
    try:
        lines = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""


def reap(process: subprocess.Popen[bytes]) -> int:
    """Wait for a process to exit after being asked; kill it if it does not. Its exit code."""
    try:
        return process.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        log.error("site run: pid %d did not stop in %.0f s; killing it", process.pid, STOP_WAIT_S)
        process.kill()
        return process.wait()


class GatewayWatch:
    """Watches the gateway's retained availability until it says online."""

    def __init__(self, url: str, site: str) -> None:
        """Subscribe on the broker at ``url`` (OSError if there is none) for ``site``."""
        self._online = threading.Event()
        self._client = make_client(f"provgate-site-run-{os.getpid()}-{secrets.token_hex(2)}")
        topic = SiteTopics(site).gateway_status

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            with contextlib.suppress(ValueError):
                status = json.loads(message.payload)
                if isinstance(status, dict) and status.get("online") is True:
                    self._online.set()

        self._client.on_message = on_message
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        connect(self._client, BrokerAddress.from_url(url))
        self._client.loop_start()

    def wait(self, timeout: float) -> bool:
        """True once the gateway said online (within ``timeout`` seconds)."""
        return self._online.wait(timeout)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()
