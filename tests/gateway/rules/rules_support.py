"""Helpers for the rules tests: organisations, items and EPCIS events built the real way."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from gateway.ledger.epcis import SELLER_BTT, BizStep, Disposition, object_event, to_jsonld
from gatewire.identity import parse_item_id
from gatewire.item import CanonicalItemId
from gatewire.messages import VisionVerdict

BRAND = "brand-acme"
BRAND_PREFIX = "4012345"
OTHER_BRAND = "brand-borealis"
OTHER_PREFIX = "0614141"
SITE = "site-dc1"
SITE_SGLN = "urn:epc:id:sgln:5012345.00005.0"
SITE_GATE = "urn:epc:id:sgln:5012345.00005.1"
OTHER_SITE = "site-dc2"
OTHER_SGLN = "urn:epc:id:sgln:5012346.00001.0"
SELLER = "https://provgate.dev/seller/s-01"
OTHER_SELLER = "https://provgate.dev/seller/s-02"
SECRET = b"inspection-secret-for-tests-0001"

#: The verification time of the tests: 2026-11-28 12:00 UTC.
NOW_DT = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
NOW = NOW_DT.timestamp()


def ago(hours: float, now: dt.datetime = NOW_DT) -> dt.datetime:
    """A moment ``hours`` before ``now`` (NOW unless given)."""
    return now - dt.timedelta(hours=hours)


def epc(n: int, prefix: str = BRAND_PREFIX) -> str:
    """SGTIN EPC URI of item ``n`` under a company prefix (13 digits with the item ref)."""
    ref = "012345"[: 13 - len(prefix) - 1].rjust(13 - len(prefix), "0")
    return f"urn:epc:id:sgtin:{prefix}.{ref}.{n}"


def item(n: int, prefix: str = BRAND_PREFIX, **fields: Any) -> CanonicalItemId:
    """The canonical ID of item ``n`` (as a gate would send it), with extra fields set."""
    parsed = parse_item_id(epc(n, prefix)).item
    assert parsed is not None
    return parsed.model_copy(update=fields) if fields else parsed


def commission(
    n: int,
    *,
    prefix: str = BRAND_PREFIX,
    hours_ago: float = 24 * 30,
    seller: str | None = SELLER,
    ilmd: dict[str, str] | None = None,
    epcs: list[str] | None = None,
    now: dt.datetime = NOW_DT,
) -> dict[str, Any]:
    """A brand's commissioning event for item ``n`` at its factory, ``hours_ago`` before
    ``now``."""
    event = to_jsonld(
        object_event(
            epcs or [epc(n, prefix)],
            action="ADD",
            biz_step=BizStep.COMMISSIONING,
            disposition=Disposition.ACTIVE,
            read_point="urn:epc:id:sgln:4012345.00001.1",
            biz_location="urn:epc:id:sgln:4012345.00001.0",
            transactions=[(SELLER_BTT, seller)] if seller else [],
            event_time=ago(hours_ago, now),
        )
    )
    if ilmd is not None:
        event["ilmd"] = ilmd
    return event


def observe(
    n: int,
    step: BizStep | str,
    *,
    prefix: str = BRAND_PREFIX,
    disposition: Disposition | str | None = Disposition.IN_PROGRESS,
    hours_ago: float = 24 * 10,
    location: str = SITE_SGLN,
    seller: str | None = SELLER,
    verdict: str | None = None,
    action: str = "OBSERVE",
    now: dt.datetime = NOW_DT,
) -> dict[str, Any]:
    """A site's observation of item ``n`` (receiving, shipping, inspecting…), ``hours_ago``
    before ``now``."""
    return to_jsonld(
        object_event(
            [epc(n, prefix)],
            action=action,
            biz_step=step,
            disposition=disposition,
            read_point=location[:-1] + "1",
            biz_location=location,
            transactions=[(SELLER_BTT, seller)] if seller else [],
            event_time=ago(hours_ago, now),
            verdict=verdict,  # type: ignore[arg-type]
        )
    )


@dataclass(frozen=True)
class Facts:
    """What a gate sends about an item, with ``also_read`` (other reads of it)."""

    item: CanonicalItemId
    vision_verdict: VisionVerdict | None = None
    vision_score: float | None = None
    seller: str | None = None
    also_read: list[CanonicalItemId] = field(default_factory=list)
