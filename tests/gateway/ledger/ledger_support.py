"""Helpers for the ledger tests: events, a stand-in event hash, raw tampering."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.ledger.store import SqlStore

BRAND = "brand-acme"
SITE = "site-dc1"


def fake_event_hash(event: Mapping[str, Any]) -> str:
    """A stand-in for the CBV 2.0 hash: SHA-256 of the sorted compact JSON."""
    text = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return "ni:///sha-256;" + hashlib.sha256(text.encode()).hexdigest() + "?ver=CBV2.0"


def epc(n: int) -> str:
    """An SGTIN EPC URI of item n."""
    return f"urn:epc:id:sgtin:0614141.107346.{n}"


PALLET = "urn:epc:id:sscc:0614141.1234567890"


def aggregation(children: Sequence[str]) -> dict[str, Any]:
    """An EPCIS 2.0 AggregationEvent packing ``children`` on PALLET (several items)."""
    return {
        "type": "AggregationEvent",
        "eventTime": "2026-11-28T10:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "parentID": PALLET,
        "childEPCs": list(children),
        "action": "ADD",
        "bizStep": "packing",
    }


def event(
    n: int,
    biz_step: str = "commissioning",
    disposition: str = "active",
    t: int = 0,
    items: Sequence[str] | None = None,
) -> dict[str, Any]:
    """An EPCIS 2.0 ObjectEvent naming item n (or ``items``)."""
    return {
        "type": "ObjectEvent",
        "eventTime": f"2026-11-28T10:{t // 60 % 60:02d}:{t % 60:02d}.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": list(items) if items is not None else [epc(n)],
        "action": "ADD" if biz_step == "commissioning" else "OBSERVE",
        "bizStep": biz_step,
        "disposition": disposition,
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.gate1"},
        "bizLocation": {"id": "urn:epc:id:sgln:0614141.00777.0"},
    }


def tamper(store: SqlStore, sql: str, params: Sequence[Any] = ()) -> None:
    """Run SQL directly on the database, bypassing the ledger (``?`` placeholders)."""
    conn: Any = getattr(store, "connection")  # noqa: B009 - both backends expose it
    if store.placeholder != "?":
        sql = sql.replace("?", store.placeholder)
    conn.execute(sql, params)
