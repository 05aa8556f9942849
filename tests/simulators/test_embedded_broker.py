"""The embedded MQTT broker with real paho clients: routing, QoS, retained, wills, shared
subscriptions, bad input, and the gateway answering a gate through it."""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.service import open_service
from gatewire.messages import Decision, Verdict
from gatewire.mqtt import BrokerAddress, connect, make_client
from simulators import mqtt_codec as mc
from simulators.broker import BrokerError
from simulators.embedded_broker import EmbeddedBroker
from tests.gateway.service.support import Gate, Site, gateway_config, item, new_site_id
from tests.support.waiting import wait_until


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


class Peer:
    """A paho client (TCP_NODELAY, callback API v2) that queues what it receives."""

    def __init__(self, url: str, name: str, *, will: tuple[str, bytes] | None = None) -> None:
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.acked = threading.Event()
        self.client = make_client(name)
        self.client.on_message = lambda c, u, msg: self.inbox.put(msg)
        self.client.on_subscribe = lambda *args: self.acked.set()
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        connect(self.client, BrokerAddress.from_url(url), keepalive=5)
        self.client.loop_start()

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.acked.clear()
        self.client.subscribe(topic_filter, qos)
        assert self.acked.wait(5), f"SUBACK for {topic_filter}"

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def take(self, n: int, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        return [self.inbox.get(timeout=timeout) for _ in range(n)]

    def nothing_more(self, wait: float = 0.2) -> bool:
        try:
            self.inbox.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(broker: EmbeddedBroker) -> Iterator[list[Peer]]:
    """Make peers with ``peers.append(Peer(broker.url, name))``; all closed afterwards."""
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


def raw_connect(url: str, client_id: bytes, *, keepalive: int = 30) -> socket.socket:
    """A plain socket that has sent a 3.1.1 CONNECT and read its CONNACK."""
    address = BrokerAddress.from_url(url)
    sock = socket.create_connection((address.host, address.port), timeout=5)
    body = b"\x00\x04MQTT\x04\x02" + struct.pack("!HH", keepalive, len(client_id)) + client_id
    sock.sendall(bytes((0x10, len(body))) + body)
    assert sock.recv(4) == mc.connack(mc.ACCEPTED)
    return sock


def loop_until(client: mqtt.Client, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run a client's network loop by hand (no thread) until ``done()`` holds; on a loaded
    machine one ``loop()`` call may return before the broker's answer arrived."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "no answer from the broker"
        client.loop(timeout=0.1)


def closed_by_peer(sock: socket.socket, wait: float = 2.0) -> bool:
    """Whether the broker closes ``sock`` within ``wait`` seconds.

    Waits rather than peeking: the broker publishes a will before its close reaches the
    socket, and a client library's socket may be non-blocking.
    """
    sock.settimeout(wait)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ---- topic rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d/c", False),
        ("a/#", "a", True),  # '#' also matches the parent level
        ("a/#", "a/b/c", True),
        ("+/+", "/x", True),
        ("#", "$SYS/x", False),  # wildcards at level 1 skip $ topics
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_filter_matching(topic_filter: str, topic: str, matches: bool) -> None:
    assert mc.topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a+/b", "a/b#", "$share/g", "$share//a"])
def test_invalid_filters_are_recognised(topic_filter: str) -> None:
    try:
        valid = mc.split_shared(topic_filter) is not None or mc.valid_topic_filter(topic_filter)
    except mc.MalformedPacketError:
        valid = False
    assert not valid


# ---- routing and QoS --------------------------------------------------------------------


def test_wildcard_subscriptions_get_matching_topics_once_each(
    broker: EmbeddedBroker, peers: list[Peer]
) -> None:
    sub, pub = Peer(broker.url, "sub"), Peer(broker.url, "pub")
    peers += [sub, pub]
    sub.subscribe("site/+/verdict")
    sub.subscribe("site/in-01/#")
    for topic in ("site/in-01/verdict", "site/out-01/verdict", "site/in-01/a/b", "other/x"):
        pub.publish(topic, topic.encode())
    got = sorted(m.topic for m in sub.take(3))
    assert got == ["site/in-01/a/b", "site/in-01/verdict", "site/out-01/verdict"]
    assert sub.nothing_more()


def test_qos1_round_trip_is_acknowledged_and_granted_qos_is_the_minimum(
    broker: EmbeddedBroker, peers: list[Peer]
) -> None:
    at_1, at_0, pub = (Peer(broker.url, n) for n in ("q1", "q0", "pub"))
    peers += [at_1, at_0, pub]
    at_1.subscribe("q/#", qos=2)
    at_0.subscribe("q/#", qos=0)
    info = pub.client.publish("q/a", b"one", qos=1)
    info.wait_for_publish(5)
    assert info.is_published()  # the broker's PUBACK
    (m1,), (m0,) = at_1.take(1), at_0.take(1)
    assert (m1.payload, m1.qos, m0.qos) == (b"one", 1, 0)
    assert wait_until(lambda: broker.counts()["sent"] == 2)


def test_retained_message_reaches_a_late_subscriber_until_cleared(
    broker: EmbeddedBroker, peers: list[Peer]
) -> None:
    pub = Peer(broker.url, "pub")
    peers.append(pub)
    pub.publish("gw/status", b"online", retain=True)
    late = Peer(broker.url, "late")
    peers.append(late)
    late.subscribe("gw/#")
    (msg,) = late.take(1)
    assert (msg.payload, msg.retain) == (b"online", True)
    pub.publish("gw/status", b"", retain=True)
    assert late.take(1)[0].payload == b""  # the clearing publish itself is delivered live
    later = Peer(broker.url, "later")
    peers.append(later)
    later.subscribe("gw/#")
    assert later.nothing_more()


# ---- last will --------------------------------------------------------------------------


def test_will_is_published_when_the_socket_closes_without_disconnect(
    broker: EmbeddedBroker, peers: list[Peer]
) -> None:
    watcher = Peer(broker.url, "watcher")
    peers.append(watcher)
    watcher.subscribe("gate/+/status")
    dying = make_client("dying")
    dying.will_set("gate/g1/status", b"offline", qos=1, retain=True)
    connect(dying, BrokerAddress.from_url(broker.url))
    loop_until(dying, dying.is_connected)  # the CONNACK: the broker holds the will
    sock = dying.socket()
    assert isinstance(sock, socket.socket)
    sock.close()
    (msg,) = watcher.take(1)
    assert (msg.topic, msg.payload) == ("gate/g1/status", b"offline")
    late = Peer(broker.url, "late")
    peers.append(late)
    late.subscribe("gate/g1/status")
    assert late.take(1)[0].retain  # the will was retained


def test_no_will_after_a_clean_disconnect(broker: EmbeddedBroker, peers: list[Peer]) -> None:
    watcher = Peer(broker.url, "watcher")
    peers.append(watcher)
    watcher.subscribe("gate/+/status")
    Peer(broker.url, "leaving", will=("gate/g2/status", b"offline")).close()
    assert watcher.nothing_more(0.3)


def test_a_missed_keepalive_closes_the_connection_and_publishes_the_will(
    broker: EmbeddedBroker, peers: list[Peer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="simulators.embedded_broker")
    watcher = Peer(broker.url, "watcher")
    peers.append(watcher)
    watcher.subscribe("gate/+/status")
    dying = make_client("silent")
    dying.will_set("gate/g3/status", b"offline", qos=1, retain=True)
    started = time.time()  # before the CONNECT, the last packet the broker gets
    connect(dying, BrokerAddress.from_url(broker.url), keepalive=1)
    loop_until(dying, dying.is_connected)  # reads the CONNACK; then the client goes silent
    (msg,) = watcher.take(1, timeout=10)
    assert msg.payload == b"offline"
    (closing,) = [r for r in caplog.records if "missed its keepalive" in r.getMessage()]
    # when the broker gave up, by its own log (the will's trip to the watcher not counted)
    assert 1.45 <= closing.created - started < 3.0  # 1.5 × keepalive (clock reads aside)
    sock = dying.socket()
    assert isinstance(sock, socket.socket)
    assert closed_by_peer(sock)
    sock.close()


def test_a_second_connection_with_the_same_id_takes_over_and_fires_the_old_will(
    broker: EmbeddedBroker, peers: list[Peer]
) -> None:
    watcher = Peer(broker.url, "watcher")
    peers.append(watcher)
    watcher.subscribe("gate/+/status")
    first = make_client("gate-x")  # no network loop: it would reconnect and take over back
    first.will_set("gate/gx/status", b"offline", qos=1, retain=True)
    connect(first, BrokerAddress.from_url(broker.url))
    loop_until(first, first.is_connected)  # the broker has the first connection
    second = raw_connect(broker.url, b"gate-x")
    assert watcher.take(1)[0].payload == b"offline"
    first_sock = first.socket()
    assert isinstance(first_sock, socket.socket)
    assert closed_by_peer(first_sock)
    first_sock.close()
    second.sendall(b"\xc0\x00")  # PINGREQ: the new connection is the one served
    assert second.recv(2) == mc.PINGRESP_PACKET
    second.close()


# ---- shared subscriptions ---------------------------------------------------------------


def test_shared_group_splits_messages_without_duplicates_and_plain_subscriber_gets_all(
    broker: EmbeddedBroker, peers: list[Peer]
) -> None:
    worker_a, worker_b, audit, pub = (Peer(broker.url, n) for n in ("wa", "wb", "audit", "pub"))
    peers += [worker_a, worker_b, audit, pub]
    worker_a.subscribe("$share/gw/site/+/verify/request")
    worker_b.subscribe("$share/gw/site/+/verify/request")
    audit.subscribe("site/+/verify/request")
    for i in range(20):
        pub.publish(f"site/g{i % 3}/verify/request", str(i).encode())
    everything = audit.take(20)
    assert wait_until(lambda: worker_a.inbox.qsize() + worker_b.inbox.qsize() == 20)
    share_a = [m.payload for m in worker_a.take(worker_a.inbox.qsize())]
    share_b = [m.payload for m in worker_b.take(worker_b.inbox.qsize())]
    assert share_a, "worker a got none"
    assert share_b, "worker b got none"
    assert sorted(share_a + share_b) == sorted(m.payload for m in everything)
    assert worker_a.nothing_more()
    assert worker_b.nothing_more()


def test_a_bad_shared_filter_is_refused_in_the_suback(broker: EmbeddedBroker) -> None:
    sock = raw_connect(broker.url, b"raw")
    topic = b"$share//x"
    body = struct.pack("!HH", 7, len(topic)) + topic + b"\x01"
    sock.sendall(bytes((0x82, len(body))) + body)
    assert sock.recv(5) == mc.suback(7, [mc.SUBACK_FAILURE])
    sock.close()


# ---- bad input and protocol versions ----------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x30\xff\xff\xff\xff\x01",  # remaining length of 5 bytes
        b"\x32\x03\x00\x01a",  # QoS 1 PUBLISH cut short (no packet id)
        b"\x82\x02\x00\x00",  # SUBSCRIBE with packet id 0 and no filter
        b"\xf0\x00",  # reserved packet type 15
        b"\x10\x02\x00\x00",  # a second CONNECT
    ],
)
def test_a_malformed_packet_closes_only_its_own_connection(
    broker: EmbeddedBroker, peers: list[Peer], garbage: bytes
) -> None:
    sub, pub = Peer(broker.url, "sub"), Peer(broker.url, "pub")
    peers += [sub, pub]
    sub.subscribe("t/#")
    bad = raw_connect(broker.url, b"bad")
    bad.sendall(garbage)
    assert closed_by_peer(bad)
    bad.close()
    pub.publish("t/ok", b"still here")
    assert sub.take(1)[0].payload == b"still here"
    assert broker.counts()["malformed"] == 1


def test_bytes_that_are_not_mqtt_close_the_connection_before_connect(
    broker: EmbeddedBroker,
) -> None:
    address = BrokerAddress.from_url(broker.url)
    with socket.create_connection((address.host, address.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_peer(sock)


def test_an_mqtt5_client_is_refused_with_unsupported_protocol_version(
    broker: EmbeddedBroker,
) -> None:
    reasons: queue.Queue[ReasonCode] = queue.Queue()
    client = make_client("v5", MQTTProtocolVersion.MQTTv5)
    client.on_connect = lambda c, u, flags, reason, props: reasons.put(reason)
    connect(client, BrokerAddress.from_url(broker.url))
    loop_until(client, lambda: not reasons.empty())  # reads the CONNACK
    reason = reasons.get_nowait()
    assert reason.is_failure
    assert reason.value == mc.V5_UNSUPPORTED_PROTOCOL_VERSION


# ---- lifecycle --------------------------------------------------------------------------


def test_restart_serves_again_on_the_same_port_without_retained_messages(
    broker: EmbeddedBroker,
) -> None:
    port = broker.port
    before = raw_connect(broker.url, b"before")
    before.sendall(bytes((0x31, 8)) + b"\x00\x03r/tval")  # QoS 0 retained "val" on r/t
    assert wait_until(lambda: broker.counts()["received"] == 1)
    before.close()
    broker.restart()
    assert broker.port == port
    after = raw_connect(broker.url, b"after")
    after.sendall(bytes((0x82, 8)) + b"\x00\x01\x00\x03r/t\x00")
    assert after.recv(100) == mc.suback(1, [0])
    after.settimeout(0.2)
    with pytest.raises(TimeoutError):
        after.recv(100)
    after.close()


def test_a_taken_port_raises_broker_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError):
        EmbeddedBroker(port=broker.port).start()


# ---- the gateway through the embedded broker --------------------------------------------


def test_the_gateway_answers_a_sealed_verify_request_through_the_embedded_broker(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    site = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    site_id = new_site_id()
    site.commissioned(1)
    service = open_service(gateway_config(site, broker.url, site_id=site_id))
    service.start()
    gate = Gate(broker.url, site_id)
    try:
        genuine, unknown = gate.verify(item(1)), gate.verify(item(999))
    finally:
        gate.close()
        service.stop()
        site.close()
    assert isinstance(genuine, Verdict)
    assert genuine.decision is Decision.PASS
    assert isinstance(unknown, Verdict)
    assert unknown.decision is Decision.REJECT
