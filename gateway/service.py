"""The MQTT verification service: answers gates' verification requests, records their events.

One :class:`GatewayService` is one worker. It subscribes, as a member of the shared
subscription group ``$share/{group}/…`` (so several workers split the load), to every
gate's ``verify/request``, ``event`` and ``heartbeat`` topics, and directly to every
gate's retained ``status``. It publishes its own availability, retained, on
``provgate/v1/{site}/gateway/status``, with a last will that flips it to offline, and
resubscribes after every reconnect.

Requests are authenticated (:meth:`RequestVerifier.check_payload`) and answered on the
MQTT client's network thread: no hand-off to another thread, whose wake-ups and GIL
switches cost more CPU than verifying a request. While the next packet in the socket's
receive buffer is a whole PUBLISH (paho reads it next and calls back again), a request is
held; then every request held (up to 32, or 1,000 items) is verified in as few
``verify_many`` calls as the rules allow (one per gate kind, for requests of distinct
items), so that under load the database round trips of a verification are shared by many
requests. Each reply, a ``verdict`` or ``batch_verdict`` bound to its request's id and
MAC, is built from the wire templates, sealed with the gate's key and published on the
gate's verdict topic. Anything refused is counted by kind, logged once
per burst, and answered with a sealed ``error`` when the gate is known from the topic.
Events, heartbeats and statuses go through a bounded queue to a background thread that
owns the database writes (ledger appends with the item projection's fold, gate status), so
a slow disk never delays a verdict; it lets them gather for a few milliseconds, then records
the events among them in one transaction. Gate events arrive on a second client of their
own, on a persistent session with a stable client id and manual acknowledgements: an
event is acknowledged (PUBACK) only once the background thread is done with it (recorded
and committed, refused, or failed and counted), so the broker keeps, and sends again to
the restarted worker, every event a dead worker had not finished; when the queue is full,
that client's callback waits for room (back-pressure) instead of dropping the event.
Nothing a client sends can raise out of a paho callback.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import queue
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import GateKind, GatewayConfig
from gateway.counters import Counters, RefusalLog
from gatewire.auth import (
    Accepted,
    RefusalReason,
    Refused,
    RequestVerifier,
    SiteKeyring,
    seal_body,
)
from gatewire.messages import (
    Availability,
    Decision,
    DecodeError,
    ErrorCode,
    ErrorReply,
    GateEvent,
    Heartbeat,
    VerifyBatchRequest,
    VerifyRequest,
    batch_verdict_body,
    decode,
    encode,
    new_message_id,
    now_ts,
    verdict_body,
)
from gatewire.mqtt import BrokerAddress, make_client
from gatewire.topics import (
    GATEWAY,
    Channel,
    GateTopics,
    ParsedTopic,
    SiteTopics,
    TopicError,
    parse_topic,
)

__all__ = [
    "BatchVerifier",
    "EventSink",
    "GatewayService",
    "OutcomeLike",
    "StatusSink",
    "open_service",
]

log = logging.getLogger(__name__)

_ERROR_OF: Final = {
    RefusalReason.BAD_MAC: ErrorCode.UNAUTHENTICATED,
    RefusalReason.WRONG_GATE: ErrorCode.UNKNOWN_GATE,
    RefusalReason.STALE: ErrorCode.STALE,
    RefusalReason.REPLAYED: ErrorCode.REPLAYED,
    RefusalReason.TOO_LARGE: ErrorCode.TOO_LARGE,
    RefusalReason.UNSUPPORTED_VERSION: ErrorCode.UNSUPPORTED_VERSION,
}
_DECISION_COUNTER: Final = {d: f"verdict.{d.value.lower()}" for d in Decision}
_BACKGROUND_BATCH: Final = 500
_LINGER_S: Final = 0.05
"""How long the background thread lets messages gather after the first one before writing
them. At the demo site's 80 gate events/s they arrive one by one; recorded alone, each paid
a whole transaction: its statements, its commit (an fsync) and cold caches (measured with
``python -m bench ingest``: 0.9 ms of CPU per event alone, 0.5 ms in fours)."""
_HELD_ITEMS: Final = 1000
"""Most items held to be answered together (requests waiting are answered in one go)."""
_HELD_REQUESTS: Final = 32
"""Most requests held: the first one waits while the others are read and checked."""
_PEEK: Final = socket.MSG_PEEK | socket.MSG_DONTWAIT
_MAX_INFLIGHT: Final = 256
"""Verdicts (QoS 1) paho keeps in flight, unacknowledged, before it queues the next: its
default of 20 held back bursts of answers to held requests (measured: ~8 % more CPU per
request under pipelined load)."""
_EVENTS_IN_FLIGHT: Final = 2 * _BACKGROUND_BATCH
"""Gate events the broker may have sent the events client unacknowledged (MQTT 5 Receive
Maximum): a full transaction being committed and the next one gathering. Without it an
MQTT 5 client gets mosquitto's ``max_inflight_messages`` (20 by default), which at a few
thousand events/s caps every transaction at 20 events; MQTT 3.1.1 has no such property
(the broker's ``max_inflight_messages`` governs)."""
_SESSION_EXPIRY_S: Final = 86_400
"""How long the broker keeps the events client's session (MQTT 5) while it is away."""
_PUT_WAIT_S: Final = 0.1
"""Back-pressure: how often a callback waiting for room in the queue checks for stop()."""
_STOP: Final = object()


class OutcomeLike(Protocol):
    """One item's answer (``gateway.rules.Outcome`` fits)."""

    @property
    def decision(self) -> Decision: ...
    @property
    def reasons(self) -> tuple[str, ...]: ...
    @property
    def inspect(self) -> bool: ...
    @property
    def ledger_state(self) -> str | None: ...


class BatchVerifier(Protocol):
    """What answers requests (``gateway.rules.Verifier`` fits). Called by one thread at a time."""

    def verify_many(self, facts: Sequence[Any], *, gate: str, now: float) -> Sequence[OutcomeLike]:
        """One outcome per item, same order."""
        ...


class EventSink(Protocol):
    """Where accepted gate events go (``gateway.ingest.EventIngestor`` fits)."""

    def ingest(self, events: Sequence[GateEvent]) -> Any:
        """Record the events (idempotently); has ``recorded`` and ``duplicates``."""
        ...


class StatusSink(Protocol):
    """Where gate statuses go (``gateway.registry.Registry`` fits)."""

    def record_gate_status(
        self,
        site: str,
        gate: str,
        *,
        now: float,
        online: bool | None = None,
        counters: dict[str, int] | None = None,
        health: dict[str, str] | None = None,
    ) -> None:
        """Merge one gate's report."""
        ...


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An authenticated request waiting for its answer."""

    gate: str
    request: VerifyRequest | VerifyBatchRequest
    mac: str

    @property
    def size(self) -> int:
        """Items in the request."""
        return 1 if isinstance(self.request, VerifyRequest) else len(self.request.items)


def _calls(
    work: list[_Accepted], kind_of: Callable[[str], object]
) -> list[tuple[str, list[_Accepted]]]:
    """The ``verify_many`` calls that answer ``work``, as ``(gate, requests)``, keeping each
    request's meaning: a call holds requests of gates of one kind only (the rules read
    whether the asking gate is inbound), a batch request alone (``read.duplicate`` is about
    one batch), and single requests of distinct items (two gates, or one gate twice,
    asking about one item is not a duplicate read)."""
    calls: list[tuple[str, list[_Accepted]]] = []
    open_calls: dict[object, tuple[list[_Accepted], set[str]]] = {}
    for w in work:
        if not isinstance(w.request, VerifyRequest):
            calls.append((w.gate, [w]))
            continue
        key = w.request.item.key
        kind = kind_of(w.gate)
        found = open_calls.get(kind)
        if found is None or key in found[1]:
            found = ([], set())
            open_calls[kind] = found
            calls.append((w.gate, found[0]))
        found[0].append(w)
        found[1].add(key)
    return calls


@dataclass(frozen=True, slots=True)
class _Work:
    """A message for the background thread; for a gate event, what acknowledges it: its
    packet id and the events client's connection it came on (-1: nothing to acknowledge)."""

    channel: Channel
    gate: str
    payload: bytes
    mid: int = 0
    connection: int = -1


class GatewayService:
    """One gateway worker on the broker. ``start()`` connects and serves in the background
    (paho's network thread, the database thread); ``stop()`` goes offline cleanly.

    ``verifier`` answers every request, on the network thread (and, under a lock, on the
    thread calling :meth:`stop` for the requests held then). ``make_background`` is called
    on the background thread to build what it writes with (its own database connection):
    it returns ``(event sink, status sink, close)``. After taking a message, the background
    thread waits ``linger_s`` for more before writing them all in one transaction (0: no wait).
    """

    def __init__(
        self,
        config: GatewayConfig,
        verifier: BatchVerifier,
        make_background: Callable[[], tuple[EventSink, StatusSink, Callable[[], None]]]
        | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        linger_s: float = _LINGER_S,
    ) -> None:
        self.config = config
        self._linger_s = linger_s
        self.site = config.site
        self._verifier = verifier
        self._kinds: dict[str, GateKind] = {}
        self._make_background = make_background
        self._wall = wall_clock
        self.keyring = SiteKeyring(config.site, site_secret=config.site_secret_bytes())
        limits = config.limits
        self._requests = RequestVerifier(
            self.keyring,
            freshness_s=limits.freshness_s,
            max_remembered=limits.max_remembered,
            max_payload=limits.max_payload,
            wall_clock=wall_clock,
        )
        self._max_payload = limits.max_payload
        self._qos = config.mqtt.qos
        self._topics = SiteTopics(config.site)
        self._verdict_topics: dict[str, str] = {}
        self._topic_of: dict[str, ParsedTopic] = {}
        """Topics of this site's messages, parsed (each gate's few are met again and again)."""
        self._id_prefix = new_message_id()[:16]
        self._id_counter = itertools.count()
        self.counters = Counters()
        self._refusals = RefusalLog(log, limits.status_interval_s)
        self._queue: queue.Queue[_Work | object] = queue.Queue(limits.queue_size)
        self._held: list[_Accepted] = []
        self._held_items = 0
        self._answering = threading.RLock()
        """Guards ``_held`` and the verifier (the network thread, or ``stop()``); reentrant,
        for a publish that fails may call ``on_disconnect`` back on the same thread."""
        self._peek_limit = limits.max_payload + 70_000  # + fixed header, topic, properties
        self._background: threading.Thread | None = None
        self._background_ready = threading.Event()
        self._background_error: BaseException | None = None
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._stopping = False
        self._started = time.monotonic()
        self.on_stopped: Callable[[], None] | None = None
        """Called once by :meth:`stop` after everything stopped (closes the verifier's DB)."""
        protocol = (
            MQTTProtocolVersion.MQTTv5
            if config.mqtt.protocol == 5
            else MQTTProtocolVersion.MQTTv311
        )
        self.client_id = f"provgate-gateway-{config.site}-{config.mqtt.worker}-{os.getpid()}"
        self.events_client_id = f"provgate-gateway-{config.site}-{config.mqtt.worker}-events"
        """Stable (no pid): a restarted worker resumes the session of the one before."""
        self._events_subscribed = threading.Event()
        self._events_client = None if make_background is None else self._new_events_client(protocol)
        self._events_connection = 0
        """Counts the events client's connections; a packet id acknowledges only on its own."""
        self._acking = threading.Lock()
        """Orders acknowledgements (background thread) against a lost connection (paho's)."""
        self._client = make_client(self.client_id, protocol)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_inflight_messages_set(_MAX_INFLIGHT)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_suback(self._subscribed, "subscription")
        self._client.on_message = self._on_message
        self._client.will_set(
            self._topics.gateway_status, self._availability(online=False), qos=1, retain=True
        )

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the background thread, connect and subscribe; raises on failure."""
        if self._make_background is not None:
            self._background = threading.Thread(
                target=self._background_main, name="gateway-db", daemon=True
            )
            self._background.start()
            if not self._background_ready.wait(timeout):
                raise TimeoutError("gateway: the database thread did not start")
            if self._background_error is not None:
                raise RuntimeError(
                    f"gateway: cannot open the database: {self._background_error}"
                ) from self._background_error
        address = BrokerAddress.from_url(self.config.mqtt.url)
        events = self._events_client
        clients = [self._client] if events is None else [self._client, events]
        keepalive = self.config.mqtt.keepalive_s
        try:
            for client in clients:
                if address.username is not None:
                    client.username_pw_set(address.username, address.password)
                if client is events and self.config.mqtt.protocol == 5:
                    session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    session.SessionExpiryInterval = _SESSION_EXPIRY_S
                    session.ReceiveMaximum = _EVENTS_IN_FLIGHT
                    client.connect(
                        address.host, address.port, keepalive, clean_start=False, properties=session
                    )
                else:
                    client.connect(address.host, address.port, keepalive=keepalive)
        except OSError as exc:
            for client in clients:
                client.disconnect()
            self._stop_background()
            raise ConnectionError(
                f"gateway: cannot reach the broker at {address.host}:{address.port}: {exc}"
            ) from exc
        for client in clients:
            client.loop_start()
        subscribed = self._subscribed.wait(timeout)
        if subscribed and events is not None:
            subscribed = self._events_subscribed.wait(timeout)
        if not subscribed:
            self.stop()
            raise TimeoutError("gateway: subscriptions not acknowledged by the broker")
        _freeze_start_up_objects()

    def stop(self) -> None:
        """Answer the requests already accepted, publish ``online: false``, disconnect, and
        stop the background thread (which records what it holds)."""
        if self._stopping:
            return
        self._stopping = True  # from now on the network thread holds no request
        self._answer_held()
        if self._connected.is_set():
            info = self._client.publish(
                self._topics.gateway_status, self._availability(online=False), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                log.warning("gateway: offline status not confirmed by the broker")
        self._client.disconnect()
        self._client.loop_stop()
        self._take_events_sent()
        self._stop_background()  # records, then acknowledges, the events it holds
        if self._events_client is not None:
            self._events_client.disconnect()  # after those acknowledgements, in paho's queue
            self._events_client.loop_stop()
        if self.on_stopped is not None:
            self.on_stopped()
        log.info("gateway worker %s stopped; counters: %s", self.config.mqtt.worker, self.counts())

    def _stop_background(self) -> None:
        if self._background is None:
            return
        try:
            self._queue.put(_STOP, timeout=5.0)
        except queue.Full:
            log.warning(
                "gateway: background queue full at shutdown; %d dropped", self._queue.qsize()
            )
        self._background.join(timeout=10.0)
        self._background = None

    def __enter__(self) -> GatewayService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def counts(self) -> dict[str, int]:
        """Every counter (requests, verdicts by decision, refusals by kind, events …)."""
        return self.counters.snapshot()

    # ---- connection callbacks (paho thread) ----------------------------------------------

    def _availability(self, *, online: bool) -> bytes:
        return encode(Availability(site=self.site, gate=GATEWAY, online=online, who="gateway"))

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if reason.is_failure:
            log.error("gateway: broker refused the connection: %s", reason)
            return
        group = self.config.mqtt.share_group
        topics = self._topics
        shared = [
            (topics.shared_verify_requests(group), 1),
            (f"$share/{group}/{topics.heartbeats}", 0),
            (topics.statuses, 1),
        ]
        client.subscribe(shared)  # gate events: on the events client
        client.publish(topics.gateway_status, self._availability(online=True), qos=1, retain=True)
        self._connected.set()
        log.info("gateway %s connected to the broker as %s", self.site, self.client_id)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        self._answer_held()  # the replies wait in paho's queue for the next connection
        if not self._stopping:
            log.warning("gateway: lost the broker (%s); reconnecting", reason)

    @staticmethod
    def _on_suback(done: threading.Event, what: str) -> Callable[..., None]:
        """An ``on_subscribe`` callback that sets ``done`` once the broker granted every
        subscription of ``what`` (and logs a refusal)."""

        def on_subscribe(
            client: mqtt.Client, userdata: object, mid: int, reasons: Any, properties: object
        ) -> None:
            failed = [r for r in reasons if getattr(r, "is_failure", False)]
            if failed:
                log.error("gateway: %s refused by the broker: %s", what, failed)
                return
            done.set()

        return on_subscribe

    # ---- the events client (its own paho thread) -----------------------------------------

    def _new_events_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        """The gate events' client: persistent session, acknowledgements sent by us."""
        v5 = protocol is MQTTProtocolVersion.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.events_client_id,
            protocol=protocol,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        client.on_socket_open = _nodelay
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_events_connect
        client.on_disconnect = self._on_events_disconnect
        client.on_subscribe = self._on_suback(self._events_subscribed, "events subscription")
        client.on_message = self._on_event_message
        return client

    def _on_events_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if reason.is_failure:
            log.error("gateway: broker refused the events connection: %s", reason)
            return
        client.subscribe([(self._events_filter(), 1)])
        log.info(
            "gateway %s: events client %s connected (session %s)",
            self.site,
            self.events_client_id,
            "resumed" if flags.session_present else "new",
        )

    def _events_filter(self) -> str:
        return f"$share/{self.config.mqtt.share_group}/{self._topics.events}"

    def _take_events_sent(self) -> None:
        """At stop, take the events the broker sent before it: one round trip on the events
        connection (a SUBACK follows every message the broker wrote before it)."""
        client = self._events_client
        if client is None or not client.is_connected():
            return
        self._events_subscribed.clear()
        client.subscribe([(self._events_filter(), 1)])
        if not self._events_subscribed.wait(2.0):
            log.warning("gateway: the broker did not answer the events client at stop")

    def _on_events_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        with self._acking:  # what that connection delivered the broker sends again
            self._events_connection += 1
        self._events_subscribed.clear()
        if not self._stopping:
            log.warning("gateway: lost the broker on the events client (%s); reconnecting", reason)

    def _on_event_message(
        self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage
    ) -> None:
        """Hand a gate event to the background thread, which acknowledges it when done;
        wait while its queue is full, unless stopping: what is not acknowledged (left out,
        or queued after the background thread's last batch) the broker sends again to this
        worker's session."""
        try:
            topic = self._parse_topic(msg.topic)  # counts a topic of another site
            if topic is None or topic.channel is not Channel.EVENT or topic.is_gateway:
                if topic is not None:
                    self._refused("event", "bad_topic", f"not an event topic: {msg.topic!r}")
                if msg.qos:
                    client.ack(msg.mid, msg.qos)  # nothing to record
                return
            payload = msg.payload
            work = _Work(
                Channel.EVENT,
                topic.gate,
                payload if isinstance(payload, bytes) else bytes(payload),
                msg.mid,
                self._events_connection if msg.qos else -1,
            )
            try:
                self._queue.put_nowait(work)
                return
            except queue.Full:
                self.counters.add("events.waited")
            while not self._stopping:
                try:
                    self._queue.put(work, timeout=_PUT_WAIT_S)
                    return
                except queue.Full:
                    continue
        except Exception:  # a paho callback must never raise
            self.counters.add("internal")
            log.exception("gateway: unexpected error taking a gate event on %s", msg.topic)

    def _acknowledge(self, works: Sequence[_Work]) -> None:
        """PUBACK the gate events of ``works`` that came on the events client's current
        connection (a packet id of an earlier one may now name another message)."""
        client = self._events_client
        if client is None:
            return
        with self._acking:
            current = self._events_connection
            for work in works:
                if work.connection == current:
                    client.ack(work.mid, 1)

    # ---- messages (paho thread) ----------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = msg.payload
            self._dispatch(
                client, msg.topic, payload if isinstance(payload, bytes) else bytes(payload)
            )
        except Exception:  # a paho callback must never raise: count, log, carry on
            self.counters.add("internal")
            log.exception("gateway: unexpected error handling a message on %s", msg.topic)
        try:
            if self._held and (self._stopping or not self._publish_waiting(client)):
                self._answer_held()
        except Exception:
            self.counters.add("internal")
            log.exception("gateway: unexpected error answering the requests held")

    def _publish_waiting(self, client: mqtt.Client) -> bool:
        """True when the next packet in the socket's receive buffer is a whole PUBLISH, so
        that paho reads it next and calls :meth:`_on_message` again (which answers the
        requests held, unless yet another one waits). Peeks without reading; False when
        unsure (no plain TCP socket, a partial or other packet, an error)."""
        sock = client.socket()
        if type(sock) is not socket.socket:  # TLS or websockets buffer what they read
            return False
        try:
            head = sock.recv(4096, _PEEK)
        except OSError:  # nothing there (BlockingIOError) or a broken socket
            return False
        if len(head) < 2 or head[0] >> 4 != mqtt.PUBLISH >> 4:
            return False
        length, shift, at = 0, 0, 1
        while True:  # the remaining length: a varint of at most 4 bytes
            if at >= len(head) or at > 4:
                return False
            byte = head[at]
            length |= (byte & 0x7F) << shift
            shift += 7
            at += 1
            if byte < 0x80:
                break
        size = at + length
        if size <= len(head):
            return True
        if size > self._peek_limit:
            return False
        try:
            return len(sock.recv(size, _PEEK)) >= size
        except OSError:
            return False

    def _parse_topic(self, topic_name: str) -> ParsedTopic | None:
        """The topic, parsed, if it is one of this site's (else counted and logged)."""
        topic: ParsedTopic | TopicError | None = self._topic_of.get(topic_name)
        if topic is None:
            topic = parse_topic(topic_name)
            if isinstance(topic, ParsedTopic) and topic.site == self.site:
                if len(self._topic_of) > 4096:
                    self._topic_of.clear()
                self._topic_of[topic_name] = topic
        if not isinstance(topic, ParsedTopic) or topic.site != self.site:
            self._refused("topic", "bad_topic", f"not a topic of site {self.site}: {topic_name!r}")
            return None
        return topic

    def _dispatch(self, client: mqtt.Client, topic_name: str, payload: bytes) -> None:
        topic = self._parse_topic(topic_name)
        if topic is None:
            return
        channel = topic.channel
        if channel is Channel.VERIFY_REQUEST:
            self._on_request(client, topic.gate, payload)
            return
        if topic.is_gateway:
            return  # our own availability (or another worker's)
        try:
            self._queue.put_nowait(_Work(channel, topic.gate, payload))
        except queue.Full:
            self._refused(channel.name.lower(), "overloaded", "background queue full; dropped")

    def _on_request(self, client: mqtt.Client, gate: str, payload: bytes) -> None:
        result = self._requests.check_payload(payload, topic_gate=gate)
        if not isinstance(result, Accepted):
            self._refused("request", result.reason.value, result.detail)
            self._reply_error(
                client, gate, _ERROR_OF.get(result.reason, ErrorCode.MALFORMED), result
            )
            return
        accepted = _Accepted(gate, result.message, result.mac)
        with self._answering:
            self._held.append(accepted)
            self._held_items += accepted.size
            full = self._held_items >= _HELD_ITEMS or len(self._held) >= _HELD_REQUESTS
        if full:
            self._answer_held()

    # ---- answers: every request held, several per verify call ----------------------------

    def _answer_held(self) -> None:
        """Answer every request held, in as few ``verify_many`` calls as the rules allow."""
        with self._answering:
            work, self._held, self._held_items = self._held, [], 0
            if not work:
                return
            try:
                for gate, group in _calls(work, self._kind):
                    self._answer_group(self._verifier, gate, group)
            except Exception:  # a paho callback must never raise
                self.counters.add("internal")
                log.exception("gateway: unexpected error answering %d request(s)", len(work))

    def _kind(self, gate: str) -> GateKind:
        kind = self._kinds.get(gate)
        if kind is None:
            if len(self._kinds) > 4096:
                self._kinds.clear()
            kind = self._kinds[gate] = self.config.gate(gate).kind
        return kind

    def _answer_group(self, verifier: BatchVerifier, gate: str, group: list[_Accepted]) -> None:
        """One ``verify_many`` call (as asked by ``gate``) for ``group``, then one reply
        to each request's gate."""
        facts: list[Any] = []
        singles = 0
        for w in group:
            if isinstance(w.request, VerifyRequest):
                singles += 1
                facts.append(w.request)
            else:
                facts.extend(w.request.items)
        counts = Counter({"items": len(facts), "verify_calls": 1})
        if singles:
            counts["requests"] = singles
        if singles < len(group):
            counts["batch_requests"] = len(group) - singles
        try:
            outcomes = verifier.verify_many(facts, gate=gate, now=self._wall())
            if len(outcomes) != len(facts):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(facts)} items")
        except Exception:
            counts["internal"] += 1
            self.counters.add_many(counts.items())
            log.exception("gateway: verification of %d request(s) failed", len(group))
            for w in group:
                refused = Refused(RefusalReason.MALFORMED, "", w.request.id, w.mac)
                self._reply_error(self._client, w.gate, ErrorCode.INTERNAL, refused)
            return
        counts.update([_DECISION_COUNTER[o.decision] for o in outcomes])
        self.counters.add_many(counts.items())
        publish, qos, ts, site = self._client.publish, self._qos, now_ts(), self.site
        at = 0
        for w in group:
            request = w.request
            if isinstance(request, VerifyRequest):
                body = verdict_body(
                    msg_id=self._reply_id(),
                    site=site,
                    gate=w.gate,
                    ts=ts,
                    request_id=request.id,
                    request_mac=w.mac,
                    outcome=outcomes[at],
                )
                at += 1
            else:
                size = len(request.items)
                body = batch_verdict_body(
                    msg_id=self._reply_id(),
                    site=site,
                    gate=w.gate,
                    ts=ts,
                    request_id=request.id,
                    request_mac=w.mac,
                    results=outcomes[at : at + size],
                )
                at += size
            key = self.keyring.key_for(w.gate)
            assert key is not None  # the request was MACed with it
            publish(self._verdict_topic(w.gate), seal_body(body, key), qos=qos)

    def _reply_id(self) -> str:
        """A reply's own ``id``: unique, not secret (a reply is bound to its request by the
        request's random id and MAC), so a per-worker random prefix and a counter do, which
        spares a system call per verdict (``os.urandom``)."""
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    def _verdict_topic(self, gate: str) -> str:
        topic = self._verdict_topics.get(gate)
        if topic is None:
            if len(self._verdict_topics) > 4096:
                self._verdict_topics.clear()
            topic = self._verdict_topics[gate] = GateTopics(self.site, gate).verdict
        return topic

    def _reply_error(
        self, client: mqtt.Client, gate: str, code: ErrorCode, refused: Refused
    ) -> None:
        """An ``error`` on the gate's verdict topic, sealed with its key, if it has one."""
        if self.keyring.key_for(gate) is None:
            return
        detail = (refused.detail or code.value)[:256]
        request_id = refused.message_id
        if request_id is not None and not _is_message_id(request_id):
            request_id = None
        error = ErrorReply(
            site=self.site,
            gate=gate,
            code=code,
            detail=detail,
            request_id=request_id,
            request_mac=refused.mac,
        )
        client.publish(self._verdict_topic(gate), self.keyring.seal(error), qos=self._qos)
        self.counters.add("errors_sent")

    def _refused(self, what: str, reason: str, detail: str) -> None:
        kind = f"{what}.{reason}"
        self.counters.add(f"refused.{kind}")
        self._refusals.note(kind, detail)

    # ---- background thread: events, heartbeats, statuses, own status ---------------------

    def _background_main(self) -> None:
        assert self._make_background is not None
        try:
            sink, status, close = self._make_background()
        except BaseException as exc:
            self._background_error = exc
            self._background_ready.set()
            return
        self._background_ready.set()
        try:
            self._background_loop(sink, status)
        finally:
            try:
                self._report_own_status(status, final=True)
            finally:
                close()

    def _background_loop(self, sink: EventSink, status: StatusSink) -> None:
        interval = self.config.limits.status_interval_s
        next_report = time.monotonic()
        while True:
            timeout = max(0.0, next_report - time.monotonic())
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                first = None
            batch: list[_Work] = []
            stop = first is _STOP
            if isinstance(first, _Work):
                batch.append(first)
                if self._linger_s > 0 and self._queue.qsize() < _BACKGROUND_BATCH:
                    time.sleep(self._linger_s)  # one wake-up and one commit for what gathers
                while len(batch) < _BACKGROUND_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                        break
                    if isinstance(more, _Work):
                        batch.append(more)
            if batch:
                self._handle_background(batch, sink, status)
            if stop:
                return
            if time.monotonic() >= next_report:
                self._refusals.flush()
                self._report_own_status(status)
                next_report = time.monotonic() + interval

    def _handle_background(self, batch: list[_Work], sink: EventSink, status: StatusSink) -> None:
        """Record ``batch``; then acknowledge its gate events, every one of them done with
        (recorded and committed, refused, or failed and counted)."""
        events: list[GateEvent] = []
        acks: list[_Work] = []
        for work in batch:
            if work.connection >= 0:
                acks.append(work)
            try:
                if work.channel is Channel.EVENT:
                    event = self._open_event(work)
                    if event is not None:
                        events.append(event)
                elif work.channel is Channel.HEARTBEAT:
                    self._record_heartbeat(work, status)
                elif work.channel is Channel.STATUS:
                    self._record_availability(work, status)
            except Exception:
                self.counters.add("internal")
                log.exception("gateway: could not handle a %s from %s", work.channel, work.gate)
        if events:
            self._ingest(events, sink)
        if acks:
            self._acknowledge(acks)

    def _ingest(self, events: list[GateEvent], sink: EventSink) -> None:
        """Record ``events`` in one transaction; if that fails, one by one (recording is
        idempotent), so one event the database refuses does not take the others with it."""
        try:
            results = [sink.ingest(events)]
        except Exception:
            if len(events) == 1:
                self.counters.add("events.failed")
                log.exception("gateway: could not record a gate event from %s", events[0].gate)
                return
            log.warning("gateway: %d gate events not recorded together; one by one", len(events))
            results = []
            for event in events:
                try:
                    results.append(sink.ingest([event]))
                except Exception:
                    self.counters.add("events.failed")
                    log.exception("gateway: could not record gate event %s", event.event_id)
        for result in results:
            self.counters.add("events.recorded", int(result.recorded))
            if result.duplicates:
                self.counters.add("events.duplicate", int(result.duplicates))

    def _open_sealed(self, work: _Work, what: str) -> Any:
        opened = self.keyring.open(work.payload, max_bytes=self._max_payload)
        if isinstance(opened, Refused):
            self._refused(what, opened.reason.value, opened.detail)
            return None
        msg = opened.message
        if msg.gate != work.gate:
            self._refused(what, "wrong_gate", f"{msg.type} of {msg.gate} on {work.gate}'s topic")
            return None
        return msg

    def _open_event(self, work: _Work) -> GateEvent | None:
        msg = self._open_sealed(work, "event")
        if msg is None:
            return None
        if not isinstance(msg, GateEvent):
            self._refused("event", "malformed", f"{msg.type} on an event topic")
            return None
        if _has_control_characters(msg):  # PostgreSQL refuses NUL in text: never store them
            self._refused("event", "malformed", "control characters in a text field")
            return None
        return msg

    def _record_heartbeat(self, work: _Work, status: StatusSink) -> None:
        msg = self._open_sealed(work, "heartbeat")
        if msg is None:
            return
        if not isinstance(msg, Heartbeat):
            self._refused("heartbeat", "malformed", f"{msg.type} on a heartbeat topic")
            return
        self.counters.add("heartbeats")
        status.record_gate_status(
            self.site,
            work.gate,
            now=self._wall(),
            online=True,
            counters=dict(msg.counters),
            health=dict(msg.health),
        )

    def _record_availability(self, work: _Work, status: StatusSink) -> None:
        if not work.payload:
            return  # a cleared retained status
        msg = decode(work.payload, max_bytes=self._max_payload)
        if isinstance(msg, DecodeError):
            self._refused("status", msg.kind.value, msg.reason)
            return
        if not isinstance(msg, Availability) or msg.gate != work.gate or msg.site != self.site:
            self._refused("status", "malformed", f"not {work.gate}'s availability")
            return
        status.record_gate_status(self.site, work.gate, now=self._wall(), online=msg.online)

    def _report_own_status(self, status: StatusSink, *, final: bool = False) -> None:
        """This worker's counters on the site's ``gateway`` row of the gate status table."""
        worker = self.config.mqtt.worker
        counters = {f"{worker}.{k}": v for k, v in self.counters.snapshot().items()}
        counters[f"{worker}.uptime_s"] = int(time.monotonic() - self._started)
        try:
            status.record_gate_status(
                self.site,
                GATEWAY,
                now=self._wall(),
                online=None if final else True,
                counters=counters,
                health={worker: "stopped" if final else "ok"},
            )
        except Exception:
            log.exception("gateway: could not record its own status")


def _nodelay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """TCP_NODELAY on every socket of the events client (as :func:`make_client` does)."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_frozen = threading.Event()


def _freeze_start_up_objects() -> None:
    """Once per process: collect, then move every object alive (modules, pydantic schemas,
    config, caches) out of the cyclic collector's sight (:func:`gc.freeze`). Collections
    triggered while a 500-item batch is decoded then scan only what serving allocated,
    not the tens of thousands of start-up objects each time (measured: 12–15 % less CPU
    per batch item)."""
    if _frozen.is_set():
        return
    _frozen.set()
    gc.collect()
    gc.freeze()


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _has_control_characters(event: GateEvent) -> bool:
    """True when a free-text field of the event (its seller, its item's serial, batch or
    names) holds a control character: never a valid GS1 or seller ID."""
    item = event.item
    texts = (event.seller, item.serial, item.batch, item.epc_uri, item.digital_link)
    return any(text is not None and _CONTROL.search(text) for text in texts)


def _is_message_id(value: str) -> bool:
    return (
        8 <= len(value) <= 64 and all(c.isalnum() or c in "_-" for c in value) and value.isascii()
    )


def open_service(config: GatewayConfig) -> GatewayService:
    """A worker on the ledger of ``config``: the rules' :class:`~gateway.rules.Verifier` on
    its own database connection (the network thread's), and gate events, heartbeats and
    its own status written on another one (the background thread's). Not started."""
    from gateway.ingest import EventIngestor
    from gateway.ledger.ledger import Ledger
    from gateway.ledger.signing import Keystore
    from gateway.ledger.store import open_store
    from gateway.registry import Registry
    from gateway.rules import Verifier
    from gateway.seller_notes import SellerNotes

    site_key = Keystore(config.keys_dir()).load_or_generate(config.site_org)
    store = open_store(config.ledger_url)
    reopen = store.reopener()
    notes = None if reopen is None else SellerNotes(reopen)
    try:
        verifier = Verifier(
            store,
            config.policy,
            site=config.site_org,
            inspection_secret=config.inspection_secret_bytes(),
            aliases=[config.location],
            inbound=lambda gate: config.gate(gate).kind is GateKind.INBOUND,
            notes=notes,
        )
    except BaseException:
        if notes is not None:
            notes.close()
        store.close()
        raise

    def background() -> tuple[EventSink, StatusSink, Callable[[], None]]:
        ledger = Ledger.open(config.ledger_url, [site_key])
        try:
            return EventIngestor(ledger, config), Registry(ledger.store), ledger.close
        except BaseException:
            ledger.close()
            raise

    def stopped() -> None:
        if notes is not None and not notes.close():
            log.warning("gateway: seller notes still being written at stop")
        store.close()

    try:
        service = GatewayService(config, verifier, background)
    except BaseException:
        stopped()
        raise
    service.on_stopped = stopped
    return service
