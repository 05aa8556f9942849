"""Items: provenance timelines with proofs, inspections and their photos.

The ledger indexes events by the exact URI they name an item by, and one item may be
named several ways (the SGTIN URI with another prefix split, a Digital Link…). The item
projection (gateway/items.py) merges those names by canonical key; these routes read an
item's seller and history through it, over every name the ledger uses for the item.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from gateway.api.context import Db, Session, Settings, require
from gateway.api.models import (
    AppendedOut,
    InspectionIn,
    InspectionOut,
    InspectionRecordedOut,
    ItemIdOut,
    SellerOut,
    TimelineEventOut,
    TimelineOut,
)
from gateway.ledger.epcis import SELLER_BTT, BizStep, Disposition, object_event, to_jsonld
from gateway.registry import MAX_PHOTO_BYTES, ApiPrincipal, ApiRole, InspectionResult
from gatewire.epc import sgtin_uri
from gatewire.identity import parse_item_id
from gatewire.item import CanonicalItemId

router = APIRouter(prefix="/v1")
Anyone = Annotated[
    ApiPrincipal,
    Depends(require(ApiRole.BRAND_OWNER, ApiRole.OPERATOR, ApiRole.MANAGER, ApiRole.ADMIN)),
]
Staff = Annotated[ApiPrincipal, Depends(require(ApiRole.OPERATOR, ApiRole.MANAGER, ApiRole.ADMIN))]

_RESULT_DISPOSITION = {
    InspectionResult.GENUINE: Disposition.CONFORMANT,
    InspectionResult.COUNTERFEIT: Disposition.NON_CONFORMANT,
    InspectionResult.INCONCLUSIVE: None,  # disposition unchanged: the item stays as it was
}
_RESULT_VERDICT: dict[InspectionResult, Any] = {
    InspectionResult.GENUINE: "PASS",
    InspectionResult.COUNTERFEIT: "REJECT",
    InspectionResult.INCONCLUSIVE: "HOLD",
}


# ---- item lookup ---------------------------------------------------------------------


def _parse_item(text: str) -> CanonicalItemId:
    outcome = parse_item_id(text)
    if outcome.item is None:
        raise HTTPException(422, f"not an item ID: {outcome.error}")
    if outcome.item.serial is None:
        raise HTTPException(
            422,
            f"{text!r} names a product (GTIN {outcome.item.gtin}), not one item: add a serial",
        )
    return outcome.item


def _names(db: Session, item: CanonicalItemId) -> list[str]:
    """Every name the ledger knows the item by, oldest first (empty: never named)."""
    projection = db.projection()
    projection.sync()
    return projection.names_of(item.key)


def _new_name(db: Session, item: CanonicalItemId) -> str:
    """How to name an item the ledger does not know yet: the SGTIN URI with the registered
    prefix's length (as commissioning writes it), else the ID's own EPC URI, else its
    Digital Link (the projection reads all three)."""
    found = db.registry.prefix_of_gtin(item.gtin)
    if found is not None and item.serial is not None:
        uri = sgtin_uri(item.gtin, item.serial, len(found[0]))
        if uri is not None:
            return uri
    return item.epc_uri or item.digital_link


def _item_out(item: CanonicalItemId) -> ItemIdOut:
    return ItemIdOut(
        key=item.key,
        gtin=item.gtin,
        serial=item.serial,
        epc_uri=item.epc_uri,
        digital_link=item.digital_link,
    )


def _may_read(db: Session, principal: ApiPrincipal, item: CanonicalItemId) -> None:
    """Brand owners read only items under their own prefixes (403 otherwise)."""
    if principal.role is not ApiRole.BRAND_OWNER:
        return
    if db.registry.owner_of_gtin(item.gtin) != principal.org:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a brand-owner key reads only timelines of items under its own company "
            f"prefixes; GTIN {item.gtin} is not under a prefix of {principal.org}",
        )


@router.get("/items/{item_id:path}", tags=["items"])
def timeline(principal: Anyone, item_id: str, db: Db) -> TimelineOut:
    """An item's provenance timeline over every name the ledger knows it by, with proofs.
    ``item_id``: EPC URI, GS1 Digital Link or element string (URL-encoded). Brand owners:
    only items under their own prefixes."""
    item = _parse_item(item_id)
    _may_read(db, principal, item)
    names = _names(db, item)
    if not names:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"item {item.key} is not in the ledger")
    with db.ledger.store.snapshot():
        proofs = [db.ledger.prove(name) for name in names]
    entries: dict[int, tuple[dict[str, Any], bool]] = {}
    for proof in proofs:
        for entry, sealed in [(e, True) for e in proof["events"]] + [
            (e, False) for e in proof["unsealed"]
        ]:
            entries.setdefault(int(entry["seq"]), (entry, sealed))  # one event, several names
    return TimelineOut(
        item=_item_out(item),
        ledger_key=names[0],
        ledger_keys=names,
        events=[
            TimelineEventOut(
                seq=e["seq"], event_id=e["event_id"], signer=e["signer"], sealed=s, event=e["event"]
            )
            for _seq, (e, s) in sorted(entries.items())
        ],
        inspections=[InspectionOut.of(i) for i in db.registry.inspections(item.key)],
        proof=proofs[0],
        alias_proofs=proofs[1:],
    )


# ---- inspections ---------------------------------------------------------------------


def _photos(encoded: list[str]) -> list[bytes]:
    out = []
    limit = (MAX_PHOTO_BYTES + 2) // 3 * 4 + 4
    for n, text in enumerate(encoded, 1):
        if len(text) > limit:
            raise HTTPException(
                413,
                f"photo {n} is larger than {MAX_PHOTO_BYTES} bytes",
            )
        try:
            out.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise HTTPException(422, f"photo {n} is not base64") from None
    return out


def _seller(db: Session, item: CanonicalItemId, given: str | None) -> tuple[str | None, list[str]]:
    """The item's seller (the projection's, merged over all its names; ``given`` only when
    the ledger names none) and warnings about it."""
    record = db.projection().lookup(item.key)
    known = None if record is None else record.seller
    if known is not None:
        if given is not None and given != known:
            return known, [f"the ledger names seller {known} for this item; {given} was not used"]
        return known, []
    return given, []


@router.post("/inspections", status_code=status.HTTP_201_CREATED, tags=["inspections"])
def record_inspection(
    _: Staff, body: InspectionIn, db: Db, settings: Settings
) -> InspectionRecordedOut:
    """Record a manual inspection: in the registry (a counterfeit suspends the item's
    seller: one strike and you're out) and as an inspecting event signed by the site."""
    item = _parse_item(body.item)
    photos = _photos(body.photos)
    signer = db.use_signer(settings.site_org)
    now = time.time()
    with db.ledger.store.write():
        names = _names(db, item)
        key = names[0] if names else _new_name(db, item)
        seller, warnings = _seller(db, item, body.seller)
        if seller is not None:
            db.registry.ensure_seller(seller, now)
        elif body.result is InspectionResult.COUNTERFEIT:
            warnings.append(
                "no seller is known for this item: the counterfeit is recorded but no seller "
                "got a strike; name the seller (seller) or suspend it with "
                "POST /v1/sellers/{seller_id}/suspend"
            )
        refs = [db.registry.add_photo(p, now) for p in photos]
        inspection_id = db.registry.record_inspection(
            item.key,
            body.inspector,
            body.result,
            seller_id=seller,
            notes=body.notes,
            photos=refs,
            now=now,
        )
        event = object_event(
            [key],
            action="OBSERVE",
            biz_step=BizStep.INSPECTING,
            disposition=_RESULT_DISPOSITION[body.result],
            biz_location=settings.site_location,
            transactions=[] if seller is None else [(SELLER_BTT, seller)],
            event_time=dt.datetime.fromtimestamp(now, dt.UTC),
            inspector=body.inspector,
            reason_codes=[f"INSPECTION_{body.result.value.upper()}"],
            verdict=_RESULT_VERDICT[body.result],
        )
        appended = db.ledger.append(to_jsonld(event), signer)
        db.ledger.seal(signer)
    recorded = db.registry.inspections(item.key)
    inspection = next(i for i in recorded if i.inspection_id == inspection_id)
    standing = None if seller is None else db.registry.seller(seller)
    return InspectionRecordedOut(
        inspection=InspectionOut.of(inspection),
        ledger_key=key,
        event=AppendedOut(seq=appended.seq, event_id=appended.event_id),
        seller=None if standing is None else SellerOut.of(standing),
        warnings=warnings,
    )


@router.get("/inspections", tags=["inspections"])
def list_inspections(
    _: Staff,
    db: Db,
    item: Annotated[str | None, Query(description="Only this item (any ID form)")] = None,
) -> list[InspectionOut]:
    """Recorded inspections, oldest first."""
    key = None if item is None else _parse_item(item).key
    return [InspectionOut.of(i) for i in db.registry.inspections(key)]


@router.get(
    "/photos/{ref}",
    tags=["inspections"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def get_photo(_: Staff, ref: str, db: Db) -> Response:
    """An inspection photo by its reference (sha256:…)."""
    found = db.registry.photo(ref)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no photo {ref!r}")
    return Response(content=found[1], media_type=found[0])
