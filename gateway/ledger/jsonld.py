"""Read and write EPCIS 2.0 JSON-LD documents of provgate events (import and export).

``read_document`` takes an EPCISDocument or EPCISQueryDocument (text, bytes or parsed)
and returns its ObjectEvents and AggregationEvents as models, with the namespaces of the
document's ``@context`` attached to each event so that foreign extensions hash as written.
``write_document`` writes events as an EPCISDocument. Pure functions; the caller does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway.ledger.epcis import EpcisError, EpcisEvent, epcis_document, from_jsonld
from gateway.ledger.event_hash import EventHashError, document_events, namespaces_from_context

__all__ = ["read_document", "write_document"]

_DOCUMENT_TYPES = ("EPCISDocument", "EPCISQueryDocument")


def read_document(data: str | bytes | Mapping[str, Any]) -> list[EpcisEvent]:
    """The events of an EPCIS 2.0 JSON-LD document, in document order.

    Raises EpcisError naming the first problem (not JSON, not an EPCIS document, an event
    type provgate does not store, an invalid event with its index).
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise EpcisError(f"not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise EpcisError("an EPCIS document must be a JSON object")
    if data.get("type") not in _DOCUMENT_TYPES:
        raise EpcisError(f"not an EPCIS document: type is {data.get('type')!r}")
    try:
        events = document_events(data)
    except EventHashError as exc:
        raise EpcisError(str(exc)) from None
    namespaces = namespaces_from_context(data.get("@context"))
    result = []
    for index, event in enumerate(events):
        try:
            result.append(from_jsonld(event, namespaces))
        except EpcisError as exc:
            raise EpcisError(f"event {index}: {exc}") from None
    return result


def write_document(
    events: Sequence[EpcisEvent],
    *,
    creation_date: datetime | None = None,
    indent: int | None = None,
) -> str:
    """``events`` as an EPCIS 2.0 JSON-LD document (UTF-8 text)."""
    doc = epcis_document(events, creation_date=creation_date)
    return json.dumps(doc, ensure_ascii=False, indent=indent)
