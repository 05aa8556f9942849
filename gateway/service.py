"""The MQTT verification service: answers gates' verification requests, records their events.

One :class:`GatewayService` is one worker. It subscribes, as a member of the shared
subscription group ``$share/{group}/…`` (so several workers split the load), to every
gate's ``verify/request``, ``event`` and ``heartbeat`` topics, and directly to every
gate's retained ``status``. It publishes its own availability, retained, on
``provgate/v1/{site}/gateway/status``, with a last will that flips it to offline, and
resubscribes after every reconnect.

Requests are authenticated on the MQTT client's network thread
(:meth:`RequestVerifier.check_payload`). A batch request is verified right there; a
single-item request goes to the verify thread, which takes every request waiting (up to
1,000 items) and verifies them in as few ``verify_many`` calls as the rules allow (one
per gate kind, for requests of distinct items), so that under load the database round
trips of a verification are shared by many requests. Each reply, a ``verdict`` or
``batch_verdict`` bound to its request's id and MAC, is sealed with the gate's key and
published on the gate's verdict topic. Anything refused is counted by kind, logged once
per burst, and answered with a sealed ``error`` when the gate is known from the topic.
Events, heartbeats and statuses go through a bounded queue to a background thread that
owns the database writes (ledger appends, gate status), so a slow disk never delays a
verdict. Nothing a client sends can raise out of a paho callback.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion
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
    decode,
    encode,
    new_message_id,
    now_ts,
)
from gatewire.mqtt import BrokerAddress, make_client
from gatewire.topics import GATEWAY, Channel, GateTopics, ParsedTopic, SiteTopics, parse_topic

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
_VERIFY_BATCH: Final = 1000
"""Most items the verify thread takes in one go (requests waiting are answered together)."""
_JSON: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
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
    """What answers requests (``gateway.rules.Verifier`` fits). Called on one thread only."""

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


def _outcome_fields(o: OutcomeLike) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "decision": o.decision.value,
        "reasons": list(o.reasons),
        "inspect": o.inspect,
    }
    if o.ledger_state is not None:
        fields["ledger_state"] = o.ledger_state
    return fields


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An authenticated request waiting for the verify thread."""

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
    """A message for the background thread."""

    channel: Channel
    gate: str
    payload: bytes


class GatewayService:
    """One gateway worker on the broker. ``start()`` connects and serves in the background
    (paho's network thread, the verify thread, the database thread); ``stop()`` goes
    offline cleanly.

    ``verifier`` answers on the verify thread. With a ``batch_verifier`` (a second one, on
    its own database connection) batch requests are answered right on the network thread
    instead: a 500-item batch is worth no hand-off, and measured that way it went 1.1–1.8×
    faster. ``make_background`` is called on the background thread to build what it writes
    with (its own database connection): it returns ``(event sink, status sink, close)``.
    """

    def __init__(
        self,
        config: GatewayConfig,
        verifier: BatchVerifier,
        make_background: Callable[[], tuple[EventSink, StatusSink, Callable[[], None]]]
        | None = None,
        *,
        batch_verifier: BatchVerifier | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.site = config.site
        self._verifier = verifier
        self._batch_verifier = batch_verifier
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
        self._id_prefix = new_message_id()[:16]
        self._id_counter = itertools.count()
        self.counters = Counters()
        self._refusals = RefusalLog(log, limits.status_interval_s)
        self._queue: queue.Queue[_Work | object] = queue.Queue(limits.queue_size)
        self._accepted: queue.SimpleQueue[_Accepted | object] = queue.SimpleQueue()
        self._verify_thread: threading.Thread | None = None
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
        self._client = make_client(self.client_id, protocol)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
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
        self._verify_thread = threading.Thread(
            target=self._verify_main, name="gateway-verify", daemon=True
        )
        self._verify_thread.start()
        address = BrokerAddress.from_url(self.config.mqtt.url)
        if address.username is not None:
            self._client.username_pw_set(address.username, address.password)
        try:
            self._client.connect(address.host, address.port, keepalive=self.config.mqtt.keepalive_s)
        except OSError as exc:
            self._accepted.put(_STOP)
            self._stop_background()
            raise ConnectionError(
                f"gateway: cannot reach the broker at {address.host}:{address.port}: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError("gateway: subscriptions not acknowledged by the broker")

    def stop(self) -> None:
        """Answer the requests already accepted, publish ``online: false``, disconnect, and
        stop the background thread (which records what it holds)."""
        if self._stopping:
            return
        self._stopping = True
        if self._verify_thread is not None:
            self._accepted.put(_STOP)
            self._verify_thread.join(timeout=10.0)
            self._verify_thread = None
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
        self._stop_background()
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
            (f"$share/{group}/{topics.events}", 1),
            (f"$share/{group}/{topics.heartbeats}", 0),
            (topics.statuses, 1),
        ]
        client.subscribe(shared)
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
        if not self._stopping:
            log.warning("gateway: lost the broker (%s); reconnecting", reason)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: Any, properties: object
    ) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.error("gateway: subscription refused by the broker: %s", failed)
            return
        self._subscribed.set()

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

    def _dispatch(self, client: mqtt.Client, topic_name: str, payload: bytes) -> None:
        topic = parse_topic(topic_name)
        if not isinstance(topic, ParsedTopic) or topic.site != self.site:
            self._refused("topic", "bad_topic", f"not a topic of site {self.site}: {topic_name!r}")
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
        if self._batch_verifier is not None and not isinstance(result.message, VerifyRequest):
            self._answer_group(self._batch_verifier, gate, [accepted])
            return
        self._accepted.put(accepted)

    # ---- verify thread: answers every accepted request, several at once under load -------

    def _verify_main(self) -> None:
        pending = self._accepted
        while True:
            first = pending.get()
            if first is _STOP:
                return
            work: list[_Accepted] = [first]  # type: ignore[list-item]
            items = work[0].size
            stop = False
            while items < _VERIFY_BATCH:
                try:
                    more = pending.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                assert isinstance(more, _Accepted)
                work.append(more)
                items += more.size
            try:
                self._answer(work)
            except Exception:  # never let the verify thread die
                self.counters.add("internal")
                log.exception("gateway: unexpected error answering %d request(s)", len(work))
            if stop:
                return

    def _answer(self, work: list[_Accepted]) -> None:
        """Verify the waiting requests, as few calls as the rules allow, and reply to each."""
        for gate, group in _calls(work, lambda g: self.config.gate(g).kind):
            self._answer_group(self._verifier, gate, group)

    def _answer_group(self, verifier: BatchVerifier, gate: str, group: list[_Accepted]) -> None:
        """One ``verify_many`` call (as asked by ``gate``) for ``group``, then one reply
        to each request's gate."""
        counters = self.counters
        facts: list[Any] = []
        for w in group:
            if isinstance(w.request, VerifyRequest):
                counters.add("requests")
                facts.append(w.request)
            else:
                counters.add("batch_requests")
                facts.extend(w.request.items)
        counters.add("items", len(facts))
        counters.add("verify_calls")
        try:
            outcomes = verifier.verify_many(facts, gate=gate, now=self._wall())
            if len(outcomes) != len(facts):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(facts)} items")
        except Exception:
            counters.add("internal")
            log.exception("gateway: verification of %d request(s) failed", len(group))
            for w in group:
                refused = Refused(RefusalReason.MALFORMED, "", w.request.id, w.mac)
                self._reply_error(self._client, w.gate, ErrorCode.INTERNAL, refused)
            return
        decisions: Counter[Decision] = Counter(o.decision for o in outcomes)
        for decision, n in decisions.items():
            counters.add(_DECISION_COUNTER[decision], n)
        publish, qos, ts = self._client.publish, self._qos, now_ts()
        at = 0
        for w in group:
            if isinstance(w.request, VerifyRequest):
                body = self._verdict_body(w, outcomes[at], ts)
                at += 1
            else:
                size = len(w.request.items)
                body = self._batch_verdict_body(w, outcomes[at : at + size], ts)
                at += size
            key = self.keyring.key_for(w.gate)
            assert key is not None  # the request was MACed with it
            publish(self._verdict_topic(w.gate), seal_body(body, key), qos=qos)

    def _reply_id(self) -> str:
        """A reply's own ``id``: unique, not secret (a reply is bound to its request by the
        request's random id and MAC), so a per-worker random prefix and a counter do, which
        spares a system call per verdict (``os.urandom``)."""
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    def _verdict_body(self, w: _Accepted, o: OutcomeLike, ts: float) -> bytes:
        """A ``verdict`` body as :func:`gatewire.messages.encode` would write it, built
        without model validation (the values come from the verifier and the request)."""
        body: dict[str, Any] = {
            "v": 1,
            "type": "verdict",
            "id": self._reply_id(),
            "ts": ts,
            "site": self.site,
            "gate": w.gate,
            "request_id": w.request.id,
            "request_mac": w.mac,
            **_outcome_fields(o),
        }
        return _JSON(body).encode()

    def _batch_verdict_body(
        self, w: _Accepted, outcomes: Sequence[OutcomeLike], ts: float
    ) -> bytes:
        """A ``batch_verdict`` body, built like :meth:`_verdict_body`."""
        body: dict[str, Any] = {
            "v": 1,
            "type": "batch_verdict",
            "id": self._reply_id(),
            "ts": ts,
            "site": self.site,
            "gate": w.gate,
            "request_id": w.request.id,
            "request_mac": w.mac,
            "results": [{"index": i, **_outcome_fields(o)} for i, o in enumerate(outcomes)],
        }
        return _JSON(body).encode()

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
        events: list[GateEvent] = []
        for work in batch:
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
            try:
                result = sink.ingest(events)
            except Exception:
                self.counters.add("events.failed", len(events))
                log.exception("gateway: could not record %d gate event(s)", len(events))
                return
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


def _is_message_id(value: str) -> bool:
    return (
        8 <= len(value) <= 64 and all(c.isalnum() or c in "_-" for c in value) and value.isascii()
    )


def open_service(config: GatewayConfig) -> GatewayService:
    """A worker on the ledger of ``config``: the rules' :class:`~gateway.rules.Verifier` on
    the verify thread and another on the network thread (batches), each with its own
    database connection, and gate events, heartbeats and its own status written on a third
    one (the background thread's). Not started."""
    from gateway.ingest import EventIngestor
    from gateway.ledger.ledger import Ledger
    from gateway.ledger.signing import Keystore
    from gateway.ledger.store import SqlStore, open_store
    from gateway.registry import Registry
    from gateway.rules import Verifier

    site_key = Keystore(config.keys_dir()).load_or_generate(config.site_org)
    stores: list[SqlStore] = []

    def close() -> None:
        for store in stores:
            store.close()

    def verifier() -> Verifier:
        stores.append(open_store(config.ledger_url))
        return Verifier(
            stores[-1],
            config.policy,
            site=config.site_org,
            inspection_secret=config.inspection_secret_bytes(),
            aliases=[config.location],
            inbound=lambda gate: config.gate(gate).kind is GateKind.INBOUND,
        )

    try:
        singles, batches = verifier(), verifier()
    except BaseException:
        close()
        raise

    def background() -> tuple[EventSink, StatusSink, Callable[[], None]]:
        ledger = Ledger.open(config.ledger_url, [site_key])
        try:
            return EventIngestor(ledger, config), Registry(ledger.store), ledger.close
        except BaseException:
            ledger.close()
            raise

    service = GatewayService(config, singles, background, batch_verifier=batches)
    service.on_stopped = close
    return service
