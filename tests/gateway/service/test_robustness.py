"""Bad input never crashes the service: it is counted, answered with an error where the gate
is known, and the next good request still gets its verdict."""

from __future__ import annotations

import json
import time

import pytest

from gateway.service import GatewayService
from gatewire.auth import Accepted, derive_gate_key, open_sealed, seal, seal_body
from gatewire.messages import (
    DEFAULT_MAX_PAYLOAD,
    Decision,
    ErrorCode,
    ErrorReply,
    Verdict,
    VerifyRequest,
    encode,
)
from tests.gateway.service.support import SECRET, Gate, Site, item
from tests.support.waiting import wait_until


def error_reply(gate: Gate) -> ErrorReply:
    """The next payload on the gate's verdict topic, which must be a sealed error."""
    opened = open_sealed(gate.next_raw(), gate.key)
    assert isinstance(opened, Accepted), opened
    assert isinstance(opened.message, ErrorReply)
    return opened.message


def still_answers(site: Site, gate: Gate, n: int = 77) -> None:
    site.commissioned(n)
    reply = gate.verify(item(n))
    assert isinstance(reply, Verdict)
    assert reply.decision is Decision.PASS


def request(gate: Gate, **fields: object) -> VerifyRequest:
    return VerifyRequest(site=gate.site, gate=gate.gate, item=item(1), **fields)


@pytest.mark.parametrize(
    ("payload", "counter", "code"),
    [
        (b"\xff\xfe not json", "refused.request.malformed", ErrorCode.MALFORMED),
        (b'{"v":1}', "refused.request.malformed", ErrorCode.MALFORMED),
        (b"", "refused.request.malformed", ErrorCode.MALFORMED),
        (
            b"{" + b" " * (DEFAULT_MAX_PAYLOAD + 10) + b"}",
            "refused.request.too_large",
            ErrorCode.TOO_LARGE,
        ),
    ],
    ids=["binary", "unsealed-json", "empty", "oversized"],
)
def test_garbage_on_the_request_topic_is_counted_and_answered_with_an_error(
    site: Site, gateway: GatewayService, gate: Gate, payload: bytes, counter: str, code: ErrorCode
) -> None:
    gate.publish_raw(payload)
    error = error_reply(gate)
    assert error.code is code
    assert gateway.counts()[counter] == 1
    still_answers(site, gate)


def test_request_with_a_bad_mac_is_refused_as_unauthenticated_and_bound_to_it(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    msg = request(gate)
    forged = seal(msg, derive_gate_key(b"not the site secret at all", gate.site, gate.gate))
    gate.publish_raw(forged)
    error = error_reply(gate)
    assert (error.code, error.request_id) == (ErrorCode.UNAUTHENTICATED, msg.id)
    assert error.request_mac == forged[-66:-2].decode()
    assert gateway.counts()["refused.request.bad_mac"] == 1
    still_answers(site, gate)


def test_request_naming_another_gate_than_its_topic_is_refused(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    other = VerifyRequest(site=gate.site, gate="in-09", item=item(1))
    gate.publish_raw(seal(other, derive_gate_key(SECRET, gate.site, "in-09")))
    assert error_reply(gate).code is ErrorCode.UNKNOWN_GATE
    assert gateway.counts()["refused.request.wrong_gate"] == 1
    still_answers(site, gate)


def test_replayed_request_is_refused_and_stale_request_too(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    site.commissioned(1)
    msg = request(gate)
    payload = gate.verifier.seal_request(msg)
    gate.publish_raw(payload)
    first = open_sealed(gate.next_raw(), gate.key)
    assert isinstance(first, Accepted)
    assert isinstance(first.message, Verdict)
    gate.publish_raw(payload)
    assert error_reply(gate).code is ErrorCode.REPLAYED
    old = request(gate, ts=time.time() - 3600)
    gate.publish_raw(seal(old, gate.key))
    assert error_reply(gate).code is ErrorCode.STALE
    counts = gateway.counts()
    assert (counts["refused.request.replayed"], counts["refused.request.stale"]) == (1, 1)
    still_answers(site, gate)


def test_unknown_member_in_a_sealed_request_is_malformed(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    body = json.loads(encode(request(gate)))
    body["sneaky"] = True
    gate.publish_raw(seal_body(json.dumps(body).encode(), gate.key))
    assert error_reply(gate).code is ErrorCode.MALFORMED
    still_answers(site, gate)


def test_garbage_events_and_heartbeats_are_counted_and_never_answered(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    gate.publish_raw(b"junk", gate.topics.event)
    gate.publish_raw(b"{}", gate.topics.heartbeat)
    forged = gate.gate_event(1, Decision.PASS)
    gate.publish_raw(
        seal(forged, derive_gate_key(b"wrong secret, 16+ bytes", gate.site, gate.gate)),
        gate.topics.event,
    )
    assert wait_until(
        lambda: (
            gateway.counts().get("refused.event.malformed") == 1
            and gateway.counts().get("refused.heartbeat.malformed") == 1
            and gateway.counts().get("refused.event.bad_mac") == 1
        )
    )
    assert gate.raw.empty()
    still_answers(site, gate)


def test_message_on_a_topic_of_another_channel_shape_is_ignored_safely(
    site: Site, gateway: GatewayService, gate: Gate
) -> None:
    gate.publish_raw(b"{}", f"provgate/v1/{gate.site}/gateway/status")
    gate.publish_raw(b"not an availability", gate.topics.status)
    assert wait_until(lambda: gateway.counts().get("refused.status.invalid_json") == 1)
    still_answers(site, gate)
