"""Message schemas: encode/decode round trips, strict decoding, limits."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from gatewire.item import CanonicalItemId, IdKind
from gatewire.messages import (
    MAX_BATCH,
    Availability,
    BatchItem,
    BatchVerdict,
    Decision,
    DecodeError,
    DecodeErrorKind,
    ErrorCode,
    ErrorReply,
    GateEvent,
    Heartbeat,
    ItemResult,
    Message,
    PayloadTooLargeError,
    ReadSource,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
    VisionVerdict,
    decode,
    encode,
    new_message_id,
    wire_object,
)

SITE, GATE = "ams1", "in-03"
MAC = "ab" * 32


def item(serial: str = "ABC123") -> CanonicalItemId:
    return CanonicalItemId(
        gtin="09506000134352",
        serial=serial,
        batch="L42",
        expiry=dt.date(2027, 5, 31),
        digital_link=f"https://id.gs1.org/01/09506000134352/21/{serial}",
        kind=IdKind.GS1_ELEMENT_STRING,
    )


def one_of_each() -> list[Message]:
    """A message of every type, with optional fields filled in."""
    env: dict[str, Any] = {"site": SITE, "gate": GATE, "ts": 1764355200.125}
    request_binding = {"request_id": "a" * 32, "request_mac": MAC}
    return [
        VerifyRequest(
            **env,
            item=item(),
            sources=[ReadSource.BARCODE, ReadSource.RFID],
            vision_score=0.93,
            vision_verdict=VisionVerdict.GENUINE,
            seller="seller-17",
        ),
        VerifyBatchRequest(**env, items=[BatchItem(index=i, item=item(f"S{i}")) for i in range(3)]),
        Verdict(
            **env,
            **request_binding,
            decision=Decision.REJECT,
            reasons=["ledger.unknown_serial", "seller.suspended"],
            inspect=True,
            ledger_state="unknown",
        ),
        BatchVerdict(
            **env,
            **request_binding,
            results=[ItemResult(index=i, decision=Decision.PASS) for i in range(3)],
        ),
        ErrorReply(**env, **request_binding, code=ErrorCode.UNAUTHENTICATED, detail="bad mac"),
        GateEvent(
            **env,
            item=item(),
            decision=Decision.HOLD,
            reasons=["verdict.timeout"],
            event_id="e" * 32,
            request_id="a" * 32,
            scanned_at=1764355199.5,
            decided_at=1764355200.0,
            actuated_at=1764355200.75,
            late=True,
        ),
        Heartbeat(
            **env,
            uptime_s=3600.5,
            counters={"items": 120, "rejects": 3},
            health={"scanner": "ok", "rfid": "down"},
        ),
        Availability(**env, online=False, who="gate"),
    ]


@pytest.mark.parametrize("msg", one_of_each(), ids=lambda m: m.type)
def test_every_message_type_survives_an_encode_decode_round_trip(msg: Message) -> None:
    decoded = decode(encode(msg))
    assert decoded == msg
    assert type(decoded) is type(msg)


@pytest.mark.parametrize("msg", one_of_each(), ids=lambda m: m.type)
def test_encoded_messages_carry_version_type_id_and_ts(msg: Message) -> None:
    obj = json.loads(encode(msg))
    assert obj["v"] == 1
    assert obj["type"] == msg.type
    assert obj["id"] == msg.id
    assert obj["ts"] == msg.ts


def test_encoding_is_compact_json_without_unset_defaults() -> None:
    msg = VerifyRequest(site=SITE, gate=GATE, item=item())
    payload = encode(msg)
    assert b" " not in payload
    obj = json.loads(payload)
    assert set(obj) == {"v", "type", "id", "ts", "site", "gate", "item"}
    assert "serial" in obj["item"]
    assert "epc_uri" not in obj["item"]
    assert wire_object(msg) == obj


def test_messages_built_in_python_put_their_defaulted_envelope_on_the_wire() -> None:
    msg = Heartbeat(site=SITE, gate=GATE, uptime_s=1.0)
    obj = json.loads(encode(msg))
    assert list(obj)[:4] == ["v", "type", "id", "site"]
    assert (obj["id"], obj["ts"]) == (msg.id, msg.ts)
    assert "counters" not in obj


def test_encode_never_writes_mac() -> None:
    base = one_of_each()[0]
    msg = base.model_copy(update={"mac": MAC})
    assert b"mac" not in encode(msg)
    assert "mac" not in wire_object(msg)
    assert encode(msg) == encode(base)


def test_decode_reads_a_mac_member_without_checking_it() -> None:
    payload = encode(one_of_each()[0])[:-1] + b',"mac":"' + MAC.encode() + b'"}'
    msg = decode(payload)
    assert isinstance(msg, VerifyRequest)
    assert msg.mac == MAC


def test_decoding_a_sealed_body_attaches_its_mac_and_refuses_a_second_one() -> None:
    base = one_of_each()[0]
    body = encode(base)
    msg = decode(body, mac=MAC)
    assert isinstance(msg, VerifyRequest)
    assert msg == base.model_copy(update={"mac": MAC})
    with_mac = body[:-1] + b',"mac":"' + ("cd" * 32).encode() + b'"}'
    refused = decode(with_mac, mac=MAC)
    assert isinstance(refused, DecodeError)
    assert refused.kind is DecodeErrorKind.INVALID
    assert "mac" in refused.reason
    escaped = body[:-1] + b',"m\\u0061c":"' + ("cd" * 32).encode() + b'"}'
    assert isinstance(decode(escaped, mac=MAC), DecodeError)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        decode(body, mac=MAC.upper())


def test_new_message_ids_are_128_bit_random_hex() -> None:
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_batch_of_500_items_is_accepted_and_round_trips() -> None:
    items = [BatchItem(index=i, item=item(f"S{i}")) for i in range(MAX_BATCH)]
    msg = VerifyBatchRequest(site=SITE, gate=GATE, items=items)
    payload = encode(msg)
    assert len(payload) < 256 * 1024
    assert decode(payload) == msg


def test_a_batch_of_501_items_is_refused_when_built() -> None:
    items = [BatchItem(index=i, item=item()) for i in range(MAX_BATCH)]
    items.append(BatchItem(index=0, item=item()))
    with pytest.raises(ValidationError, match="at most 500"):
        VerifyBatchRequest(site=SITE, gate=GATE, items=items)


def test_a_batch_of_501_items_is_refused_on_decode() -> None:
    obj = wire_object(
        VerifyBatchRequest(site=SITE, gate=GATE, items=[BatchItem(index=0, item=item())])
    )
    one = obj["items"][0]
    obj["items"] = [{**one, "index": i} for i in range(MAX_BATCH + 1)]
    result = decode(json.dumps(obj).encode())
    assert isinstance(result, DecodeError)
    assert result.kind is DecodeErrorKind.INVALID
    assert "items" in result.reason


def test_batch_indices_must_count_up_from_zero() -> None:
    with pytest.raises(ValidationError, match="indices"):
        VerifyBatchRequest(
            site=SITE,
            gate=GATE,
            items=[BatchItem(index=1, item=item()), BatchItem(index=0, item=item())],
        )
    with pytest.raises(ValidationError, match="indices"):
        BatchVerdict(
            site=SITE,
            gate=GATE,
            request_id="a" * 32,
            request_mac=MAC,
            results=[ItemResult(index=0, decision=Decision.PASS)] * 2,
        )


def _valid_obj() -> dict[str, Any]:
    return wire_object(one_of_each()[0])


_DROP = object()


def _with(**changes: Any) -> bytes:
    obj = _valid_obj()
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"\xff\xfe{}", DecodeErrorKind.NOT_UTF8),
        (b"{", DecodeErrorKind.INVALID_JSON),
        (b"", DecodeErrorKind.INVALID_JSON),
        (b"[]", DecodeErrorKind.INVALID),
        (b'"verdict"', DecodeErrorKind.INVALID),
        (_with(v=2), DecodeErrorKind.UNSUPPORTED_VERSION),
        (_with(v="1"), DecodeErrorKind.UNSUPPORTED_VERSION),
        (_with(v=True), DecodeErrorKind.INVALID),
        (_with(v=1.0), DecodeErrorKind.INVALID),
        (_with(v=_DROP), DecodeErrorKind.UNSUPPORTED_VERSION),
        (_with(id=_DROP), DecodeErrorKind.INVALID),
        (_with(ts=_DROP), DecodeErrorKind.INVALID),
        (_with(type="verify_everything"), DecodeErrorKind.INVALID),
        (_with(type=_DROP), DecodeErrorKind.INVALID),
        (_with(colour="red"), DecodeErrorKind.INVALID),
        (_with(ts="1764355200"), DecodeErrorKind.INVALID),
        (_with(vision_score=1.5), DecodeErrorKind.INVALID),
        (_with(site="AMS1"), DecodeErrorKind.INVALID),
        (_with(mac="not-hex"), DecodeErrorKind.INVALID),
        (_with(ts=float("nan")), DecodeErrorKind.INVALID),
        (_with(ts=float("inf")), DecodeErrorKind.INVALID),
    ],
)
def test_decode_returns_a_one_line_error_for_bad_input(
    payload: bytes, kind: DecodeErrorKind
) -> None:
    result = decode(payload)
    assert isinstance(result, DecodeError), result
    assert result.kind is kind
    assert result.reason
    assert "\n" not in result.reason


def test_decode_errors_quote_nothing_unprintable_from_the_payload() -> None:
    obj = wire_object(one_of_each()[6]) | {"counters": {"a\nb\x1b[31m": 1}}
    result = decode(json.dumps(obj).encode())
    assert isinstance(result, DecodeError)
    assert result.reason.isprintable()


def test_decode_refuses_an_oversized_payload_before_parsing() -> None:
    payload = encode(one_of_each()[0])
    assert isinstance(decode(payload, max_bytes=len(payload)), VerifyRequest)
    result = decode(payload, max_bytes=len(payload) - 1)
    assert isinstance(result, DecodeError)
    assert result.kind is DecodeErrorKind.TOO_LARGE
    huge = decode(b" " * (256 * 1024 + 1))
    assert isinstance(huge, DecodeError)
    assert huge.kind is DecodeErrorKind.TOO_LARGE


def test_encode_refuses_a_message_receivers_would_refuse_as_too_large() -> None:
    msg = one_of_each()[0]
    size = len(encode(msg))
    assert len(encode(msg, max_bytes=size)) == size
    with pytest.raises(PayloadTooLargeError, match="limit"):
        encode(msg, max_bytes=size - 1)


def test_decode_reports_the_message_id_of_an_invalid_message_when_readable() -> None:
    result = decode(_with(colour="red", id="req-0123456789"))
    assert isinstance(result, DecodeError)
    assert result.message_id == "req-0123456789"
    wrong_version = decode(_with(v=2, id="req-0123456789"))
    assert isinstance(wrong_version, DecodeError)
    assert wrong_version.message_id == "req-0123456789"


def test_decode_survives_deeply_nested_json() -> None:
    depth = 100_000
    result = decode(b"[" * depth + b"]" * depth)
    assert isinstance(result, DecodeError)
    nested = decode(b'{"v":1,"type":"heartbeat","health":' + b"[" * depth + b"]" * depth + b"}")
    assert isinstance(nested, DecodeError)


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_decode_never_raises_on_arbitrary_bytes(payload: bytes) -> None:
    result = decode(payload)
    assert isinstance(result, DecodeError | BaseModel)
    assert isinstance(result, BaseModel) or result.reason.isprintable()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=8))
def test_decode_never_raises_on_arbitrary_json_objects(obj: dict[str, Any]) -> None:
    result = decode(json.dumps(obj).encode())
    assert isinstance(result, DecodeError)
    assert result.reason.isprintable()


@settings(max_examples=300)
@given(
    st.sampled_from(one_of_each()),
    st.data(),
)
def test_decode_never_raises_on_valid_messages_with_one_field_replaced(
    msg: Message, data: st.DataObject
) -> None:
    obj = wire_object(msg)
    key = data.draw(st.sampled_from(sorted(obj)))
    obj[key] = data.draw(json_values)
    result = decode(json.dumps(obj).encode())
    assert isinstance(result, DecodeError) or result.type == msg.type
