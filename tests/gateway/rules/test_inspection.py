"""Inspection sampling: keyed and deterministic, at the rate the seller's risk calls for."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.inspection import RiskFacts, draw, inspection_rate, should_inspect
from gateway.ledger.ledger import Ledger
from gateway.policy import InspectionPolicy, Policy
from gateway.registry import Registry
from gateway.rules import Verifier
from tests.gateway.rules.rules_support import NOW, SELLER, SITE, Facts, commission, item, observe

POLICY = InspectionPolicy(
    base_rate=0.01,
    new_seller_rate=0.1,
    new_seller_days=30,
    recent_rejects_rate=0.25,
    recent_rejects_min=2,
    vision_anomaly_rate=0.5,
    vision_anomaly_below=0.6,
)
ESTABLISHED = RiskFacts(seller_age_days=100.0, recent_rejects=0, vision_score=0.95)


def test_draw_is_the_same_every_time_and_depends_on_the_key() -> None:
    assert draw(b"k1", "04012345012347/1") == draw(b"k1", "04012345012347/1")
    assert draw(b"k1", "04012345012347/1") != draw(b"k2", "04012345012347/1")
    assert draw(b"k1", "04012345012347/1") != draw(b"k1", "04012345012347/2")
    assert 0.0 <= draw(b"k1", "x") < 1.0


def test_share_of_items_pulled_matches_the_rate() -> None:
    keys = [f"04012345012347/{n}" for n in range(20_000)]
    pulled = sum(should_inspect(b"secret", key, 0.1) for key in keys)
    assert 1_800 < pulled < 2_200  # 10 % ± 5 standard deviations
    assert not any(should_inspect(b"secret", key, 0.0) for key in keys[:100])
    assert all(should_inspect(b"secret", key, 1.0) for key in keys[:100])


@pytest.mark.parametrize(
    ("risk", "rate"),
    [
        (ESTABLISHED, 0.01),
        (RiskFacts(seller_age_days=None, recent_rejects=0, vision_score=None), 0.1),
        (RiskFacts(seller_age_days=3.0, recent_rejects=0, vision_score=0.95), 0.1),
        (RiskFacts(seller_age_days=100.0, recent_rejects=1, vision_score=0.95), 0.01),
        (RiskFacts(seller_age_days=100.0, recent_rejects=2, vision_score=0.95), 0.25),
        (RiskFacts(seller_age_days=100.0, recent_rejects=0, vision_score=0.4), 0.5),
        (RiskFacts(seller_age_days=1.0, recent_rejects=5, vision_score=0.4), 0.5),
    ],
)
def test_rate_is_the_highest_that_applies(risk: RiskFacts, rate: float) -> None:
    assert inspection_rate(POLICY, risk) == rate


def _pulled(verifier: Verifier, numbers: range, *, vision: float | None = None) -> list[int]:
    facts = [Facts(item(n), vision_score=vision) for n in numbers]
    outcomes = verifier.verify_many(facts, gate="in-01", now=NOW)
    return [n for n, o in zip(numbers, outcomes, strict=True) if o.inspect]


def _stock(ledger: Ledger, numbers: range) -> None:
    ledger.append_batch([commission(n) for n in numbers], "brand-acme")
    ledger.append_batch([observe(n, "receiving") for n in numbers], SITE)


def test_two_workers_pull_the_same_items(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    numbers = range(200)
    _stock(ledger, numbers)
    policy = Policy(inspection=InspectionPolicy(base_rate=0.3, new_seller_rate=0.3))
    first = _pulled(make_verifier(policy), numbers)
    second = _pulled(make_verifier(policy, own_connection=True), numbers)
    assert first == second
    assert 30 < len(first) < 90


def test_new_seller_and_anomalous_vision_raise_the_rate(
    ledger: Ledger, registry: Registry, make_verifier: Callable[..., Verifier]
) -> None:
    numbers = range(200)
    _stock(ledger, numbers)
    policy = Policy(
        inspection=InspectionPolicy(
            base_rate=0.0, new_seller_rate=0.5, vision_anomaly_rate=1.0, vision_anomaly_below=0.6
        )
    )
    verifier = make_verifier(policy)
    new_seller = _pulled(verifier, numbers)
    assert 60 < len(new_seller) < 140
    seller = registry.seller(SELLER)
    assert seller is not None
    assert seller.first_seen == NOW  # registered by the verifier when first seen: still new
    assert _pulled(verifier, numbers) == new_seller
    assert _pulled(verifier, numbers, vision=0.3) == list(numbers)


def test_established_seller_is_sampled_at_the_base_rate(
    ledger: Ledger, registry: Registry, make_verifier: Callable[..., Verifier]
) -> None:
    numbers = range(200)
    registry.ensure_seller(SELLER, NOW - 86400 * 365)
    _stock(ledger, numbers)
    policy = Policy(inspection=InspectionPolicy(base_rate=0.0, new_seller_rate=1.0))
    assert _pulled(make_verifier(policy), numbers) == []


def test_seller_with_recent_rejects_is_sampled_more(
    ledger: Ledger, registry: Registry, make_verifier: Callable[..., Verifier]
) -> None:
    numbers = range(100)
    registry.ensure_seller(SELLER, NOW - 86400 * 365)
    _stock(ledger, numbers)
    policy = Policy(
        inspection=InspectionPolicy(base_rate=0.0, recent_rejects_rate=1.0, recent_rejects_min=1)
    )
    verifier = make_verifier(policy)
    assert _pulled(verifier, numbers) == []
    verifier.verify_many([Facts(item(999), seller=SELLER)], gate="in-01", now=NOW)  # unknown
    assert _pulled(verifier, numbers) == list(numbers)
