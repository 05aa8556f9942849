"""The gate agent's verification client: items in, authenticated verdicts out, over MQTT.

One paho client (TCP_NODELAY) subscribed to the gate's verdict topic. :meth:`VerifyClient.submit`
(:meth:`VerifyClient.submit_all` for several) queues items and returns a
:class:`~concurrent.futures.Future` of each one's
:class:`~edge_agent.decision.VerifyOutcome`. A ``verify_request`` goes out for a lone item,
a ``verify_batch_request`` when several are waiting (at most ``batch_max`` items, an item
waiting at most ``batch_wait_s`` for company). A full batch, or with ``batch_wait_s`` 0
what was submitted together, is sent from the submitting thread; a sender thread sends the
batches whose wait is over and expires deadlines (it is woken only when its next wake-up
moves earlier), unless the owner's loop does that itself (:meth:`VerifyClient.pump`: the
gate agent, so that an item crosses no thread on its way out). Every reply is checked with a
:class:`~gatewire.auth.VerdictVerifier` (authentic, bound to its request id and MAC, first
of its kind, fresh); refused replies are counted and ignored.

Fail closed: an item without a trustworthy answer by its deadline resolves as TIMEOUT; with
no connection (at submit, or lost while in flight) it resolves at once as OFFLINE. paho
reconnects with backoff in the background.

The client's connection also carries the gate's availability: its last will (registered
before connecting) sets the retained ``status`` to ``online: false``; every (re)connect
publishes ``online: true`` and a clean :meth:`VerifyClient.close` ``online: false``.
:meth:`VerifyClient.publish` lets :class:`~edge_agent.presence.Presence` send heartbeats
on the same connection.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge_agent.assembly import AssembledItem
from edge_agent.decision import VerifyOutcome, VerifyStatus
from edge_agent.presence import availability_payload
from edge_agent.profile import GateProfile
from edge_agent.vision.checker import VisionResult
from gatewire.auth import Accepted, VerdictVerifier
from gatewire.item import CanonicalItemId
from gatewire.messages import (
    Availability,
    BatchItem,
    ErrorReply,
    ItemResult,
    ReadSource,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
    decode,
)
from gatewire.mqtt import BrokerAddress, make_client
from gatewire.topics import GateTopics

__all__ = ["VerifyClient", "VerifyItem"]

log = logging.getLogger(__name__)

_GRACE_S: Final = 0.05
"""The verifier waits this much past an item's deadline (the client resolves it first)."""
_OFFLINE_WAIT_S: Final = 2.0
"""How long :meth:`VerifyClient.close` waits for the broker to take ``online: false``."""


@dataclass(frozen=True, slots=True)
class VerifyItem:
    """What the gate tells the gateway about one item."""

    item: CanonicalItemId
    sources: tuple[ReadSource, ...] = ()
    also_read: tuple[CanonicalItemId, ...] = ()
    vision: VisionResult | None = None
    seller: str | None = None

    @classmethod
    def from_assembled(
        cls, assembled: AssembledItem, vision: VisionResult | None = None, seller: str | None = None
    ) -> VerifyItem:
        """The facts of an assembled item; raises ValueError for an item without an ID."""
        if assembled.item is None:
            raise ValueError(f"window {assembled.window_id} has no item ID to verify")
        return cls(assembled.item, assembled.sources, assembled.also_read, vision, seller)

    def wire_fields(self) -> dict[str, Any]:
        """The request fields, only those with a value (defaults stay off the wire)."""
        fields: dict[str, Any] = {"item": self.item}
        if self.sources:
            fields["sources"] = list(dict.fromkeys(self.sources))
        if self.also_read:
            fields["also_read"] = list(self.also_read)
        if self.vision is not None:
            fields["vision_verdict"] = self.vision.verdict
            if self.vision.score is not None:
                fields["vision_score"] = min(1.0, max(0.0, self.vision.score))
        if self.seller is not None:
            fields["seller"] = self.seller
        return fields


@dataclass(slots=True)
class _Slot:
    facts: VerifyItem
    deadline: float
    queued_at: float
    future: Future[VerifyOutcome] = field(default_factory=Future)
    resolved: bool = False  # under the client's lock (cheaper than asking the future)
    request_id: str = ""  # once sent


class VerifyClient:
    """Verification of items over MQTT for one gate. Thread-safe; callbacks of the futures
    run on the MQTT or sender thread and must be quick."""

    def __init__(
        self,
        url: str,
        site: str,
        gate: str,
        key: bytes,
        *,
        batch_max: int = 32,
        batch_wait_s: float = 0.0,
        default_timeout_s: float = 1.0,
        keepalive_s: int = 15,
        reconnect_s: tuple[int, int] = (1, 8),
        client_id: str | None = None,
        qos: int = 1,
    ) -> None:
        """``qos``: of the requests and of the verdict subscription."""
        self.topics = GateTopics(site, gate)
        self.qos = qos
        self.batch_max, self.batch_wait_s = batch_max, batch_wait_s
        self.default_timeout_s = default_timeout_s
        self._address = BrokerAddress.from_url(url)
        self._keepalive = keepalive_s
        self._verifier = VerdictVerifier(site, gate, key, timeout_s=default_timeout_s)
        self._lock = threading.Condition()
        self._queue: deque[_Slot] = deque()
        self._requests: dict[str, list[_Slot]] = {}
        self._deadlines: list[tuple[float, int, _Slot]] = []  # heap of sent slots
        self._pushed = itertools.count()
        self._counters: Counter[str] = Counter()
        self._connected = False
        self._closing = False
        self._sender_wake_at = -math.inf  # when the sleeping sender thread wakes (-inf: awake)
        self._subscribed = threading.Event()
        self._client = make_client(client_id or f"provgate-gate-{site}-{gate}")
        self._client.reconnect_delay_set(*reconnect_s)
        self._client.will_set(
            self.topics.status, availability_payload(site, gate, online=False), qos=1, retain=True
        )
        self.on_connected: Callable[[], None] | None = None
        """Called (on paho's thread, keep it quick) after each (re)connect's ``online: true``."""
        self.on_gateway_status: Callable[[bool], None] | None = None
        """Called (on paho's thread) with the gateway's retained availability as it changes:
        True online, False offline (its last will or a clean stop). Advisory only."""
        self.gateway_online: bool | None = None
        """The gateway's last announced availability; None until one was seen."""
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._sender = threading.Thread(target=self._run, name=f"verify-{gate}", daemon=True)
        self.pumped = False
        """True: the owner calls :meth:`pump` (set before :meth:`start`; no sender thread)."""

    @classmethod
    def from_profile(cls, profile: GateProfile, key: bytes) -> VerifyClient:
        """A client with the profile's broker, batching, keepalive and reconnect backoff;
        items default to the profile's verification budget as their deadline."""
        v, presence = profile.verification, profile.presence
        return cls(
            v.mqtt_url,
            profile.gate.site,
            profile.gate.id,
            key,
            batch_max=v.batch_max,
            batch_wait_s=v.batch_wait_ms / 1000,
            default_timeout_s=profile.verification_budget_s,
            keepalive_s=v.keepalive_s,
            reconnect_s=(presence.reconnect_min_s, presence.reconnect_max_s),
        )

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, wait_s: float = 5.0) -> bool:
        """Connect in the background and start sending; True when subscribed within
        ``wait_s`` (otherwise items resolve OFFLINE until the connection comes up)."""
        if self._address.username is not None:
            self._client.username_pw_set(self._address.username, self._address.password)
        self._client.connect_async(self._address.host, self._address.port, self._keepalive)
        self._client.loop_start()
        if not self.pumped:
            self._sender.start()
        return self._subscribed.wait(wait_s)

    def close(self) -> None:
        """Publish ``online: false``, disconnect; items still waiting resolve OFFLINE."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._client.is_connected():
            offline = availability_payload(self.topics.site, self.topics.gate, online=False)
            info = self._client.publish(self.topics.status, offline, qos=1, retain=True)
            try:
                info.wait_for_publish(_OFFLINE_WAIT_S)
            except (RuntimeError, ValueError) as exc:  # lost meanwhile: the will says it
                log.info("verify client: offline status not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        if self._sender.is_alive():
            self._sender.join(5)
        self._fail_all(VerifyStatus.OFFLINE, "client closed")

    @property
    def connected(self) -> bool:
        """True while connected and subscribed to the verdict topic."""
        return self._connected

    def counters(self) -> dict[str, int]:
        """connects, sent (requests), items_sent, answered, timeouts, errors, offline,
        late, refused and refused.<reason>."""
        with self._lock:
            return dict(self._counters)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Publish on this client's connection (e.g. a heartbeat); False when there is no
        connection or paho refused it (nothing is queued for later)."""
        if not self._client.is_connected():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    # --- submitting ---------------------------------------------------------------------

    def submit(self, facts: VerifyItem, deadline: float | None = None) -> Future[VerifyOutcome]:
        """Queue one item; its future resolves with the gateway's answer, or TIMEOUT at
        ``deadline`` (``time.monotonic()``; default: now + ``default_timeout_s``), or
        OFFLINE as soon as the connection is missing."""
        return self.submit_all([(facts, deadline)])[0]

    def submit_all(
        self, items: Sequence[tuple[VerifyItem, float | None]]
    ) -> list[Future[VerifyOutcome]]:
        """:meth:`submit` for several items at once (they may share a request)."""
        now = time.monotonic()
        timeout = self.default_timeout_s
        slots = [_Slot(f, now + timeout if d is None else d, now) for f, d in items]
        batches: list[list[_Slot]] = []
        with self._lock:
            if not self._connected or self._closing:
                for slot in slots:
                    outcome = VerifyOutcome(VerifyStatus.OFFLINE, detail="not connected")
                    self._resolve(slot, outcome)
                return [slot.future for slot in slots]
            self._queue.extend(slots)
            queue, size = self._queue, self.batch_max
            while len(queue) >= size or (queue and self.batch_wait_s <= 0):
                batches.append([queue.popleft() for _ in range(min(size, len(queue)))])
            if queue:
                self._wake_sender_by(queue[0].queued_at + self.batch_wait_s)
        for batch in batches:  # on this thread: no hand-over to the sender thread
            self._send(batch)
        return [slot.future for slot in slots]

    # --- sender thread ------------------------------------------------------------------

    def pump(self) -> float:
        """Expire the deadlines that passed and send the batches whose wait is over; the
        seconds until it must be called again (``inf``: not before the next submit).

        For an owner whose own loop calls this after each submit and when that time comes
        (the gate agent): set :attr:`pumped` before :meth:`start` and no sender thread runs.
        """
        while True:
            with self._lock:
                now = time.monotonic()
                self._expire(now)
                wait = self._next_wake(now)
                if not self._queue or (wait > 0 and len(self._queue) < self.batch_max):
                    return wait
                size = min(len(self._queue), self.batch_max)
                batch = [self._queue.popleft() for _ in range(size)]
            self._send(batch)  # outside the lock: paho's thread needs it for replies

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                now = time.monotonic()
                self._expire(now)
                wait = self._next_wake(now)
                if not self._queue or (wait > 0 and len(self._queue) < self.batch_max):
                    wait = max(wait, 0.0005)
                    self._sender_wake_at = now + wait
                    self._lock.wait(None if wait == math.inf else wait)
                    self._sender_wake_at = -math.inf  # awake: it looks at everything
                    continue
                size = min(len(self._queue), self.batch_max)
                batch = [self._queue.popleft() for _ in range(size)]
            self._send(batch)  # outside the lock: paho's thread needs it for replies

    def _next_wake(self, now: float) -> float:
        """Seconds until the oldest queued item must go or the next deadline passes."""
        wake = math.inf
        if self._queue:
            wake = self._queue[0].queued_at + self.batch_wait_s - now
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].resolved:
            heapq.heappop(deadlines)
        if deadlines:
            wake = min(wake, deadlines[0][0] - now)
        return wake

    def _send(self, batch: Sequence[_Slot]) -> None:
        site, gate = self.topics.site, self.topics.gate
        request: VerifyRequest | VerifyBatchRequest
        timeout = max(s.deadline for s in batch) - time.monotonic() + _GRACE_S
        try:  # ValidationError is a ValueError; so are too large and unencodable
            if len(batch) == 1:
                request = VerifyRequest(site=site, gate=gate, **batch[0].facts.wire_fields())
            else:
                items = [BatchItem(index=i, **s.facts.wire_fields()) for i, s in enumerate(batch)]
                request = VerifyBatchRequest(site=site, gate=gate, items=items)
            payload = self._verifier.seal_request(request, timeout_s=max(timeout, _GRACE_S))
        except ValueError as exc:
            detail = str(exc).splitlines()[0]
            with self._lock:
                for slot in batch:
                    self._resolve(slot, VerifyOutcome(VerifyStatus.ERROR, detail=detail))
            return
        with self._lock:
            self._requests[request.id] = list(batch)
            for slot in batch:
                slot.request_id = request.id
                heapq.heappush(self._deadlines, (slot.deadline, next(self._pushed), slot))
            self._wake_sender_by(min(s.deadline for s in batch))  # it expires them
            if not self._connected:  # lost while the batch was being built
                self._finish(request.id, VerifyStatus.OFFLINE, "not connected")
                return
            self._counters["sent"] += 1
            self._counters["items_sent"] += len(batch)
        info = self._client.publish(self.topics.verify_request, payload, qos=self.qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._finish(request.id, VerifyStatus.OFFLINE, f"publish failed: rc {info.rc}")

    def _expire(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, slot = heapq.heappop(deadlines)
            if not slot.resolved:
                request_id = slot.request_id
                self._resolve(slot, VerifyOutcome(VerifyStatus.TIMEOUT, request_id=request_id))
                self._drop_if_done(request_id)
        for slot in [s for s in self._queue if now >= s.deadline]:
            self._queue.remove(slot)
            self._resolve(slot, VerifyOutcome(VerifyStatus.TIMEOUT))

    # --- MQTT callbacks (paho's thread) -------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        if rc.is_failure:
            log.warning("verify client: connection refused: %s", rc)
            return
        client.subscribe([(self.topics.verdict, self.qos), (self.topics.gateway_status, 1)])
        online = availability_payload(self.topics.site, self.topics.gate, online=True)
        client.publish(self.topics.status, online, qos=1, retain=True)
        callback = self.on_connected
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("verify client: on_connected callback failed")

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _m: int, codes: Any, _p: object) -> None:
        if any(code.is_failure for code in codes):
            log.warning("verify client: subscription to %s refused", self.topics.verdict)
            return
        with self._lock:
            self._connected = True
            self._counters["connects"] += 1
        self._subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        with self._lock:
            self._connected = False
            self._subscribed.clear()
        self._fail_all(VerifyStatus.OFFLINE, f"disconnected: {rc}")

    def _on_gateway_status(self, payload: bytes) -> None:
        """The gateway's availability (unauthenticated: it can pause event delivery, never
        make an item pass); a malformed one is counted and ignored."""
        message = decode(payload)
        if not isinstance(message, Availability) or message.who != "gateway":
            with self._lock:
                self._counters["gateway_status.bad"] += 1
            return
        if message.online != self.gateway_online:
            log.info("verify client: gateway %s", "online" if message.online else "offline")
        self.gateway_online = message.online
        callback = self.on_gateway_status
        if callback is not None:
            try:
                callback(message.online)
            except Exception:
                log.exception("verify client: on_gateway_status callback failed")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.gateway_status:
            self._on_gateway_status(bytes(msg.payload))
            return
        result = self._verifier.accept_payload(bytes(msg.payload))
        with self._lock:
            if not isinstance(result, Accepted):
                self._counters["refused"] += 1
                self._counters[f"refused.{result.reason.value}"] += 1
                log.debug("verify client: refused reply: %s", result.detail)
                return
            reply = result.message
            slots = self._requests.get(reply.request_id or "")
            if slots is None:  # accepted, but every item already gave up waiting
                self._counters["late"] += 1
                return
            if isinstance(reply, ErrorReply):
                code = (f"error.{reply.code.value}",)
                self._finish(reply.request_id or "", VerifyStatus.ERROR, reply.detail, code)
                return
            results: Sequence[Verdict | ItemResult]
            results = [reply] if isinstance(reply, Verdict) else reply.results
            now = time.monotonic()
            for slot, outcome in zip(slots, results, strict=True):
                if now > slot.deadline:  # the sender thread has not expired it yet
                    self._resolve(slot, VerifyOutcome(VerifyStatus.TIMEOUT, detail="late"))
                    continue
                answer = VerifyOutcome(
                    VerifyStatus.ANSWERED,
                    outcome.decision,
                    tuple(outcome.reasons),
                    outcome.inspect,
                    outcome.ledger_state,
                    reply.request_id,
                )
                self._resolve(slot, answer)
            self._drop_if_done(reply.request_id or "")

    # --- bookkeeping (under the lock) ---------------------------------------------------

    def _wake_sender_by(self, when: float) -> None:
        """Wake the sender thread if it sleeps past ``when`` (monotonic)."""
        if when < self._sender_wake_at:
            self._sender_wake_at = -math.inf
            self._lock.notify_all()

    def _resolve(self, slot: _Slot, outcome: VerifyOutcome) -> None:
        if slot.resolved:
            return
        slot.resolved = True
        self._counters[_COUNTER[outcome.status]] += 1
        slot.future.set_result(outcome)

    def _finish(
        self, request_id: str, status: VerifyStatus, detail: str, reasons: tuple[str, ...] = ()
    ) -> None:
        for slot in self._requests.get(request_id, ()):
            self._resolve(
                slot, VerifyOutcome(status, reasons=reasons, request_id=request_id, detail=detail)
            )
        self._drop_if_done(request_id)

    def _drop_if_done(self, request_id: str) -> None:
        slots = self._requests.get(request_id)
        if slots is not None and all(s.resolved for s in slots):
            del self._requests[request_id]
            self._verifier.forget(request_id)

    def _fail_all(self, status: VerifyStatus, detail: str) -> None:
        with self._lock:
            for request_id in list(self._requests):
                self._finish(request_id, status, detail)
            while self._queue:
                self._resolve(self._queue.popleft(), VerifyOutcome(status, detail=detail))
            self._lock.notify_all()


_COUNTER: Final = {
    VerifyStatus.ANSWERED: "answered",
    VerifyStatus.TIMEOUT: "timeouts",
    VerifyStatus.ERROR: "errors",
    VerifyStatus.OFFLINE: "offline",
}
