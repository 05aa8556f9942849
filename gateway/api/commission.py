"""Commissioning in bulk: items from JSON, CSV or an EPCIS document → signed ledger events.

Every item is named in the ledger by its SGTIN EPC URI, written with the length of the
GS1 company prefix registered for its GTIN (so it is the same URI whatever form the item
arrived in). An organisation may commission only under its own registered prefixes.
Items with the same seller, batch and expiry share an ObjectEvent (ADD, commissioning,
active), at most :data:`EPCS_PER_EVENT` per event so that one item's proof stays small;
batch and expiry travel as ILMD (``cbvmda:lotNumber``, ``cbvmda:itemExpirationDate``).
What any route may append is checked by gateway/api/ownership.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.api.ownership import Owners, check_ids, commissioning_only
from gateway.items import ItemProjection, item_key_of
from gateway.ledger.epcis import (
    SELLER_BTT,
    BizStep,
    Disposition,
    EpcisError,
    EpcisEvent,
    object_event,
    to_jsonld,
)
from gateway.ledger.jsonld import read_document
from gateway.ledger.ledger import Appended, Ledger
from gateway.ledger.store import SqlStore
from gateway.registry import RegistryError, normalise_gtin
from gatewire.epc import sgtin_uri
from gatewire.identity import parse_item_id

__all__ = [
    "CSV_COLUMNS",
    "EPCS_PER_EVENT",
    "CommissionError",
    "ItemIn",
    "NewItem",
    "check_events",
    "check_owner",
    "commissioning_events",
    "epcis_events",
    "known_items",
    "parse_csv",
    "resolve",
    "stored_form",
    "write_events",
]

EPCS_PER_EVENT: Final = 100
MAX_ITEMS: Final = 100_000
CSV_COLUMNS: Final = ("id", "gtin", "serial", "batch", "expiry", "seller")
_CSV_HELP: Final = (
    "CSV columns (header row): id, or gtin and serial; optionally batch, expiry (YYYY-MM-DD), "
    "seller"
)
_IN_CHUNK: Final = 500


class CommissionError(ValueError):
    """A commissioning request that cannot be carried out; ``ids`` names the items."""

    def __init__(self, message: str, ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.ids = list(ids)


@dataclass(frozen=True, slots=True)
class ItemIn:
    """One item as the client named it (an ID in any form, or GTIN + serial)."""

    id: str | None = None
    gtin: str | None = None
    serial: str | None = None
    batch: str | None = None
    expiry: dt.date | None = None
    seller: str | None = None

    @property
    def label(self) -> str:
        """How to name this item in an error message."""
        return self.id if self.id is not None else f"{self.gtin}/{self.serial}"


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item ready to commission."""

    label: str
    epc: str
    key: str
    gtin: str
    serial: str
    owner: str | None
    batch: str | None
    expiry: dt.date | None
    seller: str | None


def _limited(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def resolve(items: Sequence[ItemIn], owners: Owners, default_seller: str | None) -> list[NewItem]:
    """Parse and name every item; CommissionError listing the ones that are invalid."""
    if not items:
        raise CommissionError("no items to commission")
    if len(items) > MAX_ITEMS:
        raise CommissionError(f"{len(items)} items; at most {MAX_ITEMS} per request")
    gtins: dict[str, str] = {}
    out: list[NewItem] = []
    bad: list[str] = []
    seen: dict[str, str] = {}
    for item in items:
        try:
            new = _resolve_one(item, owners, default_seller, gtins)
        except (CommissionError, RegistryError) as exc:
            bad.append(f"{item.label}: {exc}")
            continue
        if new.key in seen:
            bad.append(f"{item.label}: same item as {seen[new.key]}")
            continue
        seen[new.key] = item.label
        out.append(new)
    if bad:
        raise CommissionError(f"{len(bad)} invalid items: {_limited(bad, 10)}", bad)
    return out


def _resolve_one(
    item: ItemIn, owners: Owners, default_seller: str | None, gtins: dict[str, str]
) -> NewItem:
    if (item.id is None) == (item.gtin is None and item.serial is None):
        raise CommissionError("give either id, or gtin and serial")
    if item.id is not None:
        outcome = parse_item_id(item.id)
    else:
        if item.gtin is None or item.serial is None:
            raise CommissionError("give both gtin and serial")
        gtin14 = gtins.get(item.gtin)
        if gtin14 is None:
            gtin14 = gtins[item.gtin] = normalise_gtin(item.gtin)
        # As an element string (serial last, so no separator needed): the fast parse path.
        outcome = parse_item_id(f"01{gtin14}21{item.serial}")
    parsed = outcome.item
    if parsed is None:
        raise CommissionError(f"not an item ID: {outcome.error}")
    if parsed.serial is None:
        raise CommissionError("names a product, not one item (no serial)")
    batch = _same(item.batch, parsed.batch, "batch")
    expiry = _same(item.expiry, parsed.expiry, "expiry")
    found = owners.of_gtin(parsed.gtin)
    epc = parsed.epc_uri if found is None else sgtin_uri(parsed.gtin, parsed.serial, len(found[0]))
    if epc is None:
        raise CommissionError("cannot name it as an EPC URI: no company prefix registered")
    return NewItem(
        label=item.label,
        epc=epc,
        key=parsed.key,
        gtin=parsed.gtin,
        serial=parsed.serial,
        owner=None if found is None else found[1],
        batch=batch,
        expiry=expiry,
        seller=item.seller or default_seller,
    )


def _same(given: Any, parsed: Any, what: str) -> Any:
    if given is not None and parsed is not None and given != parsed:
        raise CommissionError(f"{what} {given} differs from the {what} {parsed} in the ID")
    return given if given is not None else parsed


def check_owner(items: Iterable[NewItem], org: str) -> None:
    """CommissionError (naming them) unless ``org`` owns the prefix of every item."""
    foreign = [i.label for i in items if i.owner != org]
    if foreign:
        raise CommissionError(
            f"{org} may commission only under its own company prefixes; "
            f"{len(foreign)} items are not: {_limited(foreign)}",
            foreign,
        )


def commissioning_events(
    items: Sequence[NewItem],
    *,
    event_time: dt.datetime | None = None,
    read_point: str | None = None,
    biz_location: str | None = None,
) -> list[dict[str, Any]]:
    """ObjectEvents (JSON-LD) commissioning ``items``: one per seller, batch and expiry,
    at most EPCS_PER_EVENT items each."""
    moment = event_time or dt.datetime.now(dt.UTC)
    groups: dict[tuple[str | None, str | None, dt.date | None], list[str]] = {}
    for item in items:
        groups.setdefault((item.seller, item.batch, item.expiry), []).append(item.epc)
    events: list[dict[str, Any]] = []
    for (seller, batch, expiry), epcs in groups.items():
        for start in range(0, len(epcs), EPCS_PER_EVENT):
            event = to_jsonld(
                object_event(
                    epcs[start : start + EPCS_PER_EVENT],
                    action="ADD",
                    biz_step=BizStep.COMMISSIONING,
                    disposition=Disposition.ACTIVE,
                    read_point=read_point,
                    biz_location=biz_location,
                    transactions=[] if seller is None else [(SELLER_BTT, seller)],
                    event_time=moment,
                )
            )
            ilmd: dict[str, str] = {}
            if batch is not None:
                ilmd["cbvmda:lotNumber"] = batch
            if expiry is not None:
                ilmd["cbvmda:itemExpirationDate"] = expiry.isoformat()
            if ilmd:
                event["ilmd"] = ilmd
            events.append(event)
    return events


# ---- CSV -------------------------------------------------------------------------------


def parse_csv(data: bytes) -> list[ItemIn]:
    """Items from CSV text with a header row (see CSV_COLUMNS); CommissionError naming
    the line that is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommissionError(f"CSV is not UTF-8 text: {exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if not header or unknown or not ("id" in header or {"gtin", "serial"} <= set(header)):
        got = ", ".join(reader.fieldnames or []) or "nothing"
        raise CommissionError(f"{_CSV_HELP}; got: {got}")
    reader.fieldnames = header
    items: list[ItemIn] = []
    try:
        for row in reader:
            if None in row:
                raise CommissionError(
                    f"CSV line {reader.line_num}: more fields than the header has"
                )
            values = {k: (v or "").strip() or None for k, v in row.items()}
            expiry = values.get("expiry")
            try:
                expiry_date = None if expiry is None else dt.date.fromisoformat(expiry)
            except ValueError:
                raise CommissionError(
                    f"CSV line {reader.line_num}: expiry {expiry!r} is not YYYY-MM-DD"
                ) from None
            items.append(
                ItemIn(
                    id=values.get("id"),
                    gtin=values.get("gtin"),
                    serial=values.get("serial"),
                    batch=values.get("batch"),
                    expiry=expiry_date,
                    seller=values.get("seller"),
                )
            )
            if len(items) > MAX_ITEMS:
                raise CommissionError(f"more than {MAX_ITEMS} items; send them in parts")
    except csv.Error as exc:
        raise CommissionError(f"CSV line {reader.line_num}: {exc}") from None
    if not items:
        raise CommissionError("the CSV holds a header but no items")
    return items


# ---- EPCIS ---------------------------------------------------------------------------


def stored_form(event: EpcisEvent) -> dict[str, Any]:
    """The JSON the ledger stores for an imported event (as ``provgate ledger import``)."""
    data = to_jsonld(event)
    if event.namespaces:
        return {"@context": [dict(event.namespaces)], **data}
    return data


def epcis_events(
    document: Mapping[str, Any], owners: Owners, org: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The stored JSON-LD of an EPCIS document's events and the items they name, once
    every ID is checked (:func:`check_events`) and the events only commission
    (:func:`gateway.api.ownership.commissioning_only`); CommissionError otherwise."""
    try:
        events = read_document(document)
    except EpcisError as exc:
        raise CommissionError(str(exc)) from None
    if not events:
        raise CommissionError("the EPCIS document holds no event")
    if len(events) > MAX_ITEMS:
        raise CommissionError(f"{len(events)} events; at most {MAX_ITEMS} per request")
    stored = [stored_form(e) for e in events]
    items = check_events(stored, owners, org)
    problems = commissioning_only(events, stored)
    if problems:
        raise CommissionError(
            f"only commissioning here; {len(problems)} problems: {_limited(problems, 10)}"
        )
    return stored, items


def check_events(stored: Sequence[Mapping[str, Any]], owners: Owners, org: str) -> list[str]:
    """The items (SGTIN URIs) the events name, after checking that every ID the ledger
    would index for them is ``org``'s and written the one way (CommissionError: with
    ``ids`` for foreign IDs, without for malformed ones)."""
    checked = check_ids(stored, owners, org)
    if checked.foreign:
        raise CommissionError(
            f"{org} may commission only under its own company prefixes; "
            f"{len(checked.foreign)} IDs are not: {_limited(checked.foreign)}",
            checked.foreign,
        )
    if checked.invalid:
        raise CommissionError(
            f"{len(checked.invalid)} invalid IDs: {_limited(checked.invalid, 10)}"
        )
    return checked.items


# ---- writing ---------------------------------------------------------------------------


def known_items(store: SqlStore, projection: ItemProjection, epcs: Sequence[str]) -> list[str]:
    """The ones among ``epcs`` the ledger already names, under that URI or any other name
    of the same item (another prefix split, escaping or a Digital Link: the projection
    merges them by canonical key). Call inside the write transaction."""
    found: set[str] = set()
    for start in range(0, len(epcs), _IN_CHUNK):
        chunk = epcs[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = store._execute(
            store._q(
                f"SELECT item_key FROM events WHERE item_key IN ({marks}) "
                f"UNION SELECT item_key FROM item_events WHERE item_key IN ({marks})"
            ),
            [*chunk, *chunk],
        )
        found.update(str(r[0]) for r in rows)
    projection.sync()
    keys: dict[str, str] = {}
    for epc in epcs:
        named = item_key_of(epc)
        if named is not None:
            keys[named[0]] = epc
    known = projection.lookup_many(list(keys))
    found.update(keys[k] for k in known)
    return sorted(found)


def write_events(
    ledger: Ledger,
    projection: ItemProjection,
    events: Sequence[Mapping[str, Any]],
    signer: str,
    new_epcs: Sequence[str],
) -> list[Appended]:
    """Append ``events`` signed by ``signer`` and seal them, in one transaction that first
    checks none of ``new_epcs`` is in the ledger yet (CommissionError naming them)."""
    with ledger.store.write():
        already = known_items(ledger.store, projection, new_epcs)
        if already:
            raise CommissionError(
                f"{len(already)} items are already in the ledger: {_limited(already)}", already
            )
        appended = ledger.append_batch(events, signer)
        ledger.seal(signer)
    return appended
