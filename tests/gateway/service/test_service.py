"""The MQTT verification service through a real broker: verdicts, batches, availability."""

from __future__ import annotations

import socket

from gateway.service import GatewayService
from gatewire.messages import (
    BatchItem,
    BatchVerdict,
    Decision,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
)
from tests.gateway.service.support import Gate, Site, item
from tests.support.waiting import wait_until


def test_an_expected_item_passes_with_a_verdict_bound_to_the_request(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(1)
    reply = gate.verify(item(1))
    assert isinstance(reply, Verdict)
    assert reply.decision is Decision.PASS
    assert reply.reasons == ["ledger.ok"]
    assert reply.ledger_state == "commissioned"
    assert gateway.counts()["verdict.pass"] == 1


def test_a_batch_gets_one_result_per_item_in_order(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(1, 2)
    request = VerifyBatchRequest(
        site=gate.site,
        gate=gate.gate,
        items=[BatchItem(index=i, item=item(n)) for i, n in enumerate([1, 999, 2])],
    )
    reply = gate.ask(request)
    assert isinstance(reply, BatchVerdict)
    assert [r.decision for r in reply.results] == [Decision.PASS, Decision.REJECT, Decision.PASS]
    assert reply.results[1].reasons == ["ledger.unknown_serial"]


def test_after_a_dropped_connection_the_gateway_reconnects_and_answers_again(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(3)
    sock = gateway._client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)  # as when a NAT or the broker drops the TCP connection
    assert wait_until(lambda: not gateway._connected.is_set(), timeout=10)
    assert wait_until(gateway._subscribed.is_set, timeout=15)  # resubscribed
    reply = gate.verify(item(3))
    assert isinstance(reply, Verdict)
    assert reply.decision is Decision.PASS


def test_waiting_requests_share_a_verify_call_only_when_the_rules_allow() -> None:
    from gateway.service import _Accepted, _calls

    def single(gate: str, n: int) -> _Accepted:
        return _Accepted(gate, VerifyRequest(site="s1", gate=gate, item=item(n)), "0" * 64)

    batch = _Accepted(
        "in-01",
        VerifyBatchRequest(site="s1", gate="in-01", items=[BatchItem(index=0, item=item(9))]),
        "0" * 64,
    )
    work = [
        single("in-01", 1),
        single("in-02", 2),
        single("out-01", 1),
        batch,
        single("in-02", 1),
        single("in-01", 3),
    ]
    calls = _calls(work, lambda gate: gate[:2])
    assert [[w.request.id for w in group] for _, group in calls] == [
        [work[0].request.id, work[1].request.id],  # inbound gates, items 1 and 2
        [work[2].request.id],  # an outbound gate
        [batch.request.id],  # a batch alone
        [work[4].request.id, work[5].request.id],  # item 1 again: a new call
    ]
    assert [gate for gate, _ in calls] == ["in-01", "out-01", "in-01", "in-02"]
