"""The gate's presence through a real mosquitto: a retained availability that the last will
turns false when the gate vanishes, sealed heartbeats at their interval that the real
gateway records, reconnects that bring both back, and TCP_NODELAY on the socket."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from edge_agent.presence import MAX_NAMES, Presence, availability_payload, wire_name
from edge_agent.profile import GateProfile, PresenceSettings
from edge_agent.runner import GIL_SWITCH_S, build_gate
from edge_agent.verify_client import VerifyClient
from gateway.registry import GateStatus
from gateway.service import open_service
from gatewire.auth import Accepted, Refused, derive_gate_key, open_sealed
from gatewire.messages import Availability, Heartbeat, decode
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics
from hardware.gate_io.sim import SimGateIo
from hardware.health import DeviceHealth, DeviceState
from simulators.broker import MosquittoBroker
from tests.edge_agent.conftest import SITE_SECRET
from tests.gateway.service.support import SECRET as GATEWAY_SECRET
from tests.gateway.service.support import Site, gateway_config, new_site_id

pytestmark = pytest.mark.broker

GATE = "in-01"
REPO = Path(__file__).resolve().parents[2]
TICK_S = 0.2
BELT = {"speed_m_s": 2.0, "scan_to_reject_m": 1.0, "window_m": 0.1, "actuation_ms": 50}


class Watcher:
    """Another client on the broker: keeps every message of one topic (payload, retained
    flag, arrival time), resubscribing after a reconnect."""

    def __init__(self, url: str, topic: str) -> None:
        self.topic = topic
        self.messages: queue.Queue[tuple[bytes, bool, float]] = queue.Queue()
        self._subscribed = threading.Event()
        self._client = make_client(f"watch-{uuid.uuid4().hex[:8]}")
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        connect(self._client, BrokerAddress.from_url(url))
        self._client.loop_start()
        assert self._subscribed.wait(5), "watcher not subscribed"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((bytes(msg.payload), bool(msg.retain), time.monotonic()))

    def next(self, timeout: float = 5.0) -> tuple[bytes, bool, float]:
        return self.messages.get(timeout=timeout)

    def availability(self, online: bool, timeout: float = 5.0) -> tuple[Availability, bool]:
        """The next availability saying ``online`` (others skipped), and its retain flag."""
        end = time.monotonic() + timeout
        while True:
            payload, retained, _ = self.next(max(0.01, end - time.monotonic()))
            msg = decode(payload)
            assert isinstance(msg, Availability), msg
            if msg.online is online:
                return msg, retained

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def site() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def key(site: str) -> bytes:
    return derive_gate_key(SITE_SECRET, site, GATE)


@pytest.fixture
def watch() -> Iterator[Callable[[str, str], Watcher]]:
    watchers: list[Watcher] = []

    def make(url: str, topic: str) -> Watcher:
        watchers.append(Watcher(url, topic))
        return watchers[-1]

    yield make
    for watcher in watchers:
        watcher.close()


@pytest.fixture
def make_client_for(site: str, key: bytes) -> Iterator[Callable[..., VerifyClient]]:
    clients: list[VerifyClient] = []

    def make(url: str, **options: Any) -> VerifyClient:
        client = VerifyClient(url, site, GATE, key, **options)
        clients.append(client)
        assert client.start(5)
        return client

    yield make
    for client in clients:
        client.close()


def retained_status(url: str, topics: GateTopics) -> Availability:
    """What a client subscribing now gets on the gate's status (must be retained)."""
    watcher = Watcher(url, topics.status)
    try:
        payload, retained, _ = watcher.next()
    finally:
        watcher.close()
    assert retained
    msg = decode(payload)
    assert isinstance(msg, Availability), msg
    return msg


def heartbeats(watcher: Watcher, key: bytes, count: int, timeout: float = 5.0) -> list[Heartbeat]:
    """The next ``count`` heartbeats, each opened with ``key`` (a bad seal fails the test)."""
    out: list[Heartbeat] = []
    end = time.monotonic() + timeout
    while len(out) < count:
        payload, _, _ = watcher.next(max(0.01, end - time.monotonic()))
        opened = open_sealed(payload, key)
        assert isinstance(opened, Accepted), opened
        assert isinstance(opened.message, Heartbeat)
        out.append(opened.message)
    return out


def nodelay(client: VerifyClient) -> int:
    sock = client._client.socket()  # the one connection; no public accessor on purpose
    assert isinstance(sock, socket.socket)
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return False


class FakeDevice:
    """A device whose health is what the test says (or raises)."""

    def __init__(self, state: DeviceState | None) -> None:
        self.state = state

    def health(self) -> DeviceHealth:
        if self.state is None:
            raise OSError("driver crashed")
        return DeviceHealth("dev", self.state)


def presence(
    topics: GateTopics,
    key: bytes,
    publish: Callable[[str, bytes, int], bool],
    *,
    counters: Mapping[str, Callable[[], Mapping[str, int]]] | None = None,
    health: Mapping[str, Callable[[], DeviceHealth | DeviceState | str]] | None = None,
    interval_s: float = TICK_S,
) -> Presence:
    return Presence(topics, key, publish, interval_s=interval_s, counters=counters, health=health)


# --- availability and the last will -------------------------------------------------------


def test_connecting_publishes_a_retained_online_true(
    mosquitto: MosquittoBroker, make_client_for: Callable[..., VerifyClient]
) -> None:
    client = make_client_for(mosquitto.url)
    status = retained_status(mosquitto.url, client.topics)
    assert status.online is True
    assert (status.who, status.site, status.gate) == ("gate", client.topics.site, GATE)


def test_a_killed_gate_process_is_marked_offline_by_its_last_will(
    mosquitto: MosquittoBroker,
    site: str,
    key: bytes,
    watch: Callable[[str, str], Watcher],
) -> None:
    topics = GateTopics(site, GATE)
    watcher = watch(mosquitto.url, topics.status)
    script = (
        "import sys, time\n"
        "from edge_agent.verify_client import VerifyClient\n"
        "c = VerifyClient(sys.argv[1], sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4]))\n"
        "print('ready' if c.start(5) else 'failed', flush=True)\n"
        "time.sleep(60)\n"
    )
    args = [sys.executable, "-c", script, mosquitto.url, site, GATE, key.hex()]
    gate = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert gate.stdout is not None
        assert gate.stdout.readline().strip() == "ready"
        watcher.availability(online=True)
        gate.kill()  # no DISCONNECT: only the broker's last will can say it is gone
        gate.wait(5)
        will, _ = watcher.availability(online=False, timeout=5)
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait(5)
        if gate.stdout is not None:
            gate.stdout.close()
    assert (will.who, will.gate) == ("gate", GATE)
    assert retained_status(mosquitto.url, topics).online is False


def test_a_clean_close_leaves_online_false(
    mosquitto: MosquittoBroker, site: str, key: bytes
) -> None:
    client = VerifyClient(mosquitto.url, site, GATE, key)
    assert client.start(5)
    client.close()
    assert retained_status(mosquitto.url, client.topics).online is False


def test_the_availability_payload_is_the_unsealed_contract_message() -> None:
    payload = availability_payload("demo", GATE, online=False)
    msg = decode(payload)
    assert isinstance(msg, Availability)
    assert (msg.online, msg.who, msg.mac) == (False, "gate", None)
    assert isinstance(open_sealed(payload, bytes(32)), Refused)


# --- heartbeats ---------------------------------------------------------------------------


def test_heartbeats_arrive_at_the_interval_sealed_with_counters_and_health(
    mosquitto: MosquittoBroker,
    key: bytes,
    make_client_for: Callable[..., VerifyClient],
    watch: Callable[[str, str], Watcher],
) -> None:
    client = make_client_for(mosquitto.url)
    watcher = watch(mosquitto.url, client.topics.heartbeat)
    agent = {"items": 7, "passed": 5, "rejected": 1, "held": 1, "late": 0, "recovered": 0}
    beats = presence(
        client.topics,
        key,
        client.publish,
        counters={"": lambda: agent, "verify": client.counters},
        health={
            "Scanner 1": FakeDevice(DeviceState.HEALTHY).health,
            "rfid": FakeDevice(None).health,
            "label": lambda: DeviceState.CONNECTING,
            "outbox": lambda: "ok",
        },
    )
    beats.start()
    try:
        received = heartbeats(watcher, key, 5)
        payload, _, _ = watcher.next()
    finally:
        beats.stop(final_beat=False)
    assert isinstance(open_sealed(payload, derive_gate_key(bytes(32), "x", GATE)), Refused)
    first = received[0]
    assert (first.site, first.gate) == (client.topics.site, GATE)
    assert {k: first.counters[k] for k in agent} == agent
    assert first.counters["verify.connects"] == 1
    assert first.health == {
        "scanner_1": "ok",
        "rfid": "down",
        "label": "connecting",
        "outbox": "ok",
    }
    uptimes = [b.uptime_s for b in received]
    assert uptimes == sorted(uptimes)
    gaps = (uptimes[-1] - uptimes[0]) / (len(uptimes) - 1)
    assert 0.8 * TICK_S <= gaps <= 1.5 * TICK_S
    assert beats.stats()["sent"] >= 6


def test_stop_is_prompt_and_sends_the_final_counters(
    mosquitto: MosquittoBroker,
    key: bytes,
    make_client_for: Callable[..., VerifyClient],
    watch: Callable[[str, str], Watcher],
) -> None:
    client = make_client_for(mosquitto.url)
    watcher = watch(mosquitto.url, client.topics.heartbeat)
    items = {"items": 1}
    beats = presence(
        client.topics, key, client.publish, counters={"": lambda: items}, interval_s=60
    )
    beats.start()
    assert heartbeats(watcher, key, 1)[0].counters == {"items": 1}
    items["items"] = 2
    start = time.monotonic()
    beats.stop()
    assert time.monotonic() - start < 0.5
    assert heartbeats(watcher, key, 1)[0].counters == {"items": 2}
    with pytest.raises(queue.Empty):
        watcher.next(timeout=0.3)


def test_the_real_gateway_records_the_running_gate_online_with_counters_and_health(
    mosquitto: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_id = new_site_id()
    ledger = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    service = open_service(gateway_config(ledger, mosquitto.url, site_id=site_id))
    service.start()
    monkeypatch.setenv("GATE_KEY", derive_gate_key(GATEWAY_SECRET, site_id, GATE).hex())
    profile = GateProfile.model_validate(
        {
            "gate": {"site": site_id, "id": GATE, "kind": "inbound", "key_env": "GATE_KEY"},
            "devices": {
                "scanner": {"type": "serial_scanner", "port": str(tmp_path / "no-such-tty")},
                "gate_io": {"type": "sim_gate_io"},
            },
            "belt": BELT,
            "verification": {"mqtt_url": mosquitto.url},
            "presence": {"heartbeat_s": TICK_S},
            "journal": {"path": str(tmp_path / "gate.db")},
        }
    )
    run = build_gate(profile, profile.gate.load_key())

    def status() -> GateStatus | None:
        gates = ledger.registry.gates()
        return next((g for g in gates if (g.site, g.gate) == (site_id, GATE)), None)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # Python's default
    try:
        assert run.start()
        assert sys.getswitchinterval() == GIL_SWITCH_S, "threads hand over every millisecond"
        assert isinstance(run.gate_io, SimGateIo)
        run.gate_io.trigger()  # an item no source read: held
        assert run.agent.wait_idle(5)
        assert wait_until(lambda: (s := status()) is not None and s.counters.get("held") == 1)
        online = status()
        run.stop()
        assert wait_until(lambda: (s := status()) is not None and not s.online)
    finally:
        sys.setswitchinterval(switch)
        service.stop()
        ledger.close()
    assert online is not None
    assert online.online
    assert online.counters["items"] == 1
    assert online.counters["verify.connects"] == 1
    assert "outbox.backlog" in online.counters
    assert online.health["gate-io"] == "ok"
    assert online.health["barcode"] in {"connecting", "down"}
    assert online.health["outbox"] == "ok"
    assert retained_status(mosquitto.url, GateTopics(site_id, GATE)).online is False


# --- reconnect and TCP_NODELAY ------------------------------------------------------------


def test_after_a_broker_restart_the_gate_is_online_again_and_beats(
    fresh_mosquitto: MosquittoBroker,
    key: bytes,
    make_client_for: Callable[..., VerifyClient],
) -> None:
    client = make_client_for(fresh_mosquitto.url, reconnect_s=(1, 1))
    beats = presence(client.topics, key, client.publish, counters={"": lambda: {"items": 3}})
    client.on_connected = beats.beat_soon
    beats.start()
    try:
        assert nodelay(client)
        fresh_mosquitto.restart()  # retained messages are gone (no persistence)
        assert wait_until(lambda: client.connected, timeout=10)
        assert nodelay(client), "the new socket has TCP_NODELAY too"
        assert retained_status(fresh_mosquitto.url, client.topics).online is True
        watcher = Watcher(fresh_mosquitto.url, client.topics.heartbeat)
        try:
            (beat,) = heartbeats(watcher, key, 1)
        finally:
            watcher.close()
    finally:
        beats.stop(final_beat=False)
    assert beat.counters == {"items": 3}
    assert client.counters()["connects"] == 2


def test_the_verification_socket_has_tcp_nodelay(
    mosquitto: MosquittoBroker, make_client_for: Callable[..., VerifyClient]
) -> None:
    assert nodelay(make_client_for(mosquitto.url)) != 0


def test_without_a_connection_heartbeats_are_skipped_not_queued(site: str, key: bytes) -> None:
    client = VerifyClient("mqtt://127.0.0.1:1", site, GATE, key)
    beats = presence(client.topics, key, client.publish)
    assert beats.beat() is False
    assert beats.stats() == {"sent": 0, "skipped": 1, "errors": 0}


# --- bad sources never stop the heartbeat -------------------------------------------------


def test_bad_counter_sources_and_values_are_left_out(key: bytes) -> None:
    def broken() -> Mapping[str, int]:
        raise RuntimeError("agent gone")

    odd: dict[str, Any] = {"ok": 1, "neg": -1, "flag": True, "text": "5", "Mixed Case!": 2, "": 3}
    beats = presence(
        GateTopics("demo", GATE),
        key,
        lambda *_: True,
        counters={
            "": lambda: odd,
            "verify": broken,
            "many": lambda: {f"c{i}": i for i in range(99)},
        },
    )
    counters = beats.heartbeat().counters
    assert counters["ok"] == 1
    assert counters["mixed_case_"] == 2
    assert not {"neg", "flag", "text", ""} & set(counters)
    assert len(counters) == MAX_NAMES
    assert counters["many.c0"] == 0


def test_devices_beyond_the_limit_are_cut_and_names_fit_the_contract(key: bytes) -> None:
    health = {f"Camera #{i}": (lambda: DeviceState.HEALTHY) for i in range(70)}
    beat = presence(GateTopics("demo", GATE), key, lambda *_: True, health=health).heartbeat()
    assert len(beat.health) == MAX_NAMES
    assert beat.health["camera_0"] == "ok"
    assert wire_name("x" * 80) == "x" * 64
    assert wire_name("!!!") is None
    assert wire_name("rfid.1") == "rfid.1"


def test_a_publisher_that_raises_is_counted_and_the_thread_keeps_beating(key: bytes) -> None:
    calls: list[float] = []

    def publish(topic: str, payload: bytes, qos: int) -> bool:
        calls.append(time.monotonic())
        raise OSError("socket gone")

    beats = presence(GateTopics("demo", GATE), key, publish, interval_s=0.05)
    beats.start()
    try:
        assert wait_until(lambda: len(calls) >= 3, timeout=2)
    finally:
        beats.stop(final_beat=False)
    assert beats.stats()["skipped"] >= 3


def test_the_interval_is_bounded(key: bytes) -> None:
    with pytest.raises(ValueError, match="interval"):
        presence(GateTopics("demo", GATE), key, lambda *_: True, interval_s=0)


# --- profile ------------------------------------------------------------------------------


def test_the_presence_section_has_defaults_and_bounds() -> None:
    assert PresenceSettings() == PresenceSettings(
        heartbeat_s=5.0, reconnect_min_s=1, reconnect_max_s=8
    )
    with pytest.raises(ValidationError, match="heartbeat_s"):
        PresenceSettings(heartbeat_s=0.01)
    with pytest.raises(ValidationError, match="reconnect_max_s"):
        PresenceSettings(reconnect_min_s=10, reconnect_max_s=5)


def test_the_verify_client_takes_its_backoff_from_the_profile(key: bytes) -> None:
    profile = GateProfile.model_validate(
        {
            "gate": {"site": "demo", "id": GATE, "kind": "inbound", "key_env": "GATE_KEY"},
            "devices": {
                "scanner": {"type": "serial_scanner", "port": "/dev/null"},
                "gate_io": {"type": "sim_gate_io"},
            },
            "belt": BELT,
            "presence": {"reconnect_min_s": 2, "reconnect_max_s": 30},
            "journal": {"path": "gate.db"},
        }
    )
    client = VerifyClient.from_profile(profile, key)
    assert (client._client._reconnect_min_delay, client._client._reconnect_max_delay) == (2, 30)
