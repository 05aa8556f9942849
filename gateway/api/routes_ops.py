"""Sellers and suspensions, recalls, the ledger audit and gate status."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from gateway.api.context import Db, Settings, require
from gateway.api.models import (
    AuditOut,
    FailureOut,
    GateOut,
    RecallIn,
    RecallOut,
    SellerOut,
    SuspendIn,
)
from gateway.registry import ApiPrincipal, ApiRole, RegistryError, SellerStatus, normalise_gtin

router = APIRouter(prefix="/v1")
Managers = Annotated[ApiPrincipal, Depends(require(ApiRole.MANAGER, ApiRole.ADMIN))]
Staff = Annotated[ApiPrincipal, Depends(require(ApiRole.OPERATOR, ApiRole.MANAGER, ApiRole.ADMIN))]
Recallers = Annotated[
    ApiPrincipal, Depends(require(ApiRole.BRAND_OWNER, ApiRole.MANAGER, ApiRole.ADMIN))
]
Anyone = Annotated[
    ApiPrincipal,
    Depends(require(ApiRole.BRAND_OWNER, ApiRole.OPERATOR, ApiRole.MANAGER, ApiRole.ADMIN)),
]


# ---- sellers -------------------------------------------------------------------------


@router.get("/sellers", tags=["sellers"])
def list_sellers(
    _: Managers,
    db: Db,
    suspended: Annotated[bool | None, Query(description="Only (not) suspended sellers")] = None,
) -> list[SellerOut]:
    """Every seller the gateway has seen, with strikes and suspensions."""
    sellers = db.registry.sellers()
    if suspended is not None:
        sellers = [s for s in sellers if (s.status is SellerStatus.SUSPENDED) == suspended]
    return [SellerOut.of(s) for s in sellers]


# The seller ID is usually a URI (https://…/seller/s-01), hence {seller_id:path}.
@router.post("/sellers/{seller_id:path}/suspend", tags=["sellers"])
def suspend_seller(_: Managers, seller_id: str, body: SuspendIn, db: Db) -> SellerOut:
    """Suspend a seller: the gates hold its items from now on."""
    return SellerOut.of(db.registry.suspend_seller(seller_id, body.reason, time.time()))


@router.post("/sellers/{seller_id:path}/reinstate", tags=["sellers"])
def reinstate_seller(_: Managers, seller_id: str, db: Db) -> SellerOut:
    """Lift a seller's suspension (its strikes stay on record)."""
    return SellerOut.of(db.registry.reinstate_seller(seller_id, time.time()))


@router.get("/sellers/{seller_id:path}", tags=["sellers"])
def get_seller(_: Managers, seller_id: str, db: Db, settings: Settings) -> SellerOut:
    """One seller, with its recent REJECTs (of the policy's window, 24 hours by default)."""
    seller = db.registry.seller(seller_id)
    if seller is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown seller {seller_id!r}")
    since = time.time() - settings.recent_rejects_hours * 3600.0
    return SellerOut.of(seller, db.registry.recent_rejects(seller_id, since))


# ---- recalls -------------------------------------------------------------------------


@router.post("/recalls", status_code=status.HTTP_201_CREATED, tags=["recalls"])
def add_recall(principal: Recallers, body: RecallIn, db: Db) -> RecallOut:
    """Recall a GTIN or one batch of it (brand owners: only their own GTINs)."""
    if principal.role is ApiRole.BRAND_OWNER:
        try:
            owner = db.registry.owner_of_gtin(normalise_gtin(body.gtin))
        except RegistryError as exc:
            raise HTTPException(422, str(exc)) from None
        if owner != principal.org:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"GTIN {body.gtin} is not under a company prefix of {principal.org}",
            )
    return RecallOut.of(db.registry.add_recall(body.gtin, body.batch, body.reason, time.time()))


@router.get("/recalls", tags=["recalls"])
def list_recalls(_: Anyone, db: Db) -> list[RecallOut]:
    """Every recall, oldest first."""
    return [RecallOut.of(r) for r in db.registry.recalls()]


# ---- audit and gates -----------------------------------------------------------------


@router.get("/ledger/audit", tags=["ledger"])
def audit(
    _: Managers,
    db: Db,
    strict: Annotated[
        bool, Query(description="Count events not yet sealed in a signed block as failures")
    ] = False,
) -> AuditOut:
    """Recompute every event hash, the chain, Merkle roots and signatures (takes a while
    on a big ledger); the verdict and the first event that does not verify."""
    report = db.ledger.audit(strict=strict)
    first = report.first
    return AuditOut(
        ok=report.ok,
        summary=report.summary(),
        events=report.events,
        blocks=report.blocks,
        unsealed=report.unsealed,
        problems=len(report.failures),
        first_failure=None
        if first is None
        else FailureOut(seq=first.seq, event_id=first.event_id, reason=first.reason),
    )


@router.get("/gates", tags=["gates"])
def gates(_: Staff, db: Db) -> list[GateOut]:
    """Every gate's last report: online, counters and health."""
    return [GateOut.of(g) for g in db.registry.gates()]
