"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.registry import (
    ApiKeyInfo,
    ApiRole,
    GateStatus,
    Inspection,
    InspectionResult,
    Org,
    OrgRole,
    Recall,
    Seller,
    SellerStatus,
)

MAX_PHOTOS = 4
SellerId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
"""A seller ID as given: surrounding white space is not part of it."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- organisations and keys ------------------------------------------------------------


class OrgIn(_In):
    """An organisation to register."""

    org: str = Field(description="Short name, also its ledger signer (e.g. brand-acme)")
    name: str = Field(description="Display name", min_length=1, max_length=200)
    role: OrgRole = Field(description="brand_owner, site or other")
    prefixes: list[str] = Field(
        default_factory=list, description="GS1 company prefixes (6–12 digits)", max_length=100
    )


class PrefixIn(_In):
    """A GS1 company prefix to give an organisation."""

    company_prefix: str = Field(description="6–12 digits", examples=["4012345"])


class OrgOut(BaseModel):
    """A registered organisation."""

    org: str
    name: str
    role: OrgRole
    prefixes: list[str]

    @classmethod
    def of(cls, org: Org) -> OrgOut:
        return cls(org=org.org, name=org.name, role=org.role, prefixes=list(org.prefixes))


class ApiKeyIn(_In):
    """An API key to create."""

    role: ApiRole = Field(description="brand_owner, operator, manager or admin")
    org: str | None = Field(default=None, description="Organisation (required for brand_owner)")
    label: str = Field(description="What the key is for", min_length=1, max_length=200)


class ApiKeyOut(BaseModel):
    """An API key (the secret only in the answer that created it)."""

    key_id: str
    role: ApiRole
    org: str | None
    label: str
    created_at: float
    revoked_at: float | None = None
    key: str | None = Field(default=None, description="The secret: shown once, store it now")

    @classmethod
    def of(cls, info: ApiKeyInfo, key: str | None = None) -> ApiKeyOut:
        return cls(
            key_id=info.key_id,
            role=info.role,
            org=info.org,
            label=info.label,
            created_at=info.created_at,
            revoked_at=info.revoked_at,
            key=key,
        )


class PrincipalOut(BaseModel):
    """Who the API key belongs to."""

    key_id: str
    role: ApiRole
    org: str | None


# ---- commissioning ---------------------------------------------------------------------


class CommissionItemIn(_In):
    """One item: ``id`` (EPC URI, GS1 Digital Link or element string), or gtin + serial."""

    id: str | None = Field(default=None, max_length=2048)
    gtin: str | None = Field(default=None, description="GTIN-8/12/13/14")
    serial: str | None = Field(default=None, description="GS1 AI (21) serial")
    batch: str | None = Field(default=None, description="GS1 AI (10) batch or lot")
    expiry: dt.date | None = Field(default=None, description="Expiry date")
    seller: SellerId | None = Field(default=None, description="Seller (overrides the request's)")

    @model_validator(mode="after")
    def _one_form(self) -> CommissionItemIn:
        if self.id is None and (self.gtin is None or self.serial is None):
            raise ValueError("give either id, or gtin and serial")
        if self.id is not None and (self.gtin is not None or self.serial is not None):
            raise ValueError("give either id, or gtin and serial, not both")
        return self


class CommissionIn(_In):
    """Items to commission, signed by the brand that owns their prefixes."""

    org: str | None = Field(
        default=None, description="Commissioning brand; brand-owner keys: their own (default)"
    )
    seller: SellerId | None = Field(default=None, description="Seller of every item (ID or URI)")
    items: list[CommissionItemIn] = Field(min_length=1, max_length=100_000)
    event_time: dt.datetime | None = Field(
        default=None, description="When they were commissioned (default: now)"
    )
    read_point: str | None = Field(default=None, description="SGLN EPC URI of the line")
    biz_location: str | None = Field(default=None, description="SGLN EPC URI of the plant")


class AppendedOut(BaseModel):
    """Where an event landed in the ledger."""

    seq: int
    event_id: str


class CommissionOut(BaseModel):
    """What a commissioning request wrote."""

    org: str
    items: int
    events: list[AppendedOut]


# ---- items, inspections ----------------------------------------------------------------


class ItemIdOut(BaseModel):
    """An item's identity in its forms."""

    key: str = Field(description="<gtin14>/<serial>")
    gtin: str
    serial: str | None
    epc_uri: str | None
    digital_link: str


class TimelineEventOut(BaseModel):
    """One event of an item's history."""

    seq: int
    event_id: str
    signer: str
    sealed: bool = Field(description="In a signed block (the proof covers it)")
    event: dict[str, Any]


class InspectionOut(BaseModel):
    """A recorded inspection."""

    inspection_id: int
    item_key: str
    inspector: str
    result: InspectionResult
    seller: str | None
    notes: str
    photos: list[str]
    at: float

    @classmethod
    def of(cls, i: Inspection) -> InspectionOut:
        return cls(
            inspection_id=i.inspection_id,
            item_key=i.item_key,
            inspector=i.inspector,
            result=i.result,
            seller=i.seller_id,
            notes=i.notes,
            photos=list(i.photos),
            at=i.at,
        )


class TimelineOut(BaseModel):
    """An item's provenance: its events, oldest first, and their offline-checkable proof."""

    item: ItemIdOut
    ledger_key: str = Field(description="The first name the ledger knew the item by")
    ledger_keys: list[str] = Field(
        description="Every name (URI) the ledger knows the item by, oldest first"
    )
    events: list[TimelineEventOut] = Field(description="Events naming it by any of its names")
    inspections: list[InspectionOut]
    proof: dict[str, Any] = Field(
        description="provgate-ledger-proof/1 document of the events naming ledger_key: check "
        "it with `provgate ledger verify-proof` and the signers' public keys"
    )
    alias_proofs: list[dict[str, Any]] = Field(
        default_factory=list,
        description="One proof document per further name in ledger_keys, in that order",
    )


class InspectionIn(_In):
    """The outcome of a manual inspection."""

    item: str = Field(description="EPC URI, GS1 Digital Link or element string", max_length=2048)
    inspector: str = Field(min_length=1, max_length=200)
    result: InspectionResult
    notes: str = Field(default="", max_length=2000)
    photos: list[str] = Field(
        default_factory=list,
        description=f"Base64 JPEG or PNG images, at most {MAX_PHOTOS}, 4 MiB each",
        max_length=MAX_PHOTOS,
    )
    seller: SellerId | None = Field(
        default=None, description="Seller, when the item's ledger history names none"
    )


class InspectionRecordedOut(BaseModel):
    """What recording an inspection did."""

    inspection: InspectionOut
    ledger_key: str
    event: AppendedOut
    seller: SellerOut | None
    warnings: list[str] = Field(
        default_factory=list,
        description="What the caller should know, e.g. a counterfeit with no known seller "
        "(no strike recorded)",
    )


# ---- sellers, recalls, gates, audit ----------------------------------------------------


class SellerOut(BaseModel):
    """A seller and its standing."""

    seller_id: str
    status: SellerStatus
    strikes: int
    first_seen: float
    suspended_at: float | None
    reason: str | None
    recent_rejects: int | None = Field(
        default=None,
        description="REJECTs within the recent-rejects window (single-seller answers)",
    )

    @classmethod
    def of(cls, s: Seller, recent_rejects: int | None = None) -> SellerOut:
        return cls(
            seller_id=s.seller_id,
            status=s.status,
            strikes=s.strikes,
            first_seen=s.first_seen,
            suspended_at=s.suspended_at,
            reason=s.reason,
            recent_rejects=recent_rejects,
        )


class SuspendIn(_In):
    """Why a seller is suspended."""

    reason: str = Field(min_length=1, max_length=2000)


class RecallIn(_In):
    """A GTIN (or one batch of it) to recall."""

    gtin: str = Field(description="GTIN-8/12/13/14")
    batch: str | None = Field(default=None, description="Only this batch (default: all)")
    reason: str = Field(min_length=1, max_length=2000)


class RecallOut(BaseModel):
    """A recall."""

    gtin: str
    batch: str | None
    reason: str
    at: float

    @classmethod
    def of(cls, r: Recall) -> RecallOut:
        return cls(gtin=r.gtin, batch=r.batch, reason=r.reason, at=r.at)


class GateOut(BaseModel):
    """A gate's last report."""

    site: str
    gate: str
    online: bool
    last_seen: float
    counters: dict[str, int]
    health: dict[str, str]

    @classmethod
    def of(cls, g: GateStatus) -> GateOut:
        return cls(
            site=g.site,
            gate=g.gate,
            online=g.online,
            last_seen=g.last_seen,
            counters=g.counters,
            health=g.health,
        )


class FailureOut(BaseModel):
    """The first event that does not verify."""

    seq: int
    event_id: str | None
    reason: str


class AuditOut(BaseModel):
    """The ledger audit's verdict."""

    ok: bool
    summary: str
    events: int
    blocks: int
    unsealed: int
    problems: int
    first_failure: FailureOut | None


InspectionRecordedOut.model_rebuild()
