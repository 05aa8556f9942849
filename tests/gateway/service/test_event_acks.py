"""Gate events are acknowledged to the broker only once the gateway is done with them, on a
persistent session: a worker that dies before it recorded an event gets it again when it
comes back, and a full queue holds events back instead of dropping them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.config import LimitSettings
from gateway.ingest import EventIngestor, IngestResult
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore
from gateway.registry import Registry
from gateway.rules import Verifier
from gateway.service import GatewayService, StatusSink
from gatewire.messages import Decision, GateEvent, Verdict
from simulators.broker import MosquittoBroker
from tests.gateway.service.support import (
    SECRET,
    SITE_ORG,
    Gate,
    Site,
    gate_client,
    gateway_config,
    item,
)
from tests.support.waiting import wait_until

_REPO = Path(__file__).resolve().parents[3]


class _HeldSink:
    """An event ingestor whose ``ingest`` waits for ``release`` (a database that cannot
    commit yet) and logs what it did, in order, beside the gateway's acknowledgements."""

    def __init__(self, ingestor: EventIngestor, log: list[tuple[str, object]]) -> None:
        self.ingestor = ingestor
        self.log = log
        self.entered = threading.Event()
        self.release = threading.Event()
        self.refused: set[str] = set()
        self.holding = 0

    def ingest(self, events: Sequence[GateEvent]) -> IngestResult:
        self.holding = len(events)
        self.entered.set()
        if not self.release.wait(30):
            raise RuntimeError("never released")
        if any(e.event_id in self.refused for e in events):
            self.log.append(("failed", len(events)))
            raise RuntimeError("the database refused an event of this batch")
        result = self.ingestor.ingest(events)
        self.log.append(("committed", len(events)))
        return result


@pytest.fixture
def held_gateway(
    site: Site, mosquitto: MosquittoBroker, site_id: str
) -> Iterator[Callable[..., tuple[GatewayService, _HeldSink]]]:
    """Starts a gateway whose event sink waits for ``sink.release`` and whose events client
    logs each acknowledgement it sends (config changes as keyword arguments)."""
    started: list[tuple[GatewayService, _HeldSink]] = []

    def start(url: str = mosquitto.url, **changes: Any) -> tuple[GatewayService, _HeldSink]:
        config = gateway_config(site, url, site_id=site_id, **changes)
        key = Keystore(site.keys_dir).load_or_generate(SITE_ORG)
        log: list[tuple[str, object]] = []
        sinks: list[_HeldSink] = []

        def background() -> tuple[_HeldSink, StatusSink, Callable[[], None]]:
            ledger = Ledger.open(config.ledger_url, [key])
            sinks.append(_HeldSink(EventIngestor(ledger, config), log))
            return sinks[0], Registry(ledger.store), ledger.close

        verifier = Verifier(
            site.ledger.store, config.policy, site=SITE_ORG, inspection_secret=b"s" * 32
        )
        service = GatewayService(config, verifier, background, linger_s=0.0)
        events_client = service._events_client
        assert events_client is not None
        ack = events_client.ack

        def logged_ack(mid: int, qos: int) -> Any:
            log.append(("ack", mid))
            return ack(mid, qos)

        events_client.ack = logged_ack  # type: ignore[method-assign]
        service.start()
        started.append((service, sinks[0]))
        return service, sinks[0]

    yield start
    for service, sink in started:
        sink.release.set()
        service.stop()


def _drop_events_connection(service: GatewayService) -> None:
    """Cut the events client's TCP connection, as a NAT or a broker restart would."""
    client = service._events_client
    assert client is not None
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)


def _recorded_once(site: Site, service: GatewayService, event: GateEvent) -> bool:
    history = site.ledger.history(event.item.epc_uri or "")
    return [e.event.get("pgate:gateEventId") for e in history].count(event.event_id) == 1


_CRASHING_WORKER = """
import json, sys, threading
from gateway.config import GatewayConfig, HttpSettings, MqttSettings
from gateway.service import GatewayService

class Sink:
    def ingest(self, events):
        print("ingesting", flush=True)
        threading.Event().wait()  # never commits: the process is killed first

class Status:
    def record_gate_status(self, *args, **kwargs):
        pass

args = json.loads(sys.stdin.read())
config = GatewayConfig(
    site=args["site"],
    site_secret=args["secret"],
    mqtt=MqttSettings(url=args["url"], share_group=args["group"], protocol=args["protocol"]),
    http=HttpSettings(enabled=False),
)
service = GatewayService(config, None, lambda: (Sink(), Status(), lambda: None), linger_s=0.0)
service.start()
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.mark.parametrize("protocol", [311, 5])
def test_an_event_a_killed_worker_had_not_recorded_is_recorded_by_its_successor_once(
    site: Site,
    mosquitto: MosquittoBroker,
    site_id: str,
    gate: Gate,
    start_gateway: Callable[..., GatewayService],
    protocol: int,
) -> None:
    site.commissioned(1)
    config = gateway_config(site, mosquitto.url, site_id=site_id)
    args = {
        "site": site_id,
        "secret": SECRET.hex(),
        "url": mosquitto.url,
        "group": config.mqtt.share_group,
        "protocol": protocol,
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WORKER],
        cwd=_REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(_REPO)},
    )
    try:
        assert worker.stdin is not None
        assert worker.stdout is not None
        worker.stdin.write(json.dumps(args).encode())
        worker.stdin.close()
        assert worker.stdout.readline() == b"ready\n"
        event = gate.gate_event(1, Decision.PASS)
        gate.send_event(event)  # the broker has it: the gate's outbox would delete it now
        assert worker.stdout.readline() == b"ingesting\n"
    finally:
        worker.send_signal(signal.SIGKILL)  # no DISCONNECT, no acknowledgement
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()
    mqtt = config.mqtt.model_copy(update={"protocol": protocol})
    successor = start_gateway(mqtt=mqtt)  # same site, same worker name
    assert wait_until(lambda: successor.counts().get("events.recorded") == 1, timeout=10)
    assert _recorded_once(site, successor, event)
    assert "events.duplicate" not in successor.counts()


@pytest.mark.parametrize("protocol", [311, 5])
def test_an_event_is_acknowledged_only_after_its_transaction_committed(
    held_gateway: Callable[..., tuple[GatewayService, _HeldSink]],
    site: Site,
    mosquitto: MosquittoBroker,
    gate: Gate,
    protocol: int,
) -> None:
    site.commissioned(1)
    base = gateway_config(site, mosquitto.url, site_id=gate.site).mqtt
    service, sink = held_gateway(mqtt=base.model_copy(update={"protocol": protocol}))
    event = gate.gate_event(1, Decision.PASS)
    gate.send_event(event)
    assert sink.entered.wait(5)  # taken by the writer, which cannot commit yet
    assert sink.log == []  # nothing committed, nothing acknowledged
    _drop_events_connection(service)
    # Not acknowledged: the broker sends it again on the resumed session.
    assert wait_until(lambda: service._queue.qsize() == 1, timeout=10)
    sink.release.set()
    counts = service.counts
    assert wait_until(lambda: counts().get("events.duplicate") == 1, timeout=10)
    assert counts()["events.recorded"] == 1
    # The copy from the first connection is not acknowledged on the second (its packet id
    # could name another message there); the resent copy is, after its commit (the writer
    # counts the duplicate, then acknowledges: wait for the log to have all three).
    assert wait_until(lambda: len(sink.log) == 3, timeout=5), sink.log
    assert [entry[0] for entry in sink.log] == ["committed", "committed", "ack"]
    assert _recorded_once(site, service, event)
    _drop_events_connection(service)  # acknowledged: nothing comes back this time
    assert wait_until(service._events_subscribed.is_set, timeout=10)
    time.sleep(0.3)
    assert service._queue.qsize() == 0
    assert counts()["events.duplicate"] == 1


def test_events_refused_or_failed_are_acknowledged_once_the_writer_is_done_with_them(
    held_gateway: Callable[..., tuple[GatewayService, _HeldSink]],
    site: Site,
    gate: Gate,
) -> None:
    site.commissioned(1, 2)
    service, sink = held_gateway()
    failing = gate.gate_event(2, Decision.PASS)
    sink.refused.add(failing.event_id)
    gate.send_event(failing)
    assert sink.entered.wait(5)
    gate.publish_raw(b'{"not": "sealed"}', gate.topics.event)  # waits behind it
    time.sleep(0.2)
    assert sink.log == []
    sink.release.set()
    counts = service.counts
    assert wait_until(lambda: counts().get("refused.event.malformed") == 1, timeout=10)
    assert wait_until(lambda: len(sink.log) == 3, timeout=5)
    assert counts()["events.failed"] == 1
    assert [entry[0] for entry in sink.log] == ["failed", "ack", "ack"]
    _drop_events_connection(service)  # both acknowledged: the broker sends neither again
    assert wait_until(service._events_subscribed.is_set, timeout=10)
    time.sleep(0.3)
    assert (counts()["refused.event.malformed"], counts()["events.failed"]) == (1, 1)


def test_a_full_queue_holds_events_back_instead_of_dropping_them(
    held_gateway: Callable[..., tuple[GatewayService, _HeldSink]],
    site: Site,
    gate: Gate,
) -> None:
    site.commissioned(*range(1, 41))
    service, sink = held_gateway(limits=LimitSettings(queue_size=10, status_interval_s=0.2))
    events = [gate.gate_event(n, Decision.PASS) for n in range(1, 41)]
    for event in events:
        gate.send_event(event)
    counts = service.counts
    assert wait_until(lambda: counts().get("events.waited") == 1, timeout=5)
    # The events client waits on its own thread: requests are answered meanwhile.
    reply = gate.verify(item(1))
    assert isinstance(reply, Verdict)
    assert reply.decision is Decision.PASS
    sink.release.set()
    assert wait_until(lambda: counts().get("events.recorded") == 40, timeout=15)
    assert not any(k.startswith("refused.event") for k in counts())
    assert all(_recorded_once(site, service, e) for e in events)


def test_a_worker_stopped_with_events_waiting_stops_promptly_and_its_successor_gets_them(
    held_gateway: Callable[..., tuple[GatewayService, _HeldSink]],
    site: Site,
    gate: Gate,
    start_gateway: Callable[..., GatewayService],
) -> None:
    site.commissioned(*range(1, 41))
    service, sink = held_gateway(limits=LimitSettings(queue_size=10, status_interval_s=0.2))
    events = [gate.gate_event(n, Decision.PASS) for n in range(1, 41)]
    for event in events:
        gate.send_event(event)
    assert wait_until(lambda: service.counts().get("events.waited") == 1, timeout=5)
    events_client = service._events_client
    assert events_client is not None
    assert events_client._thread is not None
    stopper = threading.Thread(target=service.stop)  # records what its queue holds
    stopper.start()
    assert wait_until(lambda: service._stopping, timeout=5)
    sink.release.set()
    began = time.monotonic()
    stopper.join(10)
    assert not stopper.is_alive()
    assert time.monotonic() - began < 5
    assert events_client._thread is None
    assert service._client._thread is None
    assert not any(t.name == "gateway-db" for t in threading.enumerate())
    done = service.counts().get("events.recorded", 0)
    assert 1 <= done < 40
    successor = start_gateway()
    assert wait_until(lambda: successor.counts().get("events.recorded", 0) == 40 - done, 15)
    assert all(_recorded_once(site, successor, e) for e in events)


def test_mqtt5_events_in_flight_are_not_capped_by_the_broker_default_of_20(
    held_gateway: Callable[..., tuple[GatewayService, _HeldSink]],
    site: Site,
    gate: Gate,
) -> None:
    site.commissioned(*range(1, 61))
    with MosquittoBroker(extra_config="max_inflight_messages 20") as broker:
        base = gateway_config(site, broker.url, site_id=gate.site).mqtt
        service, sink = held_gateway(broker.url, mqtt=base.model_copy(update={"protocol": 5}))
        with gate_client(broker.url, gate.site) as sender:
            for n in range(1, 61):
                sender.send_event(sender.gate_event(n, Decision.PASS))
            assert sink.entered.wait(5)
            # Every event received, in the writer's hands or queued; none acknowledged.
            queued = service._queue.qsize
            assert wait_until(lambda: queued() + sink.holding == 60, timeout=5), queued()
            assert sink.log == []
            sink.release.set()
            assert wait_until(lambda: service.counts().get("events.recorded") == 60, 10)
            service.stop()
