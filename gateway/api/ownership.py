"""What a commissioning request may write: only commissioning, only the brand's own IDs.

The check runs on the JSON-LD the ledger will store, over every ID the ledger will index
for each event (:func:`gateway.ledger.ledger.item_keys`: epcList, childEPCs, parentID,
inputEPCList, outputEPCList), whichever route the events came from (JSON, CSV, EPCIS).
Items must be SGTIN EPC URIs written with the registered company prefix's length, so the
ledger names each item one way; containers (aggregation parents) may be SSCCs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from gateway.ledger.epcis import AggregationEvent, EpcisEvent, ObjectEvent
from gateway.ledger.ledger import LedgerError, item_keys
from gateway.registry import Registry
from gatewire.epc import EpcError, decode_epc_uri, sgtin_uri

__all__ = ["IdCheck", "Owners", "check_ids", "commissioning_only"]

SGTIN: Final = "urn:epc:id:sgtin:"
SSCC: Final = "urn:epc:id:sscc:"
#: Dispositions a commissioning route may write (anything else changes an item's status).
_PLAIN_DISPOSITIONS: Final = frozenset({"active", "in_progress"})


class Owners:
    """The registered company prefixes and their organisations, read once per request."""

    def __init__(self, registry: Registry) -> None:
        self._owners = registry.prefix_owners()

    def of_prefix(self, prefix: str) -> str | None:
        """The organisation owning exactly ``prefix``."""
        return self._owners.get(prefix)

    def of_gtin(self, gtin14: str) -> tuple[str, str] | None:
        """(company prefix, organisation) of the registered prefix ``gtin14`` falls under."""
        for length in range(12, 5, -1):  # longest first, as Registry.prefix_of_gtin
            prefix = gtin14[1 : 1 + length]
            org = self._owners.get(prefix)
            if org is not None:
                return prefix, org
        return None


class IdCheck:
    """The outcome of checking IDs: the foreign ones (403) and the malformed ones (422)."""

    def __init__(self) -> None:
        self.foreign: list[str] = []
        self.invalid: list[str] = []
        self.items: list[str] = []  # SGTINs, in order of first mention

    def __bool__(self) -> bool:
        return not self.foreign and not self.invalid


def _check_id(name: str, owners: Owners, org: str, out: IdCheck) -> None:
    if name.startswith(SGTIN):
        try:
            parts = decode_epc_uri(name)
        except EpcError as exc:
            out.invalid.append(f"{name}: {exc}")
            return
        found = owners.of_gtin(parts.gtin)
        if found is None or found[1] != org:
            out.foreign.append(name)
            return
        canonical = sgtin_uri(parts.gtin, parts.serial, len(found[0]))
        if canonical != name:
            out.invalid.append(f"{name}: write it as {canonical} (the registered prefix length)")
            return
        out.items.append(name)
    elif name.startswith(SSCC):
        if owners.of_prefix(name.removeprefix(SSCC).partition(".")[0]) != org:
            out.foreign.append(name)
    else:
        out.invalid.append(
            f"{name}: name items by SGTIN EPC URI (urn:epc:id:sgtin:…) and containers by "
            "SSCC (urn:epc:id:sscc:…)"
        )


def check_ids(events: Sequence[Mapping[str, Any]], owners: Owners, org: str) -> IdCheck:
    """Check every ID the ledger would index for ``events`` (their stored JSON-LD)."""
    out = IdCheck()
    seen: set[str] = set()
    for index, event in enumerate(events):
        try:
            names = item_keys(event)
        except LedgerError as exc:
            out.invalid.append(f"event {index}: {exc}")
            continue
        for name in names:
            if name not in seen:
                seen.add(name)
                _check_id(name, owners, org, out)
    return out


def _commissions(event: EpcisEvent) -> bool:
    return (
        isinstance(event, ObjectEvent)
        and event.action.value == "ADD"
        and event.biz_step == "commissioning"
    )


def commissioning_only(
    events: Sequence[EpcisEvent], stored: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Why events are not for a commissioning route (empty: they are).

    Accepted: ObjectEvents with action ADD, bizStep commissioning; and AggregationEvents
    with action ADD (bizStep packing or none) of a parent and items that an earlier event
    of the same request commissions. Neither may carry a disposition other than active or
    in_progress, nor gate data (``pg:`` verdicts, reason codes). ``stored`` is the JSON-LD
    of ``events``, index by index.
    """
    problems: list[str] = []
    commissioned: set[str] = set()
    for index, (event, data) in enumerate(zip(events, stored, strict=True)):
        names = item_keys(data)
        where = f"event {index}"
        if event.disposition is not None and event.disposition not in _PLAIN_DISPOSITIONS:
            problems.append(
                f"{where}: disposition {event.disposition} (active or in_progress only)"
            )
        if event.gate.to_jsonld():
            problems.append(f"{where}: gate data (pg: properties) is written by sites, not brands")
        if _commissions(event):
            commissioned.update(names)
        elif isinstance(event, AggregationEvent) and event.action.value == "ADD":
            if event.parent_id is None:
                problems.append(f"{where}: an aggregation needs a parentID")
            if event.biz_step not in (None, "packing"):
                problems.append(f"{where}: aggregation bizStep {event.biz_step} (packing only)")
            loose = [n for n in names if n.startswith(SGTIN) and n not in commissioned]
            if loose:
                problems.append(
                    f"{where}: aggregates items not commissioned earlier in this request: "
                    + ", ".join(loose[:10])
                )
        else:
            problems.append(
                f"{where}: {event.type} {event.action.value} {event.biz_step or '(no bizStep)'} "
                "is not commissioning; this route takes ObjectEvents ADD with bizStep "
                "commissioning and aggregations (ADD) of the items they commission"
            )
    return problems
