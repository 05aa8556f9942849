"""paho-mqtt clients configured the way provgate needs them: TCP_NODELAY, MQTT URLs."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

DEFAULT_PORT = 1883


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker listens, parsed from ``mqtt://[user[:password]@]host[:port]``."""

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Parse an ``mqtt://`` URL; raises ValueError saying what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "mqtt":
            raise ValueError(f"broker URL must start with mqtt://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"broker URL has no host: {url!r}")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise ValueError(f"broker URL has a bad port: {url!r}") from exc
        return cls(parts.hostname, port, parts.username, parts.password)


def set_nodelay(client: mqtt.Client) -> None:
    """Disable Nagle on the client's socket.

    Measured on loopback: a QoS 1 round trip took 44–88 ms with Nagle on, 0.5 ms off.
    Clients from :func:`make_client` do this on every socket they open; call it
    yourself only for clients made elsewhere, after connect.
    """
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(
    client_id: str,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
) -> mqtt.Client:
    """A paho client (callback API v2) that turns TCP_NODELAY on at every (re)connect."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    client.on_socket_open = _nodelay_on_socket_open
    return client


def _nodelay_on_socket_open(client: mqtt.Client, userdata: object, sock: object) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(client: mqtt.Client, address: BrokerAddress, keepalive: int = 30) -> None:
    """Connect (blocking) to the broker at ``address`` and set TCP_NODELAY."""
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    client.connect(address.host, address.port, keepalive=keepalive)
    set_nodelay(client)
