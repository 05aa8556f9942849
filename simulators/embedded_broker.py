"""An MQTT 3.1.1 broker in a background thread, for machines without mosquitto (the demo).

Why a broker of our own: amqtt, the maintained pure-Python broker (0.12.1), has no
``$share/{group}/…`` shared subscriptions, which the gateway workers subscribe with, does
not set TCP_NODELAY (a QoS 1 round trip then costs tens of ms), and pulls in eight
dependencies (typer, psutil, transitions, websockets, argon2 …). What provgate's paho
clients use fits in a few hundred lines of asyncio:

* CONNECT (3.1.1 and 3.1; an MQTT 5 CONNECT is refused with reason 0x84 "unsupported
  protocol version"), keepalive, last will (published on an unclean end or a keepalive
  timeout, not after DISCONNECT), client-id takeover (the old connection's will first);
* PUBLISH QoS 0, 1 and 2 in, QoS 0 and 1 out (granted QoS = min(request, 1)), retained
  messages (an empty retained payload clears), ``+``/``#`` wildcards;
* ``$share/{group}/{filter}``: each message goes to one member of the group, round robin;
  like mosquitto, retained messages are not sent to shared subscriptions;
* robustness: a malformed packet or a vanished client closes that connection only; a
  client that does not read has its messages dropped past ``max_buffer`` bytes.

Sessions are not persisted (``clean_session=False`` is accepted and treated as clean), and
so are retained messages: :meth:`EmbeddedBroker.restart` starts empty, like mosquitto with
``persistence false``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar

from simulators import mqtt_codec as mc
from simulators.broker import BrokerError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""A connection that has not sent CONNECT by then is closed."""


class _Group:
    """The members of one shared subscription ``$share/{group}/{filter}``, served in turn."""

    __slots__ = ("members", "turn")

    def __init__(self) -> None:
        self.members: dict[_Connection, int] = {}
        self.turn = 0

    def next_member(self) -> tuple[_Connection, int]:
        members = list(self.members.items())
        self.turn = (self.turn + 1) % len(members)
        return members[self.turn]


class _Router:
    """Subscriptions, shared groups, retained messages and connected clients (loop thread)."""

    def __init__(self, max_packet: int, max_buffer: int) -> None:
        self.max_packet, self.max_buffer = max_packet, max_buffer
        self.clients: dict[str, _Connection] = {}
        self.subs: dict[str, dict[_Connection, int]] = {}
        self.groups: dict[tuple[str, str], _Group] = {}
        self.retained: dict[str, tuple[bytes, int]] = {}
        self.counts = {"connections": 0, "received": 0, "sent": 0, "dropped": 0, "malformed": 0}
        self._routes: dict[str, tuple[list[tuple[_Connection, int]], list[_Group]]] = {}
        self.closing = False

    def attach(self, conn: _Connection) -> None:
        """Register a connected client, ending an older connection with the same id."""
        old = self.clients.get(conn.client_id)
        if old is not None:
            log.info("embedded broker: client %r taken over by a new connection", conn.client_id)
            old.drop(publish_will=True)
        self.clients[conn.client_id] = conn
        self.counts["connections"] += 1

    def detach(self, conn: _Connection) -> None:
        """Forget a client and all its subscriptions."""
        if self.clients.get(conn.client_id) is conn:
            del self.clients[conn.client_id]
        for table in (*self.subs.values(), *(g.members for g in self.groups.values())):
            table.pop(conn, None)
        self._prune()

    def subscribe(self, conn: _Connection, topic_filter: str, qos: int) -> int:
        """Add or update one subscription; the granted QoS, or 0x80 for a bad filter."""
        try:
            shared = mc.split_shared(topic_filter)
        except mc.MalformedPacketError:
            return mc.SUBACK_FAILURE
        if shared is None and not mc.valid_topic_filter(topic_filter):
            return mc.SUBACK_FAILURE
        granted = min(qos, 1)
        if shared is None:
            self.subs.setdefault(topic_filter, {})[conn] = granted
            self._send_retained(conn, topic_filter, granted)
        else:
            self.groups.setdefault(shared, _Group()).members[conn] = granted
        self._routes.clear()
        return granted

    def unsubscribe(self, conn: _Connection, topic_filter: str) -> None:
        """Remove one subscription (unknown filters are ignored)."""
        shared = mc.split_shared(topic_filter)
        if shared is None:
            self.subs.get(topic_filter, {}).pop(conn, None)
        elif shared in self.groups:
            self.groups[shared].members.pop(conn, None)
        self._prune()

    def _prune(self) -> None:
        self.subs = {f: t for f, t in self.subs.items() if t}
        self.groups = {k: g for k, g in self.groups.items() if g.members}
        self._routes.clear()

    def publish(self, msg: mc.Publish) -> None:
        """Store a retained message and deliver ``msg`` to every matching subscriber."""
        self.counts["received"] += 1
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = (msg.payload, msg.qos)
            else:
                self.retained.pop(msg.topic, None)
        direct, groups = self._route(msg.topic)
        topic = msg.topic.encode()
        for conn, qos in direct:
            conn.deliver(topic, msg.payload, min(qos, msg.qos), retain=False)
        for group in groups:
            conn, qos = group.next_member()
            conn.deliver(topic, msg.payload, min(qos, msg.qos), retain=False)

    def _route(self, topic: str) -> tuple[list[tuple[_Connection, int]], list[_Group]]:
        cached = self._routes.get(topic)
        if cached is not None:
            return cached
        best: dict[_Connection, int] = {}
        for topic_filter, table in self.subs.items():
            if mc.topic_matches(topic_filter, topic):
                for conn, qos in table.items():
                    best[conn] = max(qos, best.get(conn, 0))
        groups = [g for (_, f), g in self.groups.items() if mc.topic_matches(f, topic)]
        if len(self._routes) > 10_000:
            self._routes.clear()
        route = self._routes[topic] = (list(best.items()), groups)
        return route

    def _send_retained(self, conn: _Connection, topic_filter: str, granted: int) -> None:
        for topic, (payload, qos) in list(self.retained.items()):
            if mc.topic_matches(topic_filter, topic):
                conn.deliver(topic.encode(), payload, min(qos, granted), retain=True)


class _Connection(asyncio.Protocol):
    """One client connection: frames packets, answers them and writes in batches."""

    def __init__(self, router: _Router, loop: asyncio.AbstractEventLoop) -> None:
        self.router, self.loop = router, loop
        self.client_id = ""
        self.transport: asyncio.Transport | None = None
        self.will: mc.Will | None = None
        self.connected = False  # CONNECT accepted
        self.detached = False
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_pending = False
        self._keepalive_s = 0.0
        self._last_rx = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._pids = itertools.cycle(range(1, 65536))
        self._inflight: set[int] = set()
        self._qos2_seen: set[int] = set()
        self._warned_slow = False

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timer = self.loop.call_later(CONNECT_TIMEOUT_S, self._check_alive)

    def data_received(self, data: bytes) -> None:
        self._last_rx = self.loop.time()
        buf = self._buf
        buf += data
        try:
            if not self.connected and buf[0] >> 4 != mc.CONNECT:
                raise mc.MalformedPacketError("first packet is not a CONNECT")
            while buf and not self.detached:
                header = mc.frame_header(buf, self.router.max_packet)
                if header is None or len(buf) < header[0] + header[1]:
                    return
                first, end = buf[0], header[0] + header[1]
                body = bytes(buf[header[0] : end])
                del buf[:end]
                self._handle(first >> 4, first & 0x0F, body)
        except mc.MalformedPacketError as exc:
            self.router.counts["malformed"] += 1
            log.warning("embedded broker: closing %r: %s", self.client_id or "(no CONNECT)", exc)
            self.drop(publish_will=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.drop(publish_will=True)

    # ---- packets -------------------------------------------------------------------------

    def _handle(self, kind: int, flags: int, body: bytes) -> None:
        if kind != mc.PUBLISH and flags != mc.REQUIRED_FLAGS.get(kind, 0):
            raise mc.MalformedPacketError(f"packet type {kind} with flags {flags:#06b}")
        if not self.connected:
            if kind != mc.CONNECT:
                raise mc.MalformedPacketError(f"packet type {kind} before CONNECT")
            self._on_connect(mc.decode_connect(body))
            return
        handler = self._handlers.get(kind)
        if handler is None:
            raise mc.MalformedPacketError(f"unexpected packet type {kind}")
        handler(self, flags, body)

    def _on_connect(self, req: mc.Connect) -> None:
        if req.level == 5:
            self._refuse(mc.connack_v5_refusal(), "MQTT 5 is not supported")
            return
        if req.level not in (3, 4):
            self._refuse(mc.connack(mc.REFUSED_PROTOCOL_VERSION), f"protocol level {req.level}")
            return
        if not req.client_id and not req.clean_session:
            self._refuse(mc.connack(mc.REFUSED_IDENTIFIER), "empty client id without clean session")
            return
        self.client_id = req.client_id or f"embedded-{id(self):x}"
        self.will, self.connected = req.will, True
        self._keepalive_s = req.keepalive * 1.5
        self.router.attach(self)
        self.send(mc.connack(mc.ACCEPTED))
        self._reschedule_keepalive()

    def _on_publish(self, flags: int, body: bytes) -> None:
        msg = mc.decode_publish(flags, body)
        if msg.qos == 2:
            if msg.packet_id not in self._qos2_seen:
                self._qos2_seen.add(msg.packet_id)
                self.router.publish(msg)
            self.send(mc.ack_packet(mc.PUBREC, msg.packet_id))
            return
        self.router.publish(msg)
        if msg.qos == 1:
            self.send(mc.ack_packet(mc.PUBACK, msg.packet_id))

    def _on_puback(self, flags: int, body: bytes) -> None:
        self._inflight.discard(mc.decode_packet_id(body))

    def _on_pubrel(self, flags: int, body: bytes) -> None:
        pid = mc.decode_packet_id(body)
        self._qos2_seen.discard(pid)
        self.send(mc.ack_packet(mc.PUBCOMP, pid))

    def _on_ignored_ack(self, flags: int, body: bytes) -> None:
        mc.decode_packet_id(body)  # PUBREC/PUBCOMP: this broker never sends QoS 2

    def _on_subscribe(self, flags: int, body: bytes) -> None:
        pid, entries = mc.decode_subscribe(body)
        # The SUBACK goes out before the retained messages the new filters match.
        position = len(self._out)
        codes = [self.router.subscribe(self, f, qos) for f, qos in entries]
        self._out.insert(position, mc.suback(pid, codes))
        self._schedule_flush()

    def _on_unsubscribe(self, flags: int, body: bytes) -> None:
        pid, filters = mc.decode_unsubscribe(body)
        for topic_filter in filters:
            try:
                self.router.unsubscribe(self, topic_filter)
            except mc.MalformedPacketError:
                continue  # a bad $share filter was never subscribed
        self.send(mc.ack_packet(mc.UNSUBACK, pid))

    def _on_pingreq(self, flags: int, body: bytes) -> None:
        self.send(mc.PINGRESP_PACKET)

    def _on_disconnect(self, flags: int, body: bytes) -> None:
        self.drop(publish_will=False)

    _handlers: ClassVar[dict[int, Callable[[_Connection, int, bytes], None]]] = {
        mc.PUBLISH: _on_publish,
        mc.PUBACK: _on_puback,
        mc.PUBREC: _on_ignored_ack,
        mc.PUBREL: _on_pubrel,
        mc.PUBCOMP: _on_ignored_ack,
        mc.SUBSCRIBE: _on_subscribe,
        mc.UNSUBSCRIBE: _on_unsubscribe,
        mc.PINGREQ: _on_pingreq,
        mc.DISCONNECT: _on_disconnect,
    }

    # ---- output --------------------------------------------------------------------------

    def deliver(self, topic: bytes, payload: bytes, qos: int, *, retain: bool) -> None:
        """Queue one message for this client (dropped when the client does not read)."""
        transport = self.transport
        if self.detached or transport is None:
            return
        if transport.get_write_buffer_size() > self.router.max_buffer or (
            qos and len(self._inflight) >= 65_000
        ):
            self.router.counts["dropped"] += 1
            if not self._warned_slow:
                self._warned_slow = True
                log.warning("embedded broker: %r does not read; dropping", self.client_id)
            return
        pid = 0
        if qos:
            pid = next(self._pids)
            while pid in self._inflight:
                pid = next(self._pids)
            self._inflight.add(pid)
        self.router.counts["sent"] += 1
        self.send(mc.publish_packet(topic, payload, qos, retain, pid))

    def send(self, packet: bytes) -> None:
        """Queue bytes; they are written together once the loop is done with this batch."""
        self._out.append(packet)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    def _refuse(self, packet: bytes, reason: str) -> None:
        log.info("embedded broker: refusing a connection: %s", reason)
        self.send(packet)
        self._flush()
        self.drop(publish_will=False)

    def drop(self, *, publish_will: bool) -> None:
        """Close the connection (once) and forget it; publish its will if asked to."""
        if self.detached:
            return
        self.detached = True
        if self._timer is not None:
            self._timer.cancel()
        if self.connected:
            self.router.detach(self)
            if publish_will and self.will is not None and not self.router.closing:
                w = self.will
                self.router.publish(mc.Publish(w.topic, w.payload, w.qos, w.retain, 0))
        if self.transport is not None:
            self._flush()
            self.transport.close()

    # ---- keepalive -----------------------------------------------------------------------

    def _reschedule_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keepalive_s and not self.detached:
            due = self._last_rx + self._keepalive_s
            self._timer = self.loop.call_at(due, self._check_alive)

    def _check_alive(self) -> None:
        if not self.connected:
            log.info("embedded broker: no CONNECT within %.0f s; closing", CONNECT_TIMEOUT_S)
            self.drop(publish_will=False)
        elif self.loop.time() >= self._last_rx + self._keepalive_s:
            log.info("embedded broker: %r missed its keepalive; closing", self.client_id)
            self.drop(publish_will=True)
        else:
            self._reschedule_keepalive()


class EmbeddedBroker:
    """An MQTT 3.1.1 broker on a loopback port, served by an asyncio loop in a daemon thread.

    Same shape as :class:`simulators.broker.MosquittoBroker`: ``start()`` returns self,
    ``url``, ``restart()``, ``close()`` and use as a context manager.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_packet: int = 16 * 1024 * 1024,
        max_buffer: int = 64 * 1024 * 1024,
    ) -> None:
        self.host, self.port = host, port
        self._limits = (max_packet, max_buffer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._router: _Router | None = None

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the running broker."""
        return f"mqtt://{self.host}:{self.port}"

    def counts(self) -> dict[str, int]:
        """Connections accepted, messages received, sent and dropped, malformed packets."""
        return dict(self._router.counts) if self._router is not None else {}

    def start(self, timeout: float = 5.0) -> EmbeddedBroker:
        """Bind (a free port unless one was given) and serve; raises BrokerError."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._router = router = _Router(*self._limits)
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve,
            args=(loop, router, ready, failure),
            name="embedded-mqtt-broker",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout) or failure:
            self.stop()
            raise BrokerError(f"embedded MQTT broker did not start: {failure or 'timeout'}")
        return self

    def _serve(
        self,
        loop: asyncio.AbstractEventLoop,
        router: _Router,
        ready: threading.Event,
        failure: list[BaseException],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                loop.create_server(
                    lambda: _Connection(router, loop), self.host, self.port, reuse_address=True
                )
            )
        except OSError as exc:
            failure.append(exc)
            loop.close()
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            router.closing = True
            for conn in list(router.clients.values()):
                conn.drop(publish_will=False)
            loop.run_until_complete(asyncio.sleep(0))  # let the transports close
            loop.run_until_complete(server.wait_closed())
            loop.close()

    def restart(self) -> EmbeddedBroker:
        """Stop and start again on the same port, empty (as a restarted broker)."""
        if self.port == 0:
            raise BrokerError("restart() needs a broker that was started before")
        self.stop()
        return self.start()

    def stop(self) -> None:
        """Close every connection and the listener, and end the thread."""
        loop, thread = self._loop, self._thread
        self._thread = None
        if loop is not None and thread is not None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
        self._loop = None

    def close(self) -> None:
        """Same as :meth:`stop` (nothing on disk to remove)."""
        self.stop()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
