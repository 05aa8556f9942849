"""Configuration of the gateway's HTTP API."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.ledger.signing import check_org_name

__all__ = ["ApiSettings"]


class ApiSettings(BaseModel):
    """What the HTTP API needs: the ledger database, the keystore and who the site is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ledger_url: str = Field(
        title="Ledger database",
        description="A SQLite path, sqlite:///… or postgresql://… (registry tables live there too)",
        min_length=1,
    )
    keystore_dir: Path = Field(
        title="Keystore directory",
        description="Organisations' Ed25519 signing keys (<org>.key), created on first use",
    )
    site: str = Field(
        title="Site ID", description="This site's ID, as in MQTT topics (e.g. dc1)", min_length=1
    )
    site_org: str = Field(
        title="Site organisation",
        description="Organisation that signs this site's events (e.g. site-dc1)",
    )
    bootstrap_admin_key: str | None = Field(
        default=None,
        title="Bootstrap admin key",
        description="A secret accepted as an admin API key, to create the first keys; "
        "at least 24 characters. Leave unset once real admin keys exist.",
        min_length=24,
    )
    site_location: str | None = Field(
        default=None,
        title="Site location",
        description="SGLN EPC URI of the site, written as bizLocation of inspection events",
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        title="Largest request body",
        description="Bigger requests are refused with 413 before they are parsed",
        ge=1024,
    )
    recent_rejects_hours: float = Field(
        default=24.0,
        title="Recent rejects window (hours)",
        description="How far back a seller's REJECTs count as recent in seller answers; "
        "set it to the gateway policy's inspection.recent_rejects_hours",
        gt=0.0,
        le=24.0 * 365,
    )
    db_connections: int = Field(
        default=4,
        title="Database connections",
        description="At most this many requests use the database at once, each with its own "
        "connection",
        ge=1,
        le=64,
    )

    @field_validator("site_org")
    @classmethod
    def _org(cls, value: str) -> str:
        return check_org_name(value)
