"""Requests answered on the network thread: held while another whole PUBLISH waits in the
socket, then answered together; the same verdicts, byte for byte, as one at a time."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.config import GatewayConfig, HttpSettings, MqttSettings
from gateway.counters import Counters
from gateway.rules import Outcome
from gateway.service import GatewayService
from gatewire.auth import VerdictVerifier, derive_gate_key, seal, split_sealed
from gatewire.messages import (
    BatchItem,
    BatchVerdict,
    Decision,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
    encode,
)
from gatewire.topics import GateTopics
from tests.gateway.service.support import SECRET, item

SITE = "s1"
GATE = "in-01"
KEY = derive_gate_key(SECRET, SITE, GATE)


@dataclass
class RecordingVerifier:
    """Answers PASS for every item and remembers each call's item keys."""

    calls: list[list[str]] = field(default_factory=list)

    def verify_many(self, facts: Sequence[Any], *, gate: str, now: float) -> list[Outcome]:
        self.calls.append([f.item.key for f in facts])
        return [Outcome(Decision.PASS, ("ledger.ok",), False, "commissioned") for _ in facts]


class FakeClient:
    """paho's side as the service uses it: publish, socket, disconnect."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.published.append((topic, payload))

    def socket(self) -> socket.socket | None:
        return self.sock

    def disconnect(self) -> None:
        pass

    def loop_stop(self) -> None:
        pass


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair: (the gateway's end, the broker's end)."""
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def make_service(
    sock: socket.socket | None,
) -> tuple[GatewayService, RecordingVerifier, FakeClient]:
    config = GatewayConfig(
        site=SITE,
        site_secret=SECRET.hex(),
        mqtt=MqttSettings(url="mqtt://127.0.0.1:1"),
        http=HttpSettings(enabled=False),
    )
    verifier = RecordingVerifier()
    service = GatewayService(config, verifier)
    client = FakeClient(sock)
    service._client = client  # type: ignore[assignment]
    return service, verifier, client


def publish_packet(payload: bytes, topic: str = "x/y") -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    length, size = b"", len(body)
    while True:
        byte, size = size % 128, size // 128
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return b"\x30" + length + body


def deliver(service: GatewayService, client: FakeClient, payload: bytes) -> None:
    """What paho does for a request read off the socket."""
    msg = mqtt.MQTTMessage(topic=GateTopics(SITE, GATE).verify_request.encode())
    msg.payload = payload
    service._on_message(client, None, msg)  # type: ignore[arg-type]


def request(n: int) -> tuple[VerifyRequest, bytes]:
    r = VerifyRequest(site=SITE, gate=GATE, item=item(n))
    return r, seal(r, KEY)


def test_a_request_is_held_while_a_whole_publish_waits_then_answered_with_the_next(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    service, verifier, client = make_service(ours)
    first, first_payload = request(1)
    second, second_payload = request(2)
    theirs.sendall(publish_packet(second_payload))
    deliver(service, client, first_payload)
    assert verifier.calls == []  # held: another one waits
    assert client.published == []
    ours.recv(65536)  # paho reads the waiting packet…
    deliver(service, client, second_payload)  # …and hands it over: nothing else waits
    assert verifier.calls == [[item(1).key, item(2).key]]  # one verify call for both
    gate = VerdictVerifier(SITE, GATE, KEY)
    gate.expect(first, first_payload[-66:-2].decode())
    gate.expect(second, second_payload[-66:-2].decode())
    replies = [getattr(gate.accept_payload(p), "message", None) for _, p in client.published]
    assert [getattr(r, "request_id", None) for r in replies] == [first.id, second.id]
    assert service.counts()["verify_calls"] == 1
    assert service.counts()["requests"] == 2


def test_nothing_waiting_answers_at_once(pair: tuple[socket.socket, socket.socket]) -> None:
    service, verifier, client = make_service(pair[0])
    deliver(service, client, request(1)[1])
    assert verifier.calls == [[item(1).key]]
    assert len(client.published) == 1


def test_without_a_plain_socket_every_request_is_answered_at_once() -> None:
    service, verifier, client = make_service(None)
    deliver(service, client, request(1)[1])
    deliver(service, client, request(2)[1])
    assert verifier.calls == [[item(1).key], [item(2).key]]


def test_at_most_32_requests_are_held(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    service, verifier, client = make_service(ours)
    theirs.sendall(publish_packet(b"{}"))  # always one more waiting: never drained
    for n in range(1, 33):
        deliver(service, client, request(n)[1])
    assert [len(call) for call in verifier.calls] == [32]


def test_stop_answers_the_requests_held(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    service, verifier, client = make_service(ours)
    theirs.sendall(publish_packet(b"{}"))
    deliver(service, client, request(1)[1])
    assert client.published == []
    service.stop()
    assert verifier.calls == [[item(1).key]]
    assert len(client.published) == 1


def test_a_batch_is_held_too_and_answered_in_a_call_of_its_own(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    service, verifier, client = make_service(ours)
    batch = VerifyBatchRequest(
        site=SITE, gate=GATE, items=[BatchItem(index=i, item=item(10 + i)) for i in range(3)]
    )
    theirs.sendall(publish_packet(b"{}"))
    deliver(service, client, seal(batch, KEY))
    ours.recv(65536)
    deliver(service, client, request(1)[1])
    assert verifier.calls == [[item(10).key, item(11).key, item(12).key], [item(1).key]]
    assert service.counts()["batch_requests"] == 1


def test_verdict_bodies_are_what_encode_writes_for_the_reply(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    service, _, client = make_service(pair[0])
    single, single_payload = request(1)
    batch = VerifyBatchRequest(
        site=SITE, gate=GATE, items=[BatchItem(index=i, item=item(20 + i)) for i in range(2)]
    )
    batch_payload = seal(batch, KEY)
    deliver(service, client, single_payload)
    deliver(service, client, batch_payload)
    gate = VerdictVerifier(SITE, GATE, KEY)
    gate.expect(single, single_payload[-66:-2].decode())
    gate.expect(batch, batch_payload[-66:-2].decode())
    for _, payload in client.published:
        accepted = gate.accept_payload(payload)
        reply = getattr(accepted, "message", None)
        assert isinstance(reply, Verdict | BatchVerdict), accepted
        split = split_sealed(payload)
        assert split is not None
        assert encode(reply) == split[0]


@pytest.mark.parametrize(
    ("waiting", "expected"),
    [
        (b"", False),  # nothing there
        (publish_packet(b"abc"), True),
        (publish_packet(b"z" * 300), True),  # a two-byte remaining length
        (publish_packet(b"z" * 20_000), True),  # more than one peek's worth
        (publish_packet(b"abc")[:-1], False),  # not all there yet
        (publish_packet(b"z" * 300)[:2], False),  # the length itself cut short
        (b"\x40\x02\x00\x01", False),  # a PUBACK: paho calls no on_message for it
        (b"\x30\xff\xff\xff\xff\x01", False),  # a remaining length of five bytes
        (b"\x30\xff\xff\xff\x7f", False),  # 256 MiB declared: above the payload limit
    ],
)
def test_only_a_whole_publish_counts_as_waiting(
    pair: tuple[socket.socket, socket.socket], waiting: bytes, expected: bool
) -> None:
    ours, theirs = pair
    service, _, client = make_service(ours)
    if waiting:
        theirs.sendall(waiting)
    assert service._publish_waiting(client) is expected  # type: ignore[arg-type]
    if waiting:  # peeked, not read
        assert ours.recv(65536, socket.MSG_DONTWAIT) == waiting


def test_counters_add_many_adds_each_named_count() -> None:
    counters = Counters()
    counters.add("items", 2)
    counters.add_many([("items", 3), ("verdict.pass", 1), ("items", 1)])
    assert counters.snapshot() == {"items": 6, "verdict.pass": 1}
