"""Site policy: what each reason code decides, inspection rates, travel and expiry limits.

Loaded from the ``policy:`` section of the gateway configuration. Every key has a default
suited to a fulfilment site, so an empty section is a valid policy. The reason codes and
their meaning are in :mod:`gateway.rules` and ``docs/rules.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatewire.messages import Decision

__all__ = ["DEFAULT_DECISIONS", "InspectionPolicy", "Policy", "Reason"]


class Reason(StrEnum):
    """Reason codes the gateway's rules give, most important first."""

    LEDGER_UNAVAILABLE = "ledger.unavailable"
    UNKNOWN_SERIAL = "ledger.unknown_serial"
    NOT_COMMISSIONED = "ledger.not_commissioned"
    PREFIX_NOT_OWNED = "ledger.prefix_not_owned"
    ALREADY_SHIPPED = "ledger.already_shipped"
    ALREADY_RECEIVED = "ledger.already_received"
    IN_STOCK_ELSEWHERE = "ledger.in_stock_elsewhere"
    DECOMMISSIONED = "ledger.decommissioned"
    READ_MISMATCH = "read.mismatch"
    DUPLICATE_READ = "read.duplicate"
    STOLEN = "ledger.stolen"
    RECALLED = "item.recalled"
    LOT_UNKNOWN = "item.lot_unknown"
    EXPIRED = "item.expired"
    IMPOSSIBLE_TRAVEL = "travel.impossible"
    SELLER_SUSPENDED = "seller.suspended"
    VISION_SUSPECT = "vision.suspect"
    QUARANTINED = "ledger.quarantined"


#: Rank of each reason (0 = most important): reasons are reported in this order.
REASON_RANK: Final = {reason: rank for rank, reason in enumerate(Reason)}
#: Reason of a PASS: nothing fired.
OK: Final = "ledger.ok"

DEFAULT_DECISIONS: Final[Mapping[Reason, Literal["REJECT", "HOLD"]]] = {
    Reason.LEDGER_UNAVAILABLE: "HOLD",
    Reason.UNKNOWN_SERIAL: "REJECT",
    Reason.NOT_COMMISSIONED: "REJECT",
    Reason.PREFIX_NOT_OWNED: "REJECT",
    Reason.ALREADY_SHIPPED: "REJECT",
    Reason.ALREADY_RECEIVED: "HOLD",
    Reason.IN_STOCK_ELSEWHERE: "HOLD",
    Reason.DECOMMISSIONED: "REJECT",
    Reason.READ_MISMATCH: "HOLD",
    Reason.DUPLICATE_READ: "HOLD",
    Reason.STOLEN: "HOLD",
    Reason.RECALLED: "REJECT",
    Reason.LOT_UNKNOWN: "HOLD",
    Reason.EXPIRED: "REJECT",
    Reason.IMPOSSIBLE_TRAVEL: "HOLD",
    Reason.SELLER_SUSPENDED: "HOLD",
    Reason.VISION_SUSPECT: "HOLD",
    Reason.QUARANTINED: "HOLD",
}

_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
_Rate = Field(ge=0.0, le=1.0)


class InspectionPolicy(BaseModel):
    """When the verdict asks the gate to pull a passing item for manual inspection.

    The rate that applies is the highest of those whose condition holds; the draw is a
    keyed hash of the item, so every worker asks for the same items.
    """

    model_config = _CONFIG

    base_rate: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        title="Base rate",
        description="Share of passing items pulled at random (0.01 = 1 in 100)",
    )
    new_seller_rate: float = Field(
        default=0.10,
        ge=0.0,
        le=1.0,
        title="New seller rate",
        description="Rate for items of sellers first seen less than new_seller_days ago "
        "(or not yet known to the registry)",
    )
    new_seller_days: float = Field(
        default=30.0,
        ge=0.0,
        le=3650.0,
        title="New seller age (days)",
        description="A seller counts as new for this many days after it was first seen",
    )
    recent_rejects_rate: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        title="Recent rejects rate",
        description="Rate for items of sellers with at least recent_rejects_min REJECTs in "
        "the last recent_rejects_hours",
    )
    recent_rejects_min: int = Field(
        default=1,
        ge=1,
        le=1_000_000,
        title="Recent rejects threshold",
        description="How many recent REJECTs raise a seller's rate",
    )
    recent_rejects_hours: float = Field(
        default=24.0,
        gt=0.0,
        le=24.0 * 365,
        title="Recent rejects window (hours)",
        description="How far back REJECTs count as recent",
    )
    vision_anomaly_rate: float = Field(
        default=0.50,
        ge=0.0,
        le=1.0,
        title="Vision anomaly rate",
        description="Rate for items whose label score is below vision_anomaly_below",
    )
    vision_anomaly_below: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        title="Vision anomaly threshold",
        description="A vision score under this (but not judged suspect) is anomalous",
    )


class Policy(BaseModel):
    """A site's verification policy (the ``policy:`` section of the gateway config)."""

    model_config = _CONFIG

    decisions: dict[str, Literal["REJECT", "HOLD"]] = Field(
        default_factory=lambda: {str(k): v for k, v in DEFAULT_DECISIONS.items()},
        title="Decision per reason code",
        description="REJECT or HOLD for each reason code; codes left out keep their default. "
        "No code can pass an item: ledger.unavailable (no trustworthy verdict) is HOLD or "
        "REJECT like every other",
    )
    inspection: InspectionPolicy = Field(
        default_factory=InspectionPolicy,
        title="Inspection sampling",
        description="Random and risk-based inspection rates",
    )
    min_travel_hours: float = Field(
        default=4.0,
        ge=0.0,
        le=24.0 * 90,
        title="Minimum travel time (hours)",
        description="An item seen at another site less than this long ago cannot be here "
        "(impossible travel); 0 turns the rule off",
    )
    expiry_min_days_left: int = Field(
        default=0,
        ge=-3650,
        le=3650,
        title="Minimum shelf life (days)",
        description="An item is expired when fewer days than this remain to its expiry "
        "date (0: expired after its expiry date; 30: needs a month left)",
    )

    @field_validator("decisions", mode="before")
    @classmethod
    def _known_codes(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        known = {str(r) for r in Reason}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise ValueError(
                f"unknown reason code(s) {', '.join(unknown)}; valid codes are "
                f"{', '.join(str(r) for r in Reason)}"
            )
        merged: dict[str, object] = {str(k): v for k, v in DEFAULT_DECISIONS.items()}
        merged.update({str(k): v for k, v in value.items()})
        return merged

    def decision(self, reason: str) -> Decision:
        """What ``reason`` decides at this site."""
        return Decision(self.decisions[reason])
