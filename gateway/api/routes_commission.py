"""Commissioning in bulk: JSON, CSV and EPCIS documents (brand owners, admins).

These routes only commission: every event they write brings the brand's own new items
into being (or aggregates items it commissions in the same request), and every ID the
ledger will index for those events is checked (gateway/api/ownership.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status

from gateway.api.commission import (
    CommissionError,
    ItemIn,
    NewItem,
    check_events,
    check_owner,
    commissioning_events,
    epcis_events,
    parse_csv,
    resolve,
    write_events,
)
from gateway.api.context import Db, Session, require
from gateway.api.models import AppendedOut, CommissionIn, CommissionOut
from gateway.api.ownership import Owners
from gateway.ledger.ledger import Appended
from gateway.registry import ApiPrincipal, ApiRole

router = APIRouter(prefix="/v1")
Brand = Annotated[ApiPrincipal, Depends(require(ApiRole.BRAND_OWNER, ApiRole.ADMIN))]
OrgQuery = Annotated[
    str | None,
    Query(description="Commissioning brand (admins; brand-owner keys use their own)"),
]
SellerQuery = Annotated[str | None, Query(description="Seller of items whose row names none")]


def _signing_org(principal: ApiPrincipal, requested: str | None, items: list[NewItem]) -> str:
    if principal.role is ApiRole.BRAND_OWNER:
        assert principal.org is not None
        if requested is not None and requested != principal.org:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a brand-owner key of {principal.org} commissions only for {principal.org}, "
                f"not {requested}",
            )
        return principal.org
    if requested is not None:
        return requested
    owners = {i.owner for i in items}
    if len(owners) == 1 and None not in owners:
        return str(owners.pop())
    raise HTTPException(
        422,
        "name the commissioning organisation (org): the items' prefixes do not name one owner",
    )


def _known_org(db: Session, org: str) -> None:
    if db.registry.org(org) is None:
        raise HTTPException(
            422, f"unknown organisation {org!r}: register it and its prefixes first"
        )


def _refused(exc: CommissionError) -> HTTPException:
    """403 when the request names others' IDs, 422 when it is malformed."""
    return HTTPException(status.HTTP_403_FORBIDDEN if exc.ids else 422, str(exc))


def _checked(events: list[dict[str, Any]], owners: Owners, org: str) -> list[str]:
    """The items the events name, once every ID they would index is checked."""
    try:
        return check_events(events, owners, org)
    except CommissionError as exc:
        raise _refused(exc) from None


def _write(db: Session, org: str, events: list[dict[str, Any]], new: list[str]) -> list[Appended]:
    """Append checked events all or nothing (409 when one of ``new`` is already in the
    ledger under any of its names)."""
    db.use_signer(org)
    try:
        return write_events(db.ledger, db.projection(), events, org, new)
    except CommissionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


def _appended(rows: list[Appended]) -> list[AppendedOut]:
    return [AppendedOut(seq=a.seq, event_id=a.event_id) for a in rows]


def _commission(
    db: Session,
    principal: ApiPrincipal,
    requested_org: str | None,
    items: list[ItemIn],
    default_seller: str | None,
    *,
    event_time: dt.datetime | None = None,
    read_point: str | None = None,
    biz_location: str | None = None,
) -> CommissionOut:
    owners = Owners(db.registry)
    try:
        resolved = resolve(items, owners, default_seller)
    except CommissionError as exc:
        raise HTTPException(422, str(exc)) from None
    org = _signing_org(principal, requested_org, resolved)
    _known_org(db, org)
    try:
        check_owner(resolved, org)
    except CommissionError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    events = commissioning_events(
        resolved, event_time=event_time, read_point=read_point, biz_location=biz_location
    )
    _checked(events, owners, org)  # the same check as EPCIS documents get
    appended = _write(db, org, events, [i.epc for i in resolved])
    return CommissionOut(org=org, items=len(resolved), events=_appended(appended))


@router.post("/commissioning", status_code=status.HTTP_201_CREATED, tags=["items"])
def commission_json(principal: Brand, body: CommissionIn, db: Db) -> CommissionOut:
    """Commission items given as JSON (IDs in any form, or GTIN + serial)."""
    items = [
        ItemIn(
            id=i.id, gtin=i.gtin, serial=i.serial, batch=i.batch, expiry=i.expiry, seller=i.seller
        )
        for i in body.items
    ]
    return _commission(
        db,
        principal,
        body.org,
        items,
        body.seller,
        event_time=body.event_time,
        read_point=body.read_point,
        biz_location=body.biz_location,
    )


@router.post("/commissioning/csv", status_code=status.HTTP_201_CREATED, tags=["items"])
def commission_csv(
    principal: Brand,
    body: Annotated[bytes, Body(media_type="text/csv")],
    db: Db,
    org: OrgQuery = None,
    seller: SellerQuery = None,
) -> CommissionOut:
    """Commission items from CSV: a header row naming ``id``, or ``gtin`` and ``serial``;
    optionally ``batch``, ``expiry`` (YYYY-MM-DD) and ``seller``."""
    try:
        items = parse_csv(body)
    except CommissionError as exc:
        raise HTTPException(422, str(exc)) from None
    return _commission(db, principal, org, items, (seller or "").strip() or None)


@router.post("/commissioning/epcis", status_code=status.HTTP_201_CREATED, tags=["items"])
def commission_epcis(
    principal: Brand,
    document: Annotated[dict[str, Any], Body(media_type="application/ld+json")],
    db: Db,
    org: OrgQuery = None,
) -> CommissionOut:
    """Append the commissioning events of an EPCIS 2.0 JSON-LD document, signed by the
    brand: ObjectEvents ADD with bizStep commissioning, and aggregations (ADD) of the items
    they commission. Every ID they name must be an SGTIN (or an SSCC parent) under the
    brand's own prefixes, and every item must be new."""
    if principal.role is ApiRole.BRAND_OWNER:
        signer = _signing_org(principal, org, [])
    elif org is None:
        raise HTTPException(422, "name the signing organisation: ?org=…")
    else:
        signer = org
    _known_org(db, signer)
    try:
        stored, items = epcis_events(document, Owners(db.registry), signer)
    except CommissionError as exc:
        raise _refused(exc) from None
    # Every SGTIN of an accepted document is commissioned by it (aggregations name only
    # items commissioned earlier in the same request), so every one must be new.
    appended = _write(db, signer, stored, items)
    return CommissionOut(org=signer, items=len(items), events=_appended(appended))
