"""Message authentication: keys, sealed payloads, reply binding, replay refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewire.auth import (
    MAC_TAG,
    SEAL_SIZE,
    Accepted,
    RefusalReason,
    Refused,
    RequestVerifier,
    SiteKeyring,
    VerdictVerifier,
    compute_mac,
    derive_gate_key,
    open_sealed,
    seal,
    seal_body,
    split_sealed,
)
from gatewire.item import CanonicalItemId, IdKind
from gatewire.messages import (
    Availability,
    BatchItem,
    BatchVerdict,
    Decision,
    ErrorCode,
    ErrorReply,
    GateEvent,
    Heartbeat,
    ItemResult,
    Message,
    PayloadTooLargeError,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
    decode,
    encode,
    wire_object,
)

SITE, GATE, OTHER_GATE = "ams1", "in-03", "in-04"
SITE_SECRET = bytes(range(32))
KEY = derive_gate_key(SITE_SECRET, SITE, GATE)
OTHER_KEY = derive_gate_key(SITE_SECRET, SITE, OTHER_GATE)
T0 = 1_764_355_200.0


class Clock:
    """Settable wall and monotonic time for verifiers."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def item(serial: str = "ABC123") -> CanonicalItemId:
    return CanonicalItemId(
        gtin="09506000134352",
        serial=serial,
        digital_link=f"https://id.gs1.org/01/09506000134352/21/{serial}",
        kind=IdKind.GS1_ELEMENT_STRING,
    )


def mac_of(payload: bytes) -> str:
    """The MAC a sealed payload ends with."""
    return payload[-66:-2].decode()


def request(gate: str = GATE, **fields: Any) -> VerifyRequest:
    return VerifyRequest(site=SITE, gate=gate, ts=T0, item=item(), **fields)


def batch_request(n: int = 3) -> VerifyBatchRequest:
    items = [BatchItem(index=i, item=item(f"S{i}")) for i in range(n)]
    return VerifyBatchRequest(site=SITE, gate=GATE, ts=T0, items=items)


def verdict(req: Message, request_mac: str, **fields: Any) -> Verdict:
    values: dict[str, Any] = {
        "site": SITE,
        "gate": req.gate,
        "ts": T0 + 0.01,
        "request_id": req.id,
        "request_mac": request_mac,
        "decision": Decision.PASS,
        "reasons": ["ledger.ok"],
    }
    return Verdict(**values | fields)


def batch_verdict(req: VerifyBatchRequest, request_mac: str, n: int | None = None) -> BatchVerdict:
    count = len(req.items) if n is None else n
    return BatchVerdict(
        site=SITE,
        gate=GATE,
        ts=T0 + 0.01,
        request_id=req.id,
        request_mac=request_mac,
        results=[ItemResult(index=i, decision=Decision.PASS) for i in range(count)],
    )


def reseal_with(payload: bytes, body: bytes) -> bytes:
    """``body`` with the seal (the same MAC) of ``payload``: an alteration in transit."""
    return body[:-1] + payload[-SEAL_SIZE:]


def alter_body(payload: bytes, change: Any) -> bytes:
    """Parse the body of ``payload``, apply ``change`` to the object, keep the old seal."""
    split = split_sealed(payload)
    assert split is not None
    obj = json.loads(split[0])
    change(obj)
    return reseal_with(payload, json.dumps(obj, separators=(",", ":")).encode())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(clock: Clock) -> VerdictVerifier:
    return VerdictVerifier(
        SITE, GATE, KEY, wall_clock=lambda: clock.wall, monotonic=lambda: clock.mono
    )


def expect(verifier: VerdictVerifier, req: VerifyRequest | VerifyBatchRequest) -> str:
    """Seal ``req`` at the gate and register it; its MAC."""
    return mac_of(verifier.seal_request(req))


def refusal(result: Accepted[Any] | Refused) -> RefusalReason:
    assert isinstance(result, Refused), result
    return result.reason


# --- keys ------------------------------------------------------------------------------


def test_gate_key_is_hmac_of_the_labelled_site_and_gate() -> None:
    label = b"provgate/v1/gate-key\0" + SITE.encode() + b"\0" + GATE.encode()
    assert hmac.new(SITE_SECRET, label, hashlib.sha256).digest() == KEY
    assert len(KEY) == 32


def test_gate_keys_differ_per_gate_and_per_site() -> None:
    keys = {
        derive_gate_key(SITE_SECRET, site, gate)
        for site in ("ams1", "ams2")
        for gate in ("in-03", "in-04", "out-1")
    }
    assert len(keys) == 6


def test_gate_key_derivation_refuses_a_short_secret_or_a_bad_id() -> None:
    with pytest.raises(ValueError, match="at least"):
        derive_gate_key(b"short", SITE, GATE)
    with pytest.raises(ValueError, match="invalid"):
        derive_gate_key(SITE_SECRET, SITE, "In/03")


def test_keyring_derives_the_same_keys_as_the_gates_hold() -> None:
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    assert ring.key_for(GATE) == KEY
    assert ring.key_for("not a gate") is None
    table = SiteKeyring(SITE, gate_keys={GATE: KEY})
    assert table.key_for(GATE) == KEY
    assert table.key_for(OTHER_GATE) is None


def test_the_keyring_has_no_key_for_the_gateway_pseudo_gate() -> None:
    assert SiteKeyring(SITE, site_secret=SITE_SECRET).key_for("gateway") is None


# --- sealing ---------------------------------------------------------------------------


def every_signed_type() -> list[Message]:
    mac = "ab" * 32
    return [
        request(),
        batch_request(),
        verdict(request(), mac),
        batch_verdict(batch_request(), mac),
        ErrorReply(site=SITE, gate=GATE, code=ErrorCode.MALFORMED, detail="x"),
        GateEvent(
            site=SITE,
            gate=GATE,
            event_id="e" * 32,
            item=item(),
            decision=Decision.REJECT,
            scanned_at=T0,
            decided_at=T0 + 0.05,
        ),
        Heartbeat(site=SITE, gate=GATE, uptime_s=12.0, counters={"items": 3}),
    ]


def test_a_sealed_payload_is_the_encoded_body_with_its_mac_as_the_last_member() -> None:
    msg = request(seller="acme")
    body = encode(msg)
    mac = hmac.new(KEY, b"provgate/v1/mac\0" + body, hashlib.sha256).hexdigest()
    payload = seal(msg, KEY)
    assert payload == body[:-1] + b',"mac":"' + mac.encode() + b'"}'
    assert compute_mac(body, KEY) == mac
    assert split_sealed(payload) == (body, mac)
    obj = json.loads(payload)
    assert obj == wire_object(msg) | {"mac": mac}
    assert list(obj)[-1] == "mac"
    assert MAC_TAG == b"provgate/v1/mac\0"
    assert len(payload) - len(body) == SEAL_SIZE - 1 == 73


@pytest.mark.parametrize("msg", every_signed_type(), ids=lambda m: m.type)
def test_every_sealed_type_opens_with_its_key_only(msg: Message) -> None:
    payload = seal(msg, KEY)
    result = open_sealed(payload, KEY)
    assert isinstance(result, Accepted), result
    assert result.mac == result.message.mac == mac_of(payload)
    assert result.message == msg.model_copy(update={"mac": result.mac})
    assert refusal(open_sealed(payload, OTHER_KEY)) is RefusalReason.BAD_MAC
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    assert isinstance(ring.open(payload), Accepted)
    assert ring.seal(msg) == payload


def test_sealing_ignores_a_mac_the_message_carries_from_another_payload() -> None:
    msg = request()
    opened = open_sealed(seal(msg, KEY), KEY)
    assert isinstance(opened, Accepted)
    assert seal(opened.message, KEY) == seal(msg, KEY)
    assert encode(opened.message) == encode(msg)


def test_a_third_party_body_with_any_order_spacing_and_numbers_opens() -> None:
    obj = {
        "item": {"kind": "gtin", "gtin": "09506000134352", "digital_link": "https://x"},
        "type": "verify_request",
        "gate": GATE,
        "ts": 1764355200,
        "site": SITE,
        "v": 1,
        "seller": None,
        "id": "0123456789abcdef0123456789abcdef",
        "vision_score": 1e-7,
    }
    body = json.dumps(obj, indent=2, ensure_ascii=True).encode()
    mac = hmac.new(KEY, b"provgate/v1/mac\0" + body, "sha256").hexdigest()
    payload = body[:-1] + f',"mac":"{mac}"}}'.encode()
    result = open_sealed(payload, KEY)
    assert isinstance(result, Accepted), result
    assert result.message.ts == 1764355200.0
    assert result.mac == mac


def test_a_re_serialised_payload_no_longer_verifies() -> None:
    payload = seal(request(), KEY)
    body, _ = split_sealed(payload) or (b"", "")
    spaced = json.dumps(json.loads(body)).encode()  # same object, other bytes
    assert json.loads(spaced) == json.loads(body)
    assert refusal(open_sealed(reseal_with(payload, spaced), KEY)) is RefusalReason.BAD_MAC


def test_seal_refuses_a_bad_key_and_an_oversized_payload() -> None:
    msg = request()
    with pytest.raises(ValueError, match="32 bytes"):
        seal(msg, KEY[:16])
    size = len(seal(msg, KEY))
    assert len(seal(msg, KEY, max_bytes=size)) == size
    with pytest.raises(PayloadTooLargeError, match="sealed verify_request"):
        seal(msg, KEY, max_bytes=size - 1)
    with pytest.raises(ValueError, match="ending"):
        seal_body(b'{"v":1} ', KEY)


def test_seal_refuses_a_string_without_a_utf8_form() -> None:
    # Validation refuses lone surrogates; model_copy does not validate.
    unencodable = request().model_copy(update={"seller": "\ud800"})
    with pytest.raises(ValueError, match="surrogate"):
        seal(unencodable, KEY)


def _duplicate_mac(body: bytes, spelling: bytes) -> bytes:
    """A body that has a mac member of its own, sealed correctly (the MAC verifies)."""
    return seal_body(body[:-1] + b"," + spelling + b':"' + b"0" * 64 + b'"}', KEY)


def _malformed_payloads() -> dict[str, bytes]:
    payload = seal(request(), KEY)
    body = encode(request())
    mac = mac_of(payload).encode()
    suffix = payload[-SEAL_SIZE:]
    return {
        "no mac": body,
        "mac first": b'{"mac":"' + mac + b'",' + body[1:],
        "mac not last": body[:-1] + b',"mac":"' + mac + b'","seller":"x"}',
        "uppercase hex": payload[:-SEAL_SIZE] + suffix.upper().replace(b"MAC", b"mac"),
        "63 hex digits": payload[:-3] + b'"}',
        "65 hex digits": payload[:-2] + b'0"}',
        "mac as a number": body[:-1] + b',"mac":1}',
        "space after the comma": payload[:-SEAL_SIZE] + b', "mac":"' + mac + b'"}',
        "space after the colon": payload[:-SEAL_SIZE] + b',"mac": "' + mac + b'"}',
        "space before the brace": payload[:-2] + b'" }',
        "trailing newline": payload + b"\n",
        "trailing space": payload + b" ",
        "leading space": b" " + payload,
        "leading newline": b"\n" + payload,
        "suffix alone": suffix,
        "empty object": seal_body(b"{}", KEY),
        "empty": b"",
        "two mac members": _duplicate_mac(body, b'"mac"'),
        "two mac members, one escaped": _duplicate_mac(body, b'"m\\u0061c"'),
    }


@pytest.mark.parametrize(("case", "payload"), _malformed_payloads().items())
def test_a_payload_not_sealed_exactly_so_is_refused_as_malformed(
    case: str, payload: bytes, clock: Clock
) -> None:
    assert refusal(open_sealed(payload, KEY)) is RefusalReason.MALFORMED, case
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    assert refusal(open_sealed(payload, ring.key_of)) is RefusalReason.MALFORMED
    gateway = RequestVerifier(ring, wall_clock=lambda: clock.wall)
    assert refusal(gateway.check_payload(payload, topic_gate=GATE)) is RefusalReason.MALFORMED


def test_the_two_mac_cases_really_carry_a_valid_mac() -> None:
    for case in ("two mac members", "two mac members, one escaped"):
        payload = _malformed_payloads()[case]
        split = split_sealed(payload)
        assert split is not None
        assert compute_mac(split[0], KEY) == split[1]
        assert json.loads(split[0])["mac"] == "0" * 64


def test_a_nested_member_named_mac_is_not_the_seal() -> None:
    beat = Heartbeat(site=SITE, gate=GATE, uptime_s=1.0, counters={"mac": 1})
    result = open_sealed(seal(beat, KEY), KEY)
    assert isinstance(result, Accepted), result
    assert result.message == beat.model_copy(update={"mac": result.mac})


def test_opening_with_a_key_of_the_wrong_size_refuses_instead_of_raising() -> None:
    assert refusal(open_sealed(seal(request(), KEY), KEY[:31])) is RefusalReason.BAD_MAC


def test_an_oversized_payload_is_refused_before_anything_else() -> None:
    payload = seal(request(), KEY)
    assert isinstance(open_sealed(payload, KEY, max_bytes=len(payload)), Accepted)
    too_big = open_sealed(payload, KEY, max_bytes=len(payload) - 1)
    assert refusal(too_big) is RefusalReason.TOO_LARGE
    assert refusal(open_sealed(b" " * (256 * 1024 + 1), KEY)) is RefusalReason.TOO_LARGE
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    gateway = RequestVerifier(ring, max_payload=len(payload) - 1, wall_clock=lambda: T0)
    assert refusal(gateway.check_payload(payload, topic_gate=GATE)) is RefusalReason.TOO_LARGE
    gate = VerdictVerifier(SITE, GATE, KEY, max_payload=100)
    assert refusal(gate.accept_payload(payload)) is RefusalReason.TOO_LARGE


def test_a_sealed_payload_of_another_version_is_refused_as_such() -> None:
    req = request()
    body = encode(req).replace(b'"v":1', b'"v":2')
    result = open_sealed(seal_body(body, KEY), KEY)
    assert refusal(result) is RefusalReason.UNSUPPORTED_VERSION
    assert isinstance(result, Refused)
    assert result.message_id == req.id


def test_opening_with_a_key_lookup_uses_the_key_of_the_gate_the_message_names() -> None:
    ring = SiteKeyring(SITE, gate_keys={GATE: KEY})
    mine = seal(request(), KEY)
    assert isinstance(open_sealed(mine, ring.key_of), Accepted)
    theirs = seal(request(gate=OTHER_GATE), OTHER_KEY)
    result = open_sealed(theirs, ring.key_of)
    assert refusal(result) is RefusalReason.WRONG_GATE
    assert isinstance(result, Refused)
    assert (result.message_id, result.mac) == (json.loads(theirs)["id"], mac_of(theirs))
    posing = seal(request(gate=OTHER_GATE), KEY)  # names in-04, sealed with in-03's key
    full_ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    assert refusal(open_sealed(posing, full_ring.key_of)) is RefusalReason.BAD_MAC


def test_the_keyring_seals_and_opens_events_and_heartbeats() -> None:
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    beat = Heartbeat(site=SITE, gate=GATE, uptime_s=1.0)
    assert isinstance(ring.open(seal(beat, KEY)), Accepted)
    assert refusal(ring.open(seal(beat, OTHER_KEY))) is RefusalReason.BAD_MAC
    assert isinstance(open_sealed(ring.seal(beat), KEY), Accepted)
    with pytest.raises(ValueError, match="no key"):
        ring.seal(Heartbeat(site="ams2", gate=GATE, uptime_s=1.0))


def test_compute_mac_is_64_lowercase_hex() -> None:
    mac = compute_mac(encode(request()), KEY)
    assert re.fullmatch(r"[0-9a-f]{64}", mac)


# --- the gate accepting verdicts -------------------------------------------------------


def test_a_genuine_verdict_for_a_pending_request_is_accepted_once(
    verifier: VerdictVerifier,
) -> None:
    req = request()
    req_mac = expect(verifier, req)
    answer = verdict(req, req_mac)
    payload = seal(answer, KEY)
    result = verifier.accept_payload(payload)
    assert isinstance(result, Accepted)
    assert result.mac == mac_of(payload)
    assert result.message == answer.model_copy(update={"mac": result.mac})
    assert verifier.pending_count == 0


def test_a_replayed_verdict_is_refused(verifier: VerdictVerifier) -> None:
    req = request()
    payload = seal(verdict(req, expect(verifier, req)), KEY)
    assert isinstance(verifier.accept_payload(payload), Accepted)
    assert refusal(verifier.accept_payload(payload)) is RefusalReason.REPLAYED


def test_an_old_verdict_replayed_for_a_new_request_is_refused(verifier: VerdictVerifier) -> None:
    first = request()
    old = seal(verdict(first, expect(verifier, first)), KEY)
    assert isinstance(verifier.accept_payload(old), Accepted)
    expect(verifier, request())  # a new, different request is now pending
    assert refusal(verifier.accept_payload(old)) is RefusalReason.REPLAYED


def test_a_verdict_sealed_with_another_gates_key_is_refused(verifier: VerdictVerifier) -> None:
    req = request()
    forged = seal(verdict(req, expect(verifier, req)), OTHER_KEY)
    assert refusal(verifier.accept_payload(forged)) is RefusalReason.BAD_MAC
    assert verifier.pending_count == 1


def test_an_unsealed_verdict_is_refused(verifier: VerdictVerifier) -> None:
    req = request()
    unsealed = encode(verdict(req, expect(verifier, req)))
    assert refusal(verifier.accept_payload(unsealed)) is RefusalReason.MALFORMED
    assert verifier.pending_count == 1


def test_a_verdict_addressed_to_another_gate_is_refused(verifier: VerdictVerifier) -> None:
    req = request()
    elsewhere = seal(verdict(req, expect(verifier, req), gate=OTHER_GATE), OTHER_KEY)
    assert refusal(verifier.accept_payload(elsewhere)) is RefusalReason.WRONG_GATE


VERDICT_CHANGES: dict[str, Any] = {
    "v": 2,
    "type": "batch_verdict",
    "id": "f" * 32,
    "ts": T0 + 0.02,
    "site": "ams2",
    "gate": OTHER_GATE,
    "request_id": "b" * 32,
    "request_mac": "c" * 64,
    "decision": "REJECT",
    "reasons": ["ledger.ok", "extra"],
    "inspect": True,
    "ledger_state": "shipped",
}


def test_the_verdict_change_table_covers_every_field() -> None:
    assert set(VERDICT_CHANGES) == set(Verdict.model_fields) - {"mac"}


@pytest.mark.parametrize(("field", "value"), VERDICT_CHANGES.items())
def test_a_verdict_with_any_field_altered_in_transit_is_refused(
    verifier: VerdictVerifier, field: str, value: Any
) -> None:
    req = request()
    payload = seal(verdict(req, expect(verifier, req), ledger_state="in_stock"), KEY)
    altered = alter_body(payload, lambda o: o.update({field: value}))
    result = verifier.accept_payload(altered)
    assert isinstance(result, Refused)
    if field not in {"v", "type", "site", "gate"}:  # those fail earlier, before the MAC
        assert result.reason is RefusalReason.BAD_MAC
    assert verifier.pending_count == 1
    assert isinstance(verifier.accept_payload(payload), Accepted)


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o.pop("ledger_state"),
        lambda o: o.update(reasons=[]),
        lambda o: o.update(inspect=False),  # explicit default where it was omitted
        lambda o: o.update(seller=None),  # unknown member
        lambda o: None,  # same object, written without the sender's spacing
    ],
    ids=["member removed", "list emptied", "default made explicit", "member added", "respaced"],
)
def test_a_verdict_with_members_added_removed_or_respaced_is_refused(
    verifier: VerdictVerifier, change: Any
) -> None:
    req = request()
    answer = verdict(req, expect(verifier, req), ledger_state="in_stock")
    body = json.dumps(wire_object(answer), indent=1).encode()
    payload = seal_body(body, KEY)
    altered = alter_body(payload, change)
    assert isinstance(verifier.accept_payload(altered), Refused)
    assert isinstance(verifier.accept_payload(payload), Accepted)


def test_no_single_bit_flip_of_a_verdict_payload_is_accepted(verifier: VerdictVerifier) -> None:
    req = request()
    payload = seal(verdict(req, expect(verifier, req)), KEY)
    for position in range(len(payload)):
        altered = bytearray(payload)
        altered[position] ^= 0x01
        assert isinstance(verifier.accept_payload(bytes(altered)), Refused), position
    assert isinstance(verifier.accept_payload(payload), Accepted)


def test_a_verdict_for_a_different_request_is_refused(verifier: VerdictVerifier) -> None:
    ours, theirs = request(), request()
    our_mac = expect(verifier, ours)
    their_mac = mac_of(seal(theirs, KEY))
    other = seal(verdict(theirs, their_mac), KEY)
    assert refusal(verifier.accept_payload(other)) is RefusalReason.UNKNOWN_REQUEST
    mixed = seal(verdict(ours, their_mac), KEY)
    assert refusal(verifier.accept_payload(mixed)) is RefusalReason.REQUEST_MISMATCH
    assert isinstance(verifier.accept_payload(seal(verdict(ours, our_mac), KEY)), Accepted)


def test_a_verdict_of_the_wrong_shape_for_its_request_is_refused(
    verifier: VerdictVerifier,
) -> None:
    single, batch = request(), batch_request(3)
    single_mac, batch_mac = expect(verifier, single), expect(verifier, batch)
    as_batch = batch_verdict(batch, batch_mac).model_copy(
        update={"request_id": single.id, "request_mac": single_mac}
    )
    assert refusal(verifier.accept_payload(seal(as_batch, KEY))) is RefusalReason.REQUEST_MISMATCH
    short = seal(batch_verdict(batch, batch_mac, n=2), KEY)
    assert refusal(verifier.accept_payload(short)) is RefusalReason.REQUEST_MISMATCH
    full = seal(batch_verdict(batch, batch_mac), KEY)
    assert isinstance(verifier.accept_payload(full), Accepted)


def test_a_verdict_with_a_timestamp_outside_the_freshness_window_is_refused(
    verifier: VerdictVerifier,
) -> None:
    req = request()
    req_mac = expect(verifier, req)
    for ts in (T0 - 31, T0 + 31):
        late = seal(verdict(req, req_mac, ts=ts), KEY)
        assert refusal(verifier.accept_payload(late)) is RefusalReason.STALE
    fresh = seal(verdict(req, req_mac, ts=T0 + 29), KEY)
    assert isinstance(verifier.accept_payload(fresh), Accepted)


def test_a_verdict_after_the_request_deadline_is_refused(
    verifier: VerdictVerifier, clock: Clock
) -> None:
    req = request()
    payload = seal(verdict(req, mac_of(verifier.seal_request(req, timeout_s=0.5))), KEY)
    clock.advance(0.6)
    assert refusal(verifier.accept_payload(payload)) is RefusalReason.STALE
    assert verifier.pending_count == 0


def test_a_verdict_for_a_forgotten_request_is_refused(verifier: VerdictVerifier) -> None:
    req = request()
    payload = seal(verdict(req, expect(verifier, req)), KEY)
    verifier.forget(req.id)
    assert refusal(verifier.accept_payload(payload)) is RefusalReason.UNKNOWN_REQUEST


def test_the_pending_table_is_bounded_and_drops_the_oldest(clock: Clock) -> None:
    verifier = VerdictVerifier(
        SITE, GATE, KEY, max_pending=16, wall_clock=lambda: clock.wall, monotonic=lambda: clock.mono
    )
    requests = [request() for _ in range(100)]
    macs = [expect(verifier, req) for req in requests]
    assert verifier.pending_count == 16
    assert verifier.evicted == 84
    first = seal(verdict(requests[0], macs[0]), KEY)
    assert refusal(verifier.accept_payload(first)) is RefusalReason.UNKNOWN_REQUEST
    last = seal(verdict(requests[-1], macs[-1]), KEY)
    assert isinstance(verifier.accept_payload(last), Accepted)


def test_expired_pending_requests_are_purged(verifier: VerdictVerifier, clock: Clock) -> None:
    for _ in range(50):
        verifier.seal_request(request(), timeout_s=1.0)
    clock.advance(2.0)
    expect(verifier, request())
    assert verifier.pending_count == 1
    assert verifier.evicted == 0


def test_an_authenticated_error_bound_to_a_pending_request_ends_the_wait(
    verifier: VerdictVerifier,
) -> None:
    req = request()
    req_mac = expect(verifier, req)
    error = ErrorReply(
        site=SITE,
        gate=GATE,
        ts=T0,
        code=ErrorCode.OVERLOADED,
        request_id=req.id,
        request_mac=req_mac,
    )
    assert refusal(verifier.accept_payload(encode(error))) is RefusalReason.MALFORMED
    assert refusal(verifier.accept_payload(seal(error, OTHER_KEY))) is RefusalReason.BAD_MAC
    unbound = seal(error.model_copy(update={"request_mac": None}), KEY)
    assert refusal(verifier.accept_payload(unbound)) is RefusalReason.MALFORMED
    result = verifier.accept_payload(seal(error, KEY))
    assert isinstance(result, Accepted)
    assert verifier.pending_count == 0


def test_messages_that_are_not_replies_are_refused_as_malformed(
    verifier: VerdictVerifier,
) -> None:
    assert refusal(verifier.accept_payload(seal(request(), KEY))) is RefusalReason.MALFORMED
    assert refusal(verifier.accept_payload(b"\x00garbage")) is RefusalReason.MALFORMED


def test_expecting_a_reply_needs_the_mac_of_a_request_from_this_gate(
    verifier: VerdictVerifier,
) -> None:
    with pytest.raises(ValueError, match="MAC"):
        verifier.expect(request(), "A" * 64)
    with pytest.raises(ValueError, match="this gate"):
        verifier.expect(request(gate=OTHER_GATE), "a" * 64)
    with pytest.raises(ValueError, match="this gate"):
        verifier.seal_request(request(gate=OTHER_GATE))
    assert verifier.pending_count == 0


def test_a_request_sealed_by_the_gate_is_accepted_by_the_gateway(
    verifier: VerdictVerifier,
) -> None:
    req = request()
    payload = verifier.seal_request(req)
    assert payload == seal(req, KEY)
    gateway = RequestVerifier(SiteKeyring(SITE, site_secret=SITE_SECRET), wall_clock=lambda: T0)
    checked = gateway.check_payload(payload, topic_gate=GATE)
    assert isinstance(checked, Accepted)
    answer = SiteKeyring(SITE, site_secret=SITE_SECRET).seal(verdict(checked.message, checked.mac))
    assert isinstance(verifier.accept_payload(answer), Accepted)


# --- the gateway accepting requests ----------------------------------------------------


@pytest.fixture
def gateway(clock: Clock) -> RequestVerifier:
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    return RequestVerifier(ring, wall_clock=lambda: clock.wall, monotonic=lambda: clock.mono)


def test_the_gateway_accepts_a_genuine_request_once(gateway: RequestVerifier) -> None:
    req = request()
    payload = seal(req, KEY)
    result = gateway.check_payload(payload, topic_gate=GATE)
    assert isinstance(result, Accepted)
    assert result.message == req.model_copy(update={"mac": mac_of(payload)})
    assert result.mac == mac_of(payload)
    assert refusal(gateway.check_payload(payload, topic_gate=GATE)) is RefusalReason.REPLAYED


def test_the_gateway_refuses_a_forged_or_misrouted_request(gateway: RequestVerifier) -> None:
    forged = seal(request(), OTHER_KEY)
    assert refusal(gateway.check_payload(forged, topic_gate=GATE)) is RefusalReason.BAD_MAC
    altered = alter_body(seal(request(), KEY), lambda o: o.update(seller="someone-else"))
    assert refusal(gateway.check_payload(altered, topic_gate=GATE)) is RefusalReason.BAD_MAC
    genuine = seal(request(), KEY)
    misrouted = gateway.check_payload(genuine, topic_gate=OTHER_GATE)
    assert refusal(misrouted) is RefusalReason.WRONG_GATE
    other_site = seal(VerifyRequest(site="ams2", gate=GATE, ts=T0, item=item()), KEY)
    assert refusal(gateway.check_payload(other_site, topic_gate=GATE)) is RefusalReason.WRONG_GATE
    answer = seal(verdict(request(), "a" * 64), KEY)
    assert refusal(gateway.check_payload(answer, topic_gate=GATE)) is RefusalReason.MALFORMED
    assert isinstance(gateway.check_payload(genuine, topic_gate=GATE), Accepted)


def test_the_gateway_refusal_names_the_request_for_the_error_reply(
    gateway: RequestVerifier,
) -> None:
    req = request()
    forged = seal(req, OTHER_KEY)
    result = gateway.check_payload(forged, topic_gate=GATE)
    assert isinstance(result, Refused)
    assert (result.message_id, result.mac) == (req.id, mac_of(forged))


def test_no_single_bit_flip_of_a_request_payload_is_accepted(gateway: RequestVerifier) -> None:
    payload = seal(request(seller="acme", vision_score=0.5), KEY)
    for position in range(len(payload)):
        altered = bytearray(payload)
        altered[position] ^= 0x01
        result = gateway.check_payload(bytes(altered), topic_gate=GATE)
        assert isinstance(result, Refused), position
    assert isinstance(gateway.check_payload(payload, topic_gate=GATE), Accepted)


def test_the_gateway_refuses_a_request_from_a_gate_without_a_key() -> None:
    gateway = RequestVerifier(SiteKeyring(SITE, gate_keys={OTHER_GATE: OTHER_KEY}))
    result = gateway.check_payload(seal(request(), KEY), topic_gate=GATE)
    assert refusal(result) is RefusalReason.WRONG_GATE


def test_the_gateway_refuses_a_stale_request_and_a_late_replay(
    gateway: RequestVerifier, clock: Clock
) -> None:
    payload = seal(request(), KEY)
    assert isinstance(gateway.check_payload(payload, topic_gate=GATE), Accepted)
    clock.advance(29)
    assert refusal(gateway.check_payload(payload, topic_gate=GATE)) is RefusalReason.REPLAYED
    clock.advance(2)
    assert refusal(gateway.check_payload(payload, topic_gate=GATE)) is RefusalReason.STALE
    clock.advance(100)  # forgotten by now, but still stale
    assert refusal(gateway.check_payload(payload, topic_gate=GATE)) is RefusalReason.STALE


def test_the_gateway_replay_memory_is_bounded(clock: Clock) -> None:
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    gateway = RequestVerifier(
        ring, max_remembered=8, wall_clock=lambda: clock.wall, monotonic=lambda: clock.mono
    )
    for _ in range(20):
        assert isinstance(gateway.check_payload(seal(request(), KEY), topic_gate=GATE), Accepted)
    assert gateway.evicted == 12


# --- nothing raises on hostile input ---------------------------------------------------


def _receivers() -> list[Any]:
    ring = SiteKeyring(SITE, site_secret=SITE_SECRET)
    gateway = RequestVerifier(ring, wall_clock=lambda: T0)
    gate = VerdictVerifier(SITE, GATE, KEY, wall_clock=lambda: T0)
    gate.expect(request(id="0" * 32), "0" * 64)
    return [
        lambda p: open_sealed(p, KEY),
        lambda p: open_sealed(p, ring.key_of),
        ring.open,
        gate.accept_payload,
        lambda p: gateway.check_payload(p, topic_gate=GATE),
    ]


def _assert_refused_or_accepted(payload: bytes) -> None:
    for receive in _receivers():
        result = receive(payload)
        assert isinstance(result, Accepted | Refused)
        if isinstance(result, Refused):
            assert result.detail.isprintable()


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_receivers_never_raise_on_arbitrary_payloads(payload: bytes) -> None:
    _assert_refused_or_accepted(payload)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_receivers_never_raise_on_arbitrary_bodies_sealed_with_the_right_key(
    body: bytes,
) -> None:
    _assert_refused_or_accepted(seal_body(b"{" + body + b"}", KEY))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.sampled_from(every_signed_type()), st.data())
def test_receivers_never_raise_on_sealed_messages_with_one_member_replaced(
    msg: Message, data: st.DataObject
) -> None:
    obj = wire_object(msg)
    key = data.draw(st.sampled_from([*sorted(obj), "mac", "extra"]))
    obj[key] = data.draw(json_values)
    body = json.dumps(obj, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
    _assert_refused_or_accepted(seal_body(body, KEY))


# --- the examples in docs/protocol.md --------------------------------------------------

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
DOC_SITE, DOC_GATE = "demo", "in-01"
DOC_KEY = derive_gate_key(bytes(range(32)), DOC_SITE, DOC_GATE)
MOSQUITTO_STUB = (
    'mosquitto_pub() { while [ $# -gt 0 ]; do case "$1" in'
    ' -m) printf "%s\\n" "$2"; shift ;; -t) printf "topic %s\\n" "$2"; shift ;;'
    " esac; shift; done; }\n"
)
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def doc_examples(name: str) -> list[str]:
    """Bodies of the fenced blocks marked ``<!-- example: name -->`` in protocol.md, without
    the newline before the closing fence."""
    pattern = r"<!-- example: " + re.escape(name) + r" -->\n```\w*\n(.*?)\n```"
    return re.findall(pattern, PROTOCOL_MD.read_text(), flags=re.DOTALL)


def run_shell(shell: str, script: str, **env: str) -> str:
    result = subprocess.run(
        [shell, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={"PATH": os.environ["PATH"], **env},
    )
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stdout}{result.stderr}")
    return result.stdout


def opened_doc_json() -> dict[str, Accepted[Message]]:
    """Every sealed JSON example, opened with the demo gate key, by type."""
    opened: dict[str, Accepted[Message]] = {}
    for example in doc_examples("json"):
        if '"type": "availability"' in example:
            continue
        result = open_sealed(example.encode(), DOC_KEY)
        assert isinstance(result, Accepted), (result, example)
        opened[result.message.type] = result
    return opened


def test_every_json_example_in_the_protocol_doc_is_a_payload_that_opens() -> None:
    opened = opened_doc_json()
    assert set(opened) == {
        "verify_request",
        "verify_batch_request",
        "verdict",
        "batch_verdict",
        "error",
        "gate_event",
        "heartbeat",
    }
    (availability,) = (e for e in doc_examples("json") if '"availability"' in e)
    assert isinstance(decode(availability.encode()), Availability)
    for example in doc_examples("json"):
        assert isinstance(json.loads(example), dict)  # a sealed payload is plain JSON too


def test_the_doc_verdicts_are_accepted_for_the_doc_requests() -> None:
    opened = opened_doc_json()
    single, batch = opened["verify_request"], opened["verify_batch_request"]
    assert isinstance(single.message, VerifyRequest)
    assert isinstance(batch.message, VerifyBatchRequest)
    ts = single.message.ts
    verifier = VerdictVerifier(DOC_SITE, DOC_GATE, DOC_KEY, wall_clock=lambda: ts)
    verifier.expect(single.message, single.mac)
    verifier.expect(batch.message, batch.mac)
    payloads = {e: e.encode() for e in doc_examples("json")}
    replies = [p for e, p in payloads.items() if '"type": "verdict"' in e or "batch_verdict" in e]
    assert len(replies) == 2
    for payload in replies:
        assert isinstance(verifier.accept_payload(payload), Accepted)


def test_the_doc_requests_are_accepted_by_the_gateway() -> None:
    ring = SiteKeyring(DOC_SITE, site_secret=bytes(range(32)))
    for kind in ("verify_request", "verify_batch_request"):
        (example,) = (e for e in doc_examples("json") if f'"type": "{kind}"' in e)
        ts: float = json.loads(example)["ts"]
        gateway = RequestVerifier(ring, wall_clock=lambda: ts)  # noqa: B023 (called here)
        assert isinstance(gateway.check_payload(example.encode(), topic_gate=DOC_GATE), Accepted)


@needs_openssl
def test_the_documented_gate_key_derivation_gives_the_documented_key() -> None:
    (script,) = doc_examples("gate-key")
    assert run_shell("bash", script).strip() == DOC_KEY.hex()
    assert f"# {DOC_KEY.hex()}" in script
    (request_script,) = doc_examples("verify-request")
    assert f"KEY={DOC_KEY.hex()}" in request_script


@needs_openssl
@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_the_documented_openssl_request_is_accepted_by_the_gateway(shell: str) -> None:
    (script,) = doc_examples("verify-request")
    request_id, ts = "00112233445566778899aabbccddeeff", "1764355200"
    out = run_shell(shell, MOSQUITTO_STUB + script, ID=request_id, TS=ts).splitlines()
    assert out[0] == f"topic provgate/v1/{DOC_SITE}/{DOC_GATE}/verify/request"
    payload = out[1].encode()
    documented = re.search(r"the MAC is\s+`([0-9a-f]{64})`", PROTOCOL_MD.read_text())
    assert documented is not None
    assert mac_of(payload) == documented.group(1)
    ring = SiteKeyring(DOC_SITE, site_secret=bytes(range(32)))
    gateway = RequestVerifier(ring, wall_clock=lambda: float(ts))
    result = gateway.check_payload(payload, topic_gate=DOC_GATE)
    assert isinstance(result, Accepted), result
    assert (result.message.id, result.message.ts) == (request_id, float(ts))
    assert refusal(gateway.check_payload(payload, topic_gate=DOC_GATE)) is RefusalReason.REPLAYED


@needs_openssl
def test_the_documented_openssl_request_uses_a_fresh_id_and_the_current_time() -> None:
    (script,) = doc_examples("verify-request")
    payloads = [run_shell("sh", MOSQUITTO_STUB + script).splitlines()[1] for _ in range(2)]
    first, second = (json.loads(p) for p in payloads)
    assert first["id"] != second["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first["id"])
    ring = SiteKeyring(DOC_SITE, site_secret=bytes(range(32)))
    gateway = RequestVerifier(ring)  # the real clock
    for payload in payloads:
        result = gateway.check_payload(payload.encode(), topic_gate=DOC_GATE)
        assert isinstance(result, Accepted), result


def test_the_documented_python_one_liner_checks_every_example_mac() -> None:
    (script,) = doc_examples("python-mac")
    assert script.startswith("python3 ")
    script = shlex.quote(sys.executable) + script.removeprefix("python3")
    signed = [e for e in doc_examples("json") if '"mac":"' in e]
    assert len(signed) == 7
    for payload in signed:
        assert run_shell("bash", script, KEY=DOC_KEY.hex(), PAYLOAD=payload).strip() == "ok"
        tampered = payload.replace('"demo"', '"demo" ', 1)
        with pytest.raises(AssertionError, match="exit 1: bad"):
            run_shell("bash", script, KEY=DOC_KEY.hex(), PAYLOAD=tampered)
    with pytest.raises(AssertionError, match="exit 1: bad"):
        run_shell("bash", script, KEY=OTHER_KEY.hex(), PAYLOAD=signed[0])


def test_the_documented_availability_payloads_decode() -> None:
    (script,) = doc_examples("availability")
    payloads = re.findall(r"'(\{.*?\})'", script)
    assert len(payloads) == 2
    for payload in payloads:
        msg = decode(payload.encode())
        assert isinstance(msg, Availability), msg


def test_expect_and_accept_may_run_on_different_threads() -> None:
    verifier = VerdictVerifier(SITE, GATE, KEY, timeout_s=60, wall_clock=lambda: T0)
    requests = [request() for _ in range(300)]
    payloads = [seal(r, KEY) for r in requests]
    replies = [seal(verdict(r, mac_of(p)), KEY) for r, p in zip(requests, payloads, strict=True)]
    accepted: list[str] = []

    def answer(rounds: int) -> None:
        for _ in range(rounds):
            for payload in replies:
                result = verifier.accept_payload(payload)
                if isinstance(result, Accepted):
                    accepted.append(result.message.id)

    worker = threading.Thread(target=answer, args=(2,))
    worker.start()
    for req, payload in zip(requests, payloads, strict=True):
        verifier.expect(req, mac_of(payload))
    worker.join(timeout=30)
    answer(1)  # replies the worker saw before their request was expected
    assert len(accepted) == len(set(accepted)) == len(requests)
