"""Helpers for tests that talk MQTT through a real broker."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt

from gatewire.mqtt import BrokerAddress, connect, make_client


class Inbox:
    """Collects messages a client receives, for tests to wait on."""

    def __init__(self) -> None:
        self._queue: queue.Queue[mqtt.MQTTMessage] = queue.Queue()

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(msg)

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        """The next message; raises queue.Empty after ``timeout`` seconds."""
        return self._queue.get(timeout=timeout)

    def empty_for(self, seconds: float) -> bool:
        """True when nothing arrives within ``seconds``."""
        try:
            self._queue.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


@contextmanager
def running_client(
    url: str,
    client_id: str,
    subscriptions: list[str] | None = None,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None] | None = None,
) -> Iterator[mqtt.Client]:
    """A connected client with its network loop running; subscribed before it is yielded."""
    client = make_client(client_id)
    acked: set[int] = set()
    acked_changed = threading.Condition()

    def on_subscribe(c: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        with acked_changed:
            acked.add(mid)
            acked_changed.notify_all()

    client.on_subscribe = on_subscribe
    if on_message is not None:
        client.on_message = on_message
    connect(client, BrokerAddress.from_url(url))
    client.loop_start()
    try:
        if subscriptions:
            _, mid = client.subscribe([(topic, 1) for topic in subscriptions])
            with acked_changed:
                if not acked_changed.wait_for(lambda: mid in acked, timeout=5.0):
                    raise TimeoutError(f"subscription to {subscriptions} not acknowledged")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()
