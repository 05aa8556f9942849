"""Organisations, their GS1 company prefixes, and API keys (admin)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status

from gateway.api.context import Auth, Db, require
from gateway.api.models import ApiKeyIn, ApiKeyOut, OrgIn, OrgOut, PrefixIn, PrincipalOut
from gateway.registry import ApiPrincipal, ApiRole

router = APIRouter(prefix="/v1")
Admin = Annotated[ApiPrincipal, Depends(require(ApiRole.ADMIN))]
AdminOrManager = Annotated[ApiPrincipal, Depends(require(ApiRole.ADMIN, ApiRole.MANAGER))]


@router.get("/me", tags=["keys"])
def whoami(principal: Auth) -> PrincipalOut:
    """The caller's key ID, role and organisation."""
    return PrincipalOut(key_id=principal.key_id, role=principal.role, org=principal.org)


@router.post("/orgs", status_code=status.HTTP_201_CREATED, tags=["organisations"])
def add_org(_: Admin, body: OrgIn, db: Db) -> OrgOut:
    """Register an organisation with its company prefixes (all or nothing)."""
    registry = db.registry
    with registry.store.write():
        registry.add_org(body.org, body.name, body.role)
        for prefix in body.prefixes:
            registry.add_prefix(body.org, prefix)
    return _org(db, body.org)


@router.get("/orgs", tags=["organisations"])
def list_orgs(_: AdminOrManager, db: Db) -> list[OrgOut]:
    """Every registered organisation."""
    return [OrgOut.of(o) for o in db.registry.orgs()]


@router.get("/orgs/{org}", tags=["organisations"])
def get_org(org: str, principal: Auth, db: Db) -> OrgOut:
    """One organisation (brand owners: only their own)."""
    if principal.role is ApiRole.OPERATOR or (
        principal.role is ApiRole.BRAND_OWNER and principal.org != org
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "only admins, managers and the organisation's own brand-owner keys may read it",
        )
    return _org(db, org)


@router.post("/orgs/{org}/prefixes", status_code=status.HTTP_201_CREATED, tags=["organisations"])
def add_prefix(_: Admin, org: str, body: PrefixIn, db: Db) -> OrgOut:
    """Give an organisation another GS1 company prefix."""
    db.registry.add_prefix(org, body.company_prefix)
    return _org(db, org)


def _org(db: Db, org: str) -> OrgOut:
    found = db.registry.org(org)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown organisation {org!r}")
    return OrgOut.of(found)


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, tags=["keys"])
def create_key(_: Admin, body: ApiKeyIn, db: Db) -> ApiKeyOut:
    """Create an API key; the answer holds its secret, shown this once."""
    key = db.registry.create_api_key(body.role, body.org, body.label)
    principal = db.registry.check_api_key(key)
    assert principal is not None
    info = next(k for k in db.registry.api_keys() if k.key_id == principal.key_id)
    return ApiKeyOut.of(info, key)


@router.get("/api-keys", tags=["keys"])
def list_keys(_: Admin, db: Db) -> list[ApiKeyOut]:
    """Every API key (without secrets)."""
    return [ApiKeyOut.of(k) for k in db.registry.api_keys()]


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["keys"])
def revoke_key(_: Admin, key_id: str, db: Db) -> Response:
    """Revoke an API key: it stops working at once."""
    db.registry.revoke_api_key(key_id, time.time())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
