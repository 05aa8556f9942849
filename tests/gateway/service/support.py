"""Helpers for the gateway service tests: a site ledger built the real way, and a gate that
talks to the gateway through the broker exactly as an edge agent does."""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.config import GateSettings, GatewayConfig, HttpSettings, LimitSettings, MqttSettings
from gateway.ledger.epcis import BizStep, Disposition
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore
from gateway.registry import OrgRole, Registry
from gatewire.auth import Accepted, Reply, VerdictVerifier, derive_gate_key, seal
from gatewire.item import CanonicalItemId
from gatewire.messages import Decision, GateEvent, Heartbeat, Message, VerifyRequest
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics
from tests.gateway.rules import rules_support as events
from tests.gateway.rules.rules_support import (
    BRAND,
    BRAND_PREFIX,
    OTHER_BRAND,
    OTHER_PREFIX,
    OTHER_SELLER,
    OTHER_SGLN,
    SELLER,
    SITE_SGLN,
    epc,
    item,
)
from tests.gateway.rules.rules_support import OTHER_SITE as OTHER_SITE_ORG
from tests.gateway.rules.rules_support import SITE as SITE_ORG

__all__ = [
    "BRAND",
    "BRAND_PREFIX",
    "OTHER_BRAND",
    "OTHER_PREFIX",
    "OTHER_SELLER",
    "OTHER_SGLN",
    "OTHER_SITE_ORG",
    "OUT_GATE",
    "SECRET",
    "SELLER",
    "SITE_ORG",
    "SITE_SGLN",
    "Gate",
    "Site",
    "commission",
    "epc",
    "gate_client",
    "gateway_config",
    "item",
    "new_site_id",
    "observe",
]

SECRET = bytes(range(100, 132))
GATE = "in-01"
OUT_GATE = "out-01"
ORGS = (BRAND, OTHER_BRAND, SITE_ORG, OTHER_SITE_ORG)


def commission(
    n: int, *, prefix: str = BRAND_PREFIX, seller: str | None = SELLER, hours_ago: float = 720
) -> dict[str, Any]:
    """A brand's commissioning event for item ``n``, ``hours_ago`` before now."""
    return events.commission(
        n, prefix=prefix, seller=seller, hours_ago=hours_ago, now=dt.datetime.now(dt.UTC)
    )


def observe(
    n: int,
    step: BizStep | str,
    *,
    prefix: str = BRAND_PREFIX,
    disposition: Disposition | str | None = Disposition.IN_PROGRESS,
    hours_ago: float = 240,
    location: str = SITE_SGLN,
    seller: str | None = SELLER,
    action: str = "OBSERVE",
) -> dict[str, Any]:
    """A site's observation of item ``n`` (receiving, shipping, …), ``hours_ago`` before now."""
    return events.observe(
        n,
        step,
        prefix=prefix,
        disposition=disposition,
        hours_ago=hours_ago,
        location=location,
        seller=seller,
        action=action,
        now=dt.datetime.now(dt.UTC),
    )


@dataclass
class Site:
    """A site's database: a ledger with the orgs' keys and a registry with their prefixes."""

    url: str
    keys_dir: Path
    ledger: Ledger
    registry: Registry

    @classmethod
    def create(cls, url: str, keys_dir: Path) -> Site:
        keystore = Keystore(keys_dir)
        ledger = Ledger.open(url, [keystore.load_or_generate(o) for o in ORGS])
        registry = Registry(ledger.store)
        registry.add_org(BRAND, "Acme Sportswear", OrgRole.BRAND_OWNER)
        registry.add_prefix(BRAND, BRAND_PREFIX)
        registry.add_org(OTHER_BRAND, "Borealis Watches", OrgRole.BRAND_OWNER)
        registry.add_prefix(OTHER_BRAND, OTHER_PREFIX)
        registry.add_org(SITE_ORG, "DC 1", OrgRole.SITE)
        registry.add_org(OTHER_SITE_ORG, "DC 2", OrgRole.SITE)
        return cls(url, keys_dir, ledger, registry)

    def append(self, signer: str, *events: dict[str, Any]) -> None:
        """Append events signed by ``signer``."""
        self.ledger.append_batch(list(events), signer)

    def commissioned(self, *numbers: int, seller: str | None = SELLER) -> None:
        """Items commissioned by BRAND a month ago, on their way here (an inbound gate
        passes them)."""
        self.append(BRAND, *(commission(n, seller=seller) for n in numbers))

    def received(self, *numbers: int, seller: str | None = SELLER) -> None:
        """Items commissioned by BRAND and received here 10 days ago (an outbound gate
        passes them)."""
        self.commissioned(*numbers, seller=seller)
        self.append(SITE_ORG, *(observe(n, BizStep.RECEIVING, seller=seller) for n in numbers))

    def close(self) -> None:
        self.ledger.close()


def gateway_config(site: Site, mqtt_url: str, *, site_id: str, **changes: Any) -> GatewayConfig:
    """A config for a gateway of ``site`` on the broker at ``mqtt_url``, MQTT only."""
    base = GatewayConfig(
        site=site_id,
        site_org=SITE_ORG,
        location=SITE_SGLN,
        site_secret=SECRET.hex(),
        ledger_url=site.url,
        keystore_dir=site.keys_dir,
        gates={OUT_GATE: GateSettings(kind="outbound")},
        mqtt=MqttSettings(url=mqtt_url, share_group=f"g-{site_id}"),
        http=HttpSettings(enabled=False),
        limits=LimitSettings(status_interval_s=0.2),
    )
    return base.model_copy(update=changes) if changes else base


def new_site_id() -> str:
    """A site id of its own per test, so tests on the shared broker never meet."""
    return "t" + uuid.uuid4().hex[:12]


class Gate:
    """A gate on the broker: seals requests with its key, checks verdicts like an agent."""

    def __init__(self, url: str, site: str, gate: str = GATE, *, timeout_s: float = 5.0) -> None:
        self.site, self.gate = site, gate
        self.topics = GateTopics(site, gate)
        self.key = derive_gate_key(SECRET, site, gate)
        self.verifier = VerdictVerifier(site, gate, self.key, timeout_s=timeout_s)
        self.timeout_s = timeout_s
        self.raw: queue.Queue[bytes] = queue.Queue()
        self._waiters: dict[str, queue.Queue[Accepted[Reply]]] = {}
        self._lock = threading.Lock()
        self.client = make_client(f"gate-{site}-{gate}-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        connect(self.client, BrokerAddress.from_url(url))
        self.client.subscribe(self.topics.verdict, qos=1)
        self.client.loop_start()
        if not subscribed.wait(5):
            raise TimeoutError("gate: verdict subscription not acknowledged")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        self.raw.put(payload)
        result = self.verifier.accept_payload(payload)
        if isinstance(result, Accepted):
            with self._lock:
                waiter = self._waiters.get(result.message.request_id or "")
            if waiter is not None:
                waiter.put(result)

    def ask(self, request: VerifyRequest | Message) -> Reply:
        """Send a sealed request; its accepted reply (verdict, batch verdict or error)."""
        assert isinstance(request, VerifyRequest) or request.type == "verify_batch_request"
        waiter: queue.Queue[Accepted[Reply]] = queue.Queue()
        with self._lock:
            self._waiters[request.id] = waiter
        payload = self.verifier.seal_request(request)
        self.client.publish(self.topics.verify_request, payload, qos=1)
        try:
            return waiter.get(timeout=self.timeout_s).message
        finally:
            with self._lock:
                self._waiters.pop(request.id, None)

    def verify(self, facts: CanonicalItemId, **fields: Any) -> Reply:
        """Ask about one item."""
        return self.ask(VerifyRequest(site=self.site, gate=self.gate, item=facts, **fields))

    def publish_raw(self, payload: bytes, topic: str | None = None) -> None:
        """Publish bytes as they are on the request topic (or ``topic``)."""
        self.client.publish(topic or self.topics.verify_request, payload, qos=1).wait_for_publish(5)

    def next_raw(self, timeout: float = 5.0) -> bytes:
        """The next payload seen on the verdict topic, accepted or not."""
        return self.raw.get(timeout=timeout)

    def send_event(self, event: GateEvent | Heartbeat, topic: str | None = None) -> None:
        """Publish a sealed gate event (or heartbeat) on its topic."""
        if topic is None:
            topic = self.topics.event if isinstance(event, GateEvent) else self.topics.heartbeat
        self.client.publish(topic, seal(event, self.key), qos=1).wait_for_publish(5)

    def gate_event(self, n: int, decision: Decision, **fields: Any) -> GateEvent:
        """A gate event about item ``n``."""
        now = time.time()
        values: dict[str, Any] = {
            "site": self.site,
            "gate": self.gate,
            "event_id": uuid.uuid4().hex,
            "item": item(n),
            "decision": decision,
            "scanned_at": now - 0.5,
            "decided_at": now - 0.4,
        }
        values.update(fields)
        return GateEvent(**values)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def gate_client(url: str, site: str, gate: str = GATE) -> Iterator[Gate]:
    """A connected :class:`Gate`, closed afterwards."""
    g = Gate(url, site, gate)
    try:
        yield g
    finally:
        g.close()
