"""The gateway's fast paths: reply bodies from templates, and decoding without the
``mac`` re-check. Each must agree exactly with the model-based path it replaces."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewire.auth import (
    Accepted,
    RefusalReason,
    Refused,
    RequestVerifier,
    SiteKeyring,
    derive_gate_key,
    open_sealed,
    seal,
    seal_body,
)
from gatewire.item import CanonicalItemId, IdKind
from gatewire.messages import (
    REASON_PATTERN,
    BatchVerdict,
    Decision,
    DecodeError,
    DecodeErrorKind,
    ItemResult,
    Verdict,
    VerifyRequest,
    batch_verdict_body,
    decode,
    decode_unchecked_mac,
    encode,
    verdict_body,
)

SITE, GATE = "demo", "in-01"
SECRET = bytes(range(32))
KEY = derive_gate_key(SECRET, SITE, GATE)
MAC = "ab" * 32
TS = 1_764_355_200.262


def _verdict(**outcome: object) -> Verdict:
    return Verdict(
        id="gw-0000000000000001",
        site=SITE,
        gate=GATE,
        ts=TS,
        request_id="0123456789abcdef0123456789abcdef",
        request_mac=MAC,
        **outcome,
    )


def _template(v: Verdict) -> bytes:
    return verdict_body(
        msg_id=v.id,
        site=v.site,
        gate=v.gate,
        ts=v.ts,
        request_id=v.request_id,
        request_mac=v.request_mac,
        outcome=v,
    )


@pytest.mark.parametrize(
    "outcome",
    [
        {"decision": Decision.PASS, "reasons": ["ledger.ok"], "inspect": False},
        {"decision": Decision.REJECT, "reasons": [], "inspect": True, "ledger_state": "recalled"},
        {
            "decision": Decision.HOLD,
            "reasons": ["seller:suspended", "vision.suspect"],
            "inspect": False,
            "ledger_state": 'qu"ote\\ \u00e9\u4e2d\n\t\x01',
        },
    ],
)
def test_verdict_template_is_byte_for_byte_what_encode_writes(outcome: dict[str, object]) -> None:
    model = _verdict(**outcome)
    body = _template(model)
    assert body == encode(model)
    assert decode(body) == model


def test_verdict_template_leaves_out_an_unset_ledger_state() -> None:
    model = _verdict(decision=Decision.PASS, reasons=["ledger.ok"], inspect=False)
    assert b"ledger_state" not in _template(model)
    decoded = decode(_template(model))
    assert isinstance(decoded, Verdict)
    assert decoded.ledger_state is None
    assert decoded.model_fields_set == model.model_fields_set - {"mac"} | {"v", "type"}


@pytest.mark.parametrize("ts", [math.nan, math.inf, -1.0, 5, True])
def test_verdict_template_refuses_a_ts_json_cannot_carry(ts: float) -> None:
    model = _verdict(decision=Decision.PASS)
    with pytest.raises(ValueError, match="ts must be"):
        verdict_body(
            msg_id=model.id,
            site=SITE,
            gate=GATE,
            ts=ts,
            request_id=model.request_id,
            request_mac=MAC,
            outcome=model,
        )


def test_batch_verdict_template_is_byte_for_byte_what_encode_writes() -> None:
    results = [
        ItemResult(index=0, decision=Decision.PASS, reasons=["ledger.ok"], inspect=False),
        ItemResult(
            index=1, decision=Decision.REJECT, reasons=[], inspect=True, ledger_state="x\u00e9"
        ),
    ]
    model = BatchVerdict(
        id="gw-0000000000000002",
        site=SITE,
        gate=GATE,
        ts=TS,
        request_id="0123456789abcdef0123456789abcdef",
        request_mac=MAC,
        results=results,
    )
    body = batch_verdict_body(
        msg_id=model.id,
        site=SITE,
        gate=GATE,
        ts=TS,
        request_id=model.request_id,
        request_mac=MAC,
        results=results,
    )
    assert body == encode(model)
    assert decode(body) == model


@settings(max_examples=150, deadline=None)
@given(
    decision=st.sampled_from(Decision),
    reasons=st.lists(st.from_regex(REASON_PATTERN, fullmatch=True), max_size=4),
    inspect=st.booleans(),
    ledger_state=st.none() | st.text(max_size=64),
    ts=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_verdict_template_decodes_to_the_model_it_stands_for(
    decision: Decision, reasons: list[str], inspect: bool, ledger_state: str | None, ts: float
) -> None:
    fields: dict[str, object] = {"decision": decision, "reasons": reasons, "inspect": inspect}
    if ledger_state is not None:
        fields["ledger_state"] = ledger_state
    model = _verdict(**fields).model_copy(update={"ts": ts})
    body = _template(model)
    assert decode(body) == model
    opened = open_sealed(seal_body(body, KEY), KEY)
    assert isinstance(opened, Accepted)
    assert opened.message == model.model_copy(update={"mac": opened.mac})


def test_decode_takes_non_ascii_utf8_and_refuses_other_bytes() -> None:
    request = VerifyRequest(
        site=SITE,
        gate=GATE,
        item=CanonicalItemId(
            gtin="09506000134352",
            serial="ABC123",
            digital_link="https://id.gs1.org/01/09506000134352/21/ABC123",
            kind=IdKind.GS1_ELEMENT_STRING,
        ),
        seller="Beaut\u00e9 \u4e2d",
    )
    body = encode(request)
    assert decode(body) == request
    bad = body.replace("\u00e9".encode(), b"\xe9")
    error = decode_unchecked_mac(bad, len(bad), None)
    assert isinstance(error, DecodeError)
    assert error.kind is DecodeErrorKind.NOT_UTF8
    at = body.index("\u00e9".encode())
    assert error.reason == f"not UTF-8 at byte {at}"


def test_check_payload_refusals_carry_the_id_and_mac_of_the_payload() -> None:
    ring = SiteKeyring(SITE, site_secret=SECRET)
    verifier = RequestVerifier(ring, wall_clock=lambda: TS)
    request = VerifyRequest(
        site=SITE,
        gate=GATE,
        ts=TS,
        item=CanonicalItemId(
            gtin="09506000134352",
            digital_link="https://id.gs1.org/01/09506000134352",
            kind=IdKind.GTIN,
        ),
    )
    payload = seal(request, KEY)
    accepted = verifier.check_payload(payload, topic_gate=GATE)
    assert isinstance(accepted, Accepted)
    assert accepted.message.mac == accepted.mac == payload[-66:-2].decode()
    for topic_gate, reason in (("in-01", RefusalReason.REPLAYED), ("in-02", "wrong_gate")):
        refused = verifier.check_payload(payload, topic_gate=topic_gate)
        assert isinstance(refused, Refused)
        assert (refused.reason, refused.message_id, refused.mac) == (
            reason,
            request.id,
            accepted.mac,
        )
