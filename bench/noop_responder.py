"""The no-op MQTT responder every later benchmark compares to, and its load generator.

The responder answers each request by publishing its payload unchanged to the matching
reply topic: request in, reply out, nothing else. The correlation ID travels in the
payload (first 16 bytes), as in the provgate wire contract.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from gatewire.mqtt import BrokerAddress, connect, make_client

REQUEST_PREFIX = "bench/noop/req/"
REPLY_PREFIX = "bench/noop/resp/"
READY_LINE = b"ready\n"


def serve(url: str, qos: int) -> None:
    """Run a no-op responder until stdin closes (runs in its own process)."""
    client = make_client(f"noop-responder-{os.getpid()}")

    def on_message(c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        c.publish(REPLY_PREFIX + msg.topic[len(REQUEST_PREFIX) :], msg.payload, qos=qos)

    client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    connect(client, BrokerAddress.from_url(url))
    client.subscribe(REQUEST_PREFIX + "#", qos=qos)
    client.loop_start()
    subscribed.wait(10)
    sys.stdout.buffer.write(READY_LINE)
    sys.stdout.buffer.flush()
    sys.stdin.buffer.read()
    client.loop_stop()
    client.disconnect()


class ResponderProcess:
    """The responder in a child process, so it does not share the GIL with the load."""

    def __init__(self, url: str, qos: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.noop_responder", url, str(qos)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline() != READY_LINE:
            self.close()
            raise RuntimeError("no-op responder did not start")

    def close(self) -> None:
        """Stop the child process."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@dataclass
class LoadResult:
    """Round-trip latencies (seconds) and the throughput of one load run."""

    latencies: list[float]
    elapsed: float

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


class Requester:
    """A load client: sends requests with a correlation ID and times their replies."""

    def __init__(self, url: str, name: str, qos: int, payload_size: int = 200) -> None:
        self._qos = qos
        self._topic = REQUEST_PREFIX + name
        self._filler = b"x" * max(0, payload_size - 16)
        self._sent: dict[int, float] = {}
        self._latencies: list[float] = []
        self._cond = threading.Condition()
        self._client = make_client(f"bench-{name}-{os.getpid()}")
        self._client.on_message = self._on_reply
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        connect(self._client, BrokerAddress.from_url(url))
        self._client.subscribe(REPLY_PREFIX + name, qos=qos)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("reply subscription not acknowledged")

    def _on_reply(self, c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        (seq,) = struct.unpack_from(">Q", msg.payload, 8)
        with self._cond:
            sent = self._sent.pop(seq, None)
            if sent is not None:
                self._latencies.append(now - sent)
            self._cond.notify_all()

    def _send(self, seq: int) -> None:
        payload = struct.pack(">QQ", 0x70726F7667617465, seq) + self._filler
        with self._cond:
            self._sent[seq] = time.perf_counter()
        self._client.publish(self._topic, payload, qos=self._qos)

    def run(self, count: int, window: int, timeout: float = 60.0) -> LoadResult:
        """Send ``count`` requests keeping at most ``window`` outstanding."""
        self._latencies = []
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        for seq in range(count):
            with self._cond:
                while len(self._sent) >= window:
                    if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                        raise TimeoutError(f"replies stopped after {len(self._latencies)}")
            self._send(seq)
        with self._cond:
            while self._sent:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{len(self._sent)} replies missing")
        return LoadResult(list(self._latencies), time.perf_counter() - start)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
