"""The canonical item ID every source normalises to."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class IdKind(StrEnum):
    """How an ID reached the gate (the form it was parsed from)."""

    GS1_ELEMENT_STRING = "gs1_element_string"
    GS1_BRACKETED = "gs1_bracketed"
    GS1_DIGITAL_LINK = "gs1_digital_link"
    EPC_URI = "epc_uri"
    EPC_HEX = "epc_hex"
    GTIN = "gtin"


class CanonicalItemId(BaseModel):
    """One item (or, without serial, one product) named the same way whatever its source.

    Two reads name the same item exactly when their ``key`` is equal.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gtin: str = Field(description="GTIN-14, zero-padded, check digit verified", pattern=r"^\d{14}$")
    serial: str | None = Field(default=None, description="GS1 AI (21) serial number")
    batch: str | None = Field(default=None, description="GS1 AI (10) batch or lot")
    expiry: dt.date | None = Field(default=None, description="GS1 AI (17) expiry date")
    epc_uri: str | None = Field(
        default=None, description="EPC pure-identity URI (urn:epc:id:sgtin:…) naming this item"
    )
    digital_link: str = Field(description="GS1 Digital Link URI on id.gs1.org")
    kind: IdKind = Field(description="the input form this ID was parsed from")

    @property
    def key(self) -> str:
        """Stable identity key: GTIN-14 plus serial (``gtin`` alone for a product-level ID)."""
        return self.gtin if self.serial is None else f"{self.gtin}/{self.serial}"

    @property
    def is_serialised(self) -> bool:
        """True when the ID names one item, not only a product."""
        return self.serial is not None
