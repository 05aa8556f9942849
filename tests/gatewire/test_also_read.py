"""``also_read``: the other sources' ids of the same physical item, on requests."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gatewire.auth import Accepted, RequestVerifier, SiteKeyring, derive_gate_key, seal
from gatewire.item import CanonicalItemId, IdKind
from gatewire.messages import (
    MAX_ALSO_READ,
    BatchItem,
    DecodeError,
    VerifyBatchRequest,
    VerifyRequest,
    decode,
    encode,
)

SITE, GATE = "ams1", "in-03"
SECRET = bytes(range(32))


def item(serial: str) -> CanonicalItemId:
    return CanonicalItemId(
        gtin="09506000134352",
        serial=serial,
        digital_link=f"https://id.gs1.org/01/09506000134352/21/{serial}",
        kind=IdKind.GS1_ELEMENT_STRING,
    )


def test_also_read_round_trips_on_single_and_batch_requests() -> None:
    single = VerifyRequest(site=SITE, gate=GATE, item=item("A1"), also_read=[item("B2")])
    batch = VerifyBatchRequest(
        site=SITE, gate=GATE, items=[BatchItem(index=0, item=item("A1"), also_read=[item("B2")])]
    )
    for msg in (single, batch):
        decoded = decode(encode(msg))
        assert decoded == msg
    decoded_single = decode(encode(single))
    assert isinstance(decoded_single, VerifyRequest)
    assert [i.key for i in decoded_single.also_read] == ["09506000134352/B2"]


def test_also_read_defaults_to_empty_and_stays_off_the_wire() -> None:
    msg = VerifyRequest(site=SITE, gate=GATE, item=item("A1"))
    assert msg.also_read == []
    assert "also_read" not in json.loads(encode(msg))


def test_more_than_four_also_read_ids_are_refused_when_built_and_on_decode() -> None:
    too_many = [item(f"B{i}") for i in range(MAX_ALSO_READ + 1)]
    with pytest.raises(ValidationError):
        VerifyRequest(site=SITE, gate=GATE, item=item("A1"), also_read=too_many)
    body = json.loads(encode(VerifyRequest(site=SITE, gate=GATE, item=item("A1"))))
    body["also_read"] = [i.model_dump(mode="json", exclude_none=True) for i in too_many]
    assert isinstance(decode(json.dumps(body).encode()), DecodeError)


def test_a_sealed_request_with_also_read_is_accepted_by_the_gateway() -> None:
    request = VerifyRequest(site=SITE, gate=GATE, item=item("A1"), also_read=[item("B2")])
    payload = seal(request, derive_gate_key(SECRET, SITE, GATE))
    result = RequestVerifier(SiteKeyring(SITE, site_secret=SECRET)).check_payload(
        payload, topic_gate=GATE
    )
    assert isinstance(result, Accepted)
    assert isinstance(result.message, VerifyRequest)
    assert result.message.also_read == [item("B2")]
