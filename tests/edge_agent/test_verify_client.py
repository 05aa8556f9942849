"""The verify client through a real mosquitto: answers match items, untrusted replies never
count, and a missing gateway or broker always ends in HOLD, never PASS."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_agent.assembly import AssembledItem
from edge_agent.decision import VerifyOutcome, VerifyStatus, fuse
from edge_agent.profile import DecisionPolicy
from edge_agent.verify_client import VerifyClient, VerifyItem
from edge_agent.vision.checker import VisionResult
from gateway.service import open_service
from gatewire.auth import Accepted, RequestVerifier, SiteKeyring, derive_gate_key
from gatewire.messages import (
    BatchVerdict,
    Decision,
    ErrorCode,
    ErrorReply,
    ItemResult,
    ReadSource,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
    VisionVerdict,
)
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics, ParsedTopic, SiteTopics, parse_topic
from simulators.broker import MosquittoBroker
from simulators.standin_gateway import STANDIN_REASON, StandinGateway
from tests.edge_agent.conftest import SITE_SECRET, item_id
from tests.gateway.service.support import SECRET as GATEWAY_SECRET
from tests.gateway.service.support import Site, gateway_config, new_site_id
from tests.gateway.service.support import item as gateway_item

GATE = "in-01"
GENUINE = VisionResult(VisionVerdict.GENUINE, 0.97)


def expected(serial: str) -> Decision:
    """The responder's rule: R… is rejected, H… held, anything else passes."""
    return {"R": Decision.REJECT, "H": Decision.HOLD}.get(serial[0], Decision.PASS)


class Responder:
    """A gateway double: answers single and batch requests by :func:`expected`, or forges
    answers with a wrong key, or answers with an error reply; records what it saw and sent."""

    def __init__(self, url: str, site: str, *, forge: bool = False, error: bool = False) -> None:
        secret = bytes(32) if forge else SITE_SECRET
        self.keyring = SiteKeyring(site, site_secret=secret)
        self.error, self.silent = error, False
        self.requests: list[VerifyRequest | VerifyBatchRequest] = []
        self.verdicts: list[bytes] = []
        self._verifier = RequestVerifier(SiteKeyring(site, site_secret=SITE_SECRET))
        self._client = make_client(f"responder-{uuid.uuid4().hex[:8]}")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        connect(self._client, BrokerAddress.from_url(url))
        self._client.subscribe(SiteTopics(site).verify_requests, qos=1)
        self._client.loop_start()
        assert subscribed.wait(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(5)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic = parse_topic(msg.topic)
        assert isinstance(topic, ParsedTopic)
        result = self._verifier.check_payload(bytes(msg.payload), topic_gate=topic.gate)
        if not isinstance(result, Accepted) or self.silent:
            return
        request = result.message
        self.requests.append(request)
        common = {"site": request.site, "gate": request.gate, "request_id": request.id}
        reply: Verdict | BatchVerdict | ErrorReply
        if self.error:
            reply = ErrorReply(**common, request_mac=result.mac, code=ErrorCode.OVERLOADED)
        elif isinstance(request, VerifyRequest):
            serial = request.item.serial or ""
            reply = Verdict(**common, request_mac=result.mac, decision=expected(serial))
        else:
            results = [
                ItemResult(index=i.index, decision=expected(i.item.serial or ""))
                for i in request.items
            ]
            reply = BatchVerdict(**common, request_mac=result.mac, results=results)
        payload = self.keyring.seal(reply)
        self.verdicts.append(payload)
        client.publish(GateTopics(request.site, request.gate).verdict, payload, qos=1)


@pytest.fixture
def site() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_verify_client(
    site: str,
) -> Iterator[Callable[..., VerifyClient]]:
    clients: list[VerifyClient] = []

    def make(url: str, *, pumped: bool = False, **options: object) -> VerifyClient:
        key = derive_gate_key(SITE_SECRET, site, GATE)
        client = VerifyClient(url, site, GATE, key, **options)  # type: ignore[arg-type]
        client.pumped = pumped
        clients.append(client)
        assert client.start(5)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def responder(mosquitto: MosquittoBroker, site: str) -> Iterator[Responder]:
    r = Responder(mosquitto.url, site)
    yield r
    r.close()


def facts(serial: str) -> VerifyItem:
    return VerifyItem(item_id(serial), (ReadSource.BARCODE,), vision=GENUINE)


def result(future: Future[VerifyOutcome], timeout: float = 5) -> VerifyOutcome:
    return future.result(timeout)


def decide(outcome: VerifyOutcome, serial: str = "P1") -> Decision:
    """What the gate would do with this outcome for an item read cleanly, label genuine."""
    item = AssembledItem(
        "w", 0.0, 0.1, 0.0, item_id(serial), (ReadSource.BARCODE,), (), (), (), (), 0
    )
    return fuse(item, outcome, GENUINE, DecisionPolicy(), vision_enabled=True).decision


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_single_item_answered_by_the_standin_gateway(
    mosquitto: MosquittoBroker, site: str, make_verify_client: Callable[..., VerifyClient]
) -> None:
    standin = StandinGateway(
        mosquitto.url, SiteKeyring(site, site_secret=SITE_SECRET), Decision.PASS
    )
    standin.start()
    try:
        client = make_verify_client(mosquitto.url, batch_max=1)
        outcome = result(client.submit(facts("P1")))
    finally:
        standin.stop()
    assert outcome.status is VerifyStatus.ANSWERED
    assert outcome.decision is Decision.PASS
    assert outcome.reasons == (STANDIN_REASON,)
    assert decide(outcome) is Decision.PASS
    assert client.counters()["sent"] == 1
    assert client.counters()["answered"] == 1


def test_single_request_carries_the_item_facts(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url)
    other = item_id("Z9")
    sent = VerifyItem(item_id("P1"), (ReadSource.BARCODE,), (other,), GENUINE, "acme-beauty")
    assert result(client.submit(sent)).decision is Decision.PASS
    (request,) = responder.requests
    assert isinstance(request, VerifyRequest)
    assert request.item == item_id("P1")
    assert request.also_read == [other]
    assert request.sources == [ReadSource.BARCODE]
    assert request.vision_verdict is VisionVerdict.GENUINE
    assert request.vision_score == pytest.approx(0.97)
    assert request.seller == "acme-beauty"


def test_items_waiting_together_go_in_one_batch_and_answers_match_items(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url, batch_max=8, batch_wait_s=0.1)
    serials = ["P1", "R2", "H3", "P4", "R5"]
    futures = [client.submit(facts(s)) for s in serials]
    outcomes = [result(f) for f in futures]
    assert [o.decision for o in outcomes] == [expected(s) for s in serials]
    assert [decide(o, s) for o, s in zip(outcomes, serials, strict=True)] == [
        expected(s) for s in serials
    ]
    (request,) = responder.requests
    assert isinstance(request, VerifyBatchRequest)
    assert [i.item.serial for i in request.items] == serials
    assert all(i.vision_verdict is VisionVerdict.GENUINE for i in request.items)
    assert client.counters()["sent"] == 1


def test_items_submitted_together_without_a_wait_go_in_one_request_at_once(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url, batch_max=8, batch_wait_s=0.0)
    serials = ["P1", "R2", "H3"]
    futures = client.submit_all([(facts(s), time.monotonic() + 5) for s in serials])
    assert client.counters()["sent"] == 1  # sent on this thread, before submit_all returned
    assert [result(f).decision for f in futures] == [expected(s) for s in serials]
    (request,) = responder.requests
    assert isinstance(request, VerifyBatchRequest)
    assert [i.item.serial for i in request.items] == serials


def test_an_unanswered_request_sent_on_the_callers_thread_times_out_at_its_deadline(
    mosquitto: MosquittoBroker, make_verify_client: Callable[..., VerifyClient]
) -> None:
    client = make_verify_client(mosquitto.url)  # nobody answers
    start = time.monotonic()
    late = client.submit(facts("P1"), deadline=start + 5)  # the sender sleeps till then…
    early = client.submit(facts("P2"), deadline=start + 0.2)  # …and must wake for this one
    outcome = result(early)
    assert outcome.status is VerifyStatus.TIMEOUT
    assert time.monotonic() - start < 1.0
    assert not late.done()


def test_a_pumped_client_sends_and_expires_only_when_its_owner_pumps(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url, pumped=True, batch_wait_s=0.1)
    start = time.monotonic()
    answered = client.submit(facts("P1"), deadline=start + 5)
    unanswered = client.submit(facts("P2"), deadline=start + 0.05)
    assert 0 < client.pump() <= 0.1  # both wait for company
    time.sleep(0.15)
    assert client.counters().get("sent", 0) == 0  # no thread of its own sent them
    assert not unanswered.done()  # …nor expired the one past its deadline
    assert client.pump() > 0  # sends the batch, expires P2
    assert result(unanswered).status is VerifyStatus.TIMEOUT
    assert result(answered).decision is Decision.PASS
    assert client.counters()["sent"] == 1
    assert client.pump() == math.inf  # nothing left to do


def test_batches_are_split_at_batch_max(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url, batch_max=3, batch_wait_s=0.1)
    futures = [client.submit(facts(f"P{i}")) for i in range(7)]
    assert all(result(f).decision is Decision.PASS for f in futures)
    sizes = [len(r.items) if isinstance(r, VerifyBatchRequest) else 1 for r in responder.requests]
    assert sorted(sizes, reverse=True) == [3, 3, 1]


def test_fifty_items_in_flight_are_all_answered(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url, batch_max=32)
    serials = [f"{'PRH'[i % 3]}{i}" for i in range(50)]
    futures = [client.submit(facts(s), deadline=time.monotonic() + 5) for s in serials]
    _, not_done = wait_futures(futures, timeout=10)
    assert not not_done
    assert [result(f).decision for f in futures] == [expected(s) for s in serials]
    assert client.counters()["answered"] == 50
    assert client.counters().get("timeouts", 0) == 0


def test_forged_verdict_is_ignored_and_the_item_times_out_held(
    mosquitto: MosquittoBroker, site: str, make_verify_client: Callable[..., VerifyClient]
) -> None:
    forger = Responder(mosquitto.url, site, forge=True)
    try:
        client = make_verify_client(mosquitto.url)
        start = time.monotonic()
        outcome = result(client.submit(facts("P1"), deadline=start + 0.3))
        elapsed = time.monotonic() - start
    finally:
        forger.close()
    assert forger.verdicts, "the forger did answer"
    assert outcome.status is VerifyStatus.TIMEOUT
    assert 0.25 <= elapsed < 2.0
    assert decide(outcome) is Decision.HOLD
    counters = client.counters()
    assert counters["refused.bad_mac"] == 1
    assert counters["timeouts"] == 1


def test_replayed_verdict_is_refused_and_answers_nothing(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url)
    assert result(client.submit(facts("P1"))).decision is Decision.PASS
    (old_verdict,) = responder.verdicts
    responder.silent = True
    waiting = client.submit(facts("P2"), deadline=time.monotonic() + 0.4)
    responder.publish(GateTopics(responder.keyring.site, GATE).verdict, old_verdict)
    assert wait_until(lambda: client.counters().get("refused", 0) == 1)
    assert client.counters()["refused.replayed"] == 1
    outcome = result(waiting)
    assert outcome.status is VerifyStatus.TIMEOUT
    assert decide(outcome) is Decision.HOLD


def test_error_reply_resolves_as_error_and_holds(
    mosquitto: MosquittoBroker, site: str, make_verify_client: Callable[..., VerifyClient]
) -> None:
    failing = Responder(mosquitto.url, site, error=True)
    try:
        client = make_verify_client(mosquitto.url)
        outcome = result(client.submit(facts("P1"), deadline=time.monotonic() + 2))
    finally:
        failing.close()
    assert outcome.status is VerifyStatus.ERROR
    assert outcome.reasons == ("error.overloaded",)
    assert decide(outcome) is Decision.HOLD
    assert client.counters()["errors"] == 1


def test_request_sealed_with_a_wrong_key_gets_no_verdict(
    mosquitto: MosquittoBroker, site: str
) -> None:
    standin = StandinGateway(
        mosquitto.url, SiteKeyring(site, site_secret=SITE_SECRET), Decision.PASS
    )
    standin.start()
    wrong = VerifyClient(mosquitto.url, site, GATE, bytes(32), client_id=f"wrong-{site}")
    try:
        assert wrong.start(5)
        outcome = result(wrong.submit(facts("P1"), deadline=time.monotonic() + 0.3))
    finally:
        wrong.close()
        standin.stop()
    assert outcome.status is VerifyStatus.TIMEOUT
    assert decide(outcome) is Decision.HOLD
    assert standin.refused == {"bad_mac": 1}


def test_not_connected_resolves_offline_at_once(site: str) -> None:
    client = VerifyClient(
        "mqtt://127.0.0.1:1", site, GATE, derive_gate_key(SITE_SECRET, site, GATE)
    )
    outcome = result(client.submit(facts("P1"), deadline=time.monotonic() + 10), timeout=0.5)
    assert outcome.status is VerifyStatus.OFFLINE
    assert decide(outcome) is Decision.HOLD


def test_broker_stopped_mid_flight_resolves_offline_and_reconnects(
    fresh_mosquitto: MosquittoBroker, make_verify_client: Callable[..., VerifyClient]
) -> None:
    client = make_verify_client(fresh_mosquitto.url, reconnect_s=(1, 2))
    futures = [client.submit(facts(f"P{i}"), deadline=time.monotonic() + 10) for i in range(5)]
    assert wait_until(lambda: client.counters().get("sent", 0) >= 1)
    start = time.monotonic()
    fresh_mosquitto.stop()
    outcomes = [result(f) for f in futures]
    assert time.monotonic() - start < 3, "offline must not wait for the deadline"
    assert {o.status for o in outcomes} == {VerifyStatus.OFFLINE}
    assert {decide(o) for o in outcomes} == {Decision.HOLD}
    during = result(client.submit(facts("P9")), timeout=0.5)
    assert during.status is VerifyStatus.OFFLINE
    fresh_mosquitto.restart()
    assert wait_until(lambda: client.connected, timeout=10)
    responder = Responder(fresh_mosquitto.url, client.topics.site)
    try:
        assert result(client.submit(facts("P10"))).decision is Decision.PASS
    finally:
        responder.close()


def test_bad_deadline_already_passed_times_out_without_answer(
    mosquitto: MosquittoBroker,
    responder: Responder,
    make_verify_client: Callable[..., VerifyClient],
) -> None:
    client = make_verify_client(mosquitto.url)
    outcome = result(client.submit(facts("P1"), deadline=time.monotonic() - 1))
    assert outcome.status is VerifyStatus.TIMEOUT
    assert decide(outcome) is Decision.HOLD


def test_the_real_gateway_answers_single_and_batched_items(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    site_id = new_site_id()
    ledger = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    ledger.commissioned(1, 2, 3)
    service = open_service(gateway_config(ledger, mosquitto.url, site_id=site_id))
    service.start()
    key = derive_gate_key(GATEWAY_SECRET, site_id, GATE)
    client = VerifyClient(mosquitto.url, site_id, GATE, key, batch_max=8, batch_wait_s=0.1)
    try:
        assert client.start(5)
        single = result(client.submit(VerifyItem(gateway_item(1), vision=GENUINE)))
        numbers = [1, 999, 2, 3]
        futures = [client.submit(VerifyItem(gateway_item(n), vision=GENUINE)) for n in numbers]
        batched = [result(f) for f in futures]
    finally:
        client.close()
        service.stop()
        ledger.close()
    assert single.decision is Decision.PASS
    assert single.reasons == ("ledger.ok",)
    assert [o.decision for o in batched] == [
        Decision.PASS,
        Decision.REJECT,
        Decision.PASS,
        Decision.PASS,
    ]
    assert batched[1].reasons[0] == "ledger.unknown_serial"
    assert client.counters()["sent"] == 2
