"""A stand-in for the gateway until it exists: verifies requests, answers a fixed decision.

It checks each request exactly as the real gateway must (MAC with the key of the gate it
names, freshness, replay) and answers with a sealed verdict bound to the request. It has
no ledger and no rules: it always answers ``decision`` (HOLD by default, the fail-closed
choice). Used by the wire-contract tests and the interim demo.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

import paho.mqtt.client as mqtt

from gatewire.auth import Accepted, RequestVerifier, SiteKeyring
from gatewire.messages import Decision, Verdict, VerifyRequest
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics, ParsedTopic, SiteTopics, parse_topic

log = logging.getLogger(__name__)

STANDIN_REASON: Final = "standin_no_ledger"


class StandinGateway:
    """Answers single-item verify requests on one site with ``decision``."""

    def __init__(self, url: str, keyring: SiteKeyring, decision: Decision = Decision.HOLD) -> None:
        self.keyring = keyring
        self.decision = decision
        self.answered = 0
        self.refused: dict[str, int] = {}
        self._verifier = RequestVerifier(keyring)
        self._lock = threading.Lock()
        self._client = make_client(f"provgate-standin-{keyring.site}")
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._address = BrokerAddress.from_url(url)

    def start(self) -> None:
        """Connect, subscribe to every gate's requests, and answer in the background."""
        connect(self._client, self._address)
        self._client.subscribe(SiteTopics(self.keyring.site).verify_requests, qos=1)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("stand-in gateway: subscription not acknowledged")

    def stop(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic = parse_topic(msg.topic)
        if not isinstance(topic, ParsedTopic):
            self._count_refusal("bad_topic")
            return
        result = self._verifier.check_payload(bytes(msg.payload), topic_gate=topic.gate)
        if not isinstance(result, Accepted):
            self._count_refusal(result.reason.value)
            log.warning("stand-in gateway refused a request: %s", result.detail)
            return
        request = result.message
        if not isinstance(request, VerifyRequest):
            self._count_refusal("unsupported_batch")
            return
        verdict = Verdict(
            site=request.site,
            gate=request.gate,
            request_id=request.id,
            request_mac=result.mac,
            decision=self.decision,
            reasons=[STANDIN_REASON],
        )
        client.publish(
            GateTopics(request.site, request.gate).verdict, self.keyring.seal(verdict), qos=1
        )
        with self._lock:
            self.answered += 1

    def _count_refusal(self, reason: str) -> None:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
