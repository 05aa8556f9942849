"""The wire contract through a real mosquitto: a gate accepts only its genuine verdict.

A gate seals a verify request; the stand-in gateway verifies it and answers with a sealed
verdict bound to it. A rogue client on the broker then publishes a verdict altered in
transit, one sealed with another gate's key, and a replay of the genuine one: the gate
refuses each. A forged request never gets an answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatewire.auth import (
    Accepted,
    RefusalReason,
    Refused,
    Reply,
    SiteKeyring,
    VerdictVerifier,
    derive_gate_key,
    seal,
)
from gatewire.identity import parse_item_id
from gatewire.messages import Decision, Verdict, VerifyRequest
from gatewire.topics import GateTopics
from simulators.broker import MosquittoBroker
from simulators.standin_gateway import StandinGateway
from tests.support.mqtt import Inbox, running_client

pytestmark = pytest.mark.broker

SITE = "wiretest"
SECRET = bytes(range(100, 132))
ITEM = parse_item_id("(01)09506000134352(17)201225(10)ABC123(21)XYZ").item


class Gate:
    """One gate's view: its verifier, and the payloads on its verdict topic."""

    def __init__(self, gate: str) -> None:
        self.topics = GateTopics(SITE, gate)
        self.key = derive_gate_key(SECRET, SITE, gate)
        self.verifier = VerdictVerifier(SITE, gate, self.key, timeout_s=10)
        self.inbox = Inbox()

    def request(self) -> tuple[VerifyRequest, bytes]:
        assert ITEM is not None
        request = VerifyRequest(site=SITE, gate=self.topics.gate, item=ITEM)
        return request, self.verifier.seal_request(request)

    def next_result(self) -> tuple[bytes, Accepted[Reply] | Refused]:
        payload = bytes(self.inbox.get(timeout=5).payload)
        return payload, self.verifier.accept_payload(payload)


@pytest.fixture
def standin(mosquitto: MosquittoBroker) -> Iterator[StandinGateway]:
    gateway = StandinGateway(mosquitto.url, SiteKeyring(SITE, site_secret=SECRET))
    gateway.start()
    yield gateway
    gateway.stop()


def test_genuine_verdict_is_accepted_and_rogue_ones_are_refused(
    mosquitto: MosquittoBroker, standin: StandinGateway
) -> None:
    gate = Gate("in-01")
    with (
        running_client(
            mosquitto.url, "gate-in-01", [gate.topics.verdict], gate.inbox.on_message
        ) as client,
        running_client(mosquitto.url, "rogue") as rogue,
    ):
        request, payload = gate.request()
        client.publish(gate.topics.verify_request, payload, qos=1)
        genuine_payload, result = gate.next_result()
        assert isinstance(result, Accepted)
        verdict = result.message
        assert isinstance(verdict, Verdict)
        assert verdict.request_id == request.id
        assert verdict.decision is Decision.HOLD

        # Replay: the genuine verdict again, after it was consumed.
        rogue.publish(gate.topics.verdict, genuine_payload, qos=1)
        assert _refusal(gate) is RefusalReason.REPLAYED

        # Altered in transit: PASS instead of HOLD, MAC kept.
        _, second_payload = gate.request()
        client.publish(gate.topics.verify_request, second_payload, qos=1)
        genuine2 = bytes(gate.inbox.get(timeout=5).payload)
        altered = genuine2.replace(b'"HOLD"', b'"PASS"')
        assert altered != genuine2
        rogue.publish(gate.topics.verdict, altered, qos=1)
        assert _refusal(gate) is RefusalReason.BAD_MAC
        # The untouched original is still accepted afterwards.
        assert isinstance(gate.verifier.accept_payload(genuine2), Accepted)

        # Sealed with another gate's key, bound to a request this gate is waiting for.
        third, third_payload = gate.request()
        forged = Verdict(
            site=SITE,
            gate="in-01",
            request_id=third.id,
            request_mac=third_payload[-66:-2].decode(),
            decision=Decision.PASS,
        )
        rogue.publish(
            gate.topics.verdict, seal(forged, derive_gate_key(SECRET, SITE, "out-02")), qos=1
        )
        assert _refusal(gate) is RefusalReason.BAD_MAC


def test_request_sealed_with_another_gates_key_gets_no_verdict(
    mosquitto: MosquittoBroker, standin: StandinGateway
) -> None:
    gate = Gate("in-03")
    impostor = Gate("in-03")
    impostor.key = derive_gate_key(SECRET, SITE, "in-04")
    impostor.verifier = VerdictVerifier(SITE, "in-03", impostor.key)
    with running_client(
        mosquitto.url, "gate-in-03", [gate.topics.verdict], gate.inbox.on_message
    ) as client:
        _, forged_payload = impostor.request()
        client.publish(gate.topics.verify_request, forged_payload, qos=1)
        assert gate.inbox.empty_for(0.5)
        assert standin.refused.get(RefusalReason.BAD_MAC.value) == 1
        # A genuine request from the same gate is still answered.
        _, payload = gate.request()
        client.publish(gate.topics.verify_request, payload, qos=1)
        assert isinstance(gate.next_result()[1], Accepted)


def test_replayed_request_is_answered_once(
    mosquitto: MosquittoBroker, standin: StandinGateway
) -> None:
    gate = Gate("in-05")
    with running_client(
        mosquitto.url, "gate-in-05", [gate.topics.verdict], gate.inbox.on_message
    ) as client:
        _, payload = gate.request()
        client.publish(gate.topics.verify_request, payload, qos=1)
        client.publish(gate.topics.verify_request, payload, qos=1)
        assert isinstance(gate.next_result()[1], Accepted)
        assert gate.inbox.empty_for(0.5)
        assert standin.refused.get(RefusalReason.REPLAYED.value) == 1


def _refusal(gate: Gate) -> RefusalReason:
    _, result = gate.next_result()
    assert isinstance(result, Refused), result
    return result.reason
