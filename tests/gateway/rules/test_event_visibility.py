"""An event on an item a worker already verified is visible to its next verification."""

from __future__ import annotations

from collections.abc import Callable

from gateway.ledger.epcis import BizStep
from gateway.ledger.ledger import Ledger
from gateway.rules import Outcome, Verifier
from gatewire.messages import Decision
from tests.gateway.rules.rules_support import BRAND, NOW, SITE, Facts, commission, item, observe


def check(verifier: Verifier, facts: Facts) -> Outcome:
    return verifier.verify_many([facts], gate="in-01", now=NOW)[0]


def received(ledger: Ledger, *numbers: int) -> None:
    """Items commissioned by their brand and received at SITE ten days ago."""
    ledger.append_batch([commission(n) for n in numbers], BRAND)
    ledger.append_batch([observe(n, BizStep.RECEIVING) for n in numbers], SITE)


def _shipped(ledger: Ledger, n: int) -> None:
    ledger.append(observe(n, BizStep.SHIPPING, hours_ago=24 * 5), SITE)


def test_event_on_a_cached_item_is_visible_when_this_worker_syncs(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    received(ledger, 1, 2)
    worker = make_verifier(own_connection=True)
    assert [
        o.decision
        for o in worker.verify_many([Facts(item(1)), Facts(item(2))], gate="in-01", now=NOW)
    ] == [Decision.PASS] * 2
    _shipped(ledger, 1)
    assert check(worker, Facts(item(1))).reasons == ("ledger.already_shipped",)
    assert check(worker, Facts(item(2))).decision is Decision.PASS


def test_event_on_a_cached_item_is_visible_when_another_worker_synced(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    received(ledger, 1, 2)
    worker, other = make_verifier(own_connection=True), make_verifier()
    for n in (1, 2):
        assert check(worker, Facts(item(n))).decision is Decision.PASS
    _shipped(ledger, 1)
    assert check(other, Facts(item(1))).reasons == ("ledger.already_shipped",)  # other syncs
    outcomes = worker.verify_many([Facts(item(2)), Facts(item(1))], gate="in-01", now=NOW)
    assert [o.reasons for o in outcomes] == [("ledger.ok",), ("ledger.already_shipped",)]


def test_commission_of_a_new_item_beside_cached_ones_is_visible(
    ledger: Ledger, make_verifier: Callable[..., Verifier]
) -> None:
    received(ledger, 1)
    worker = make_verifier(own_connection=True)
    assert check(worker, Facts(item(1))).decision is Decision.PASS
    assert check(worker, Facts(item(3))).reasons == ("ledger.unknown_serial",)
    ledger.append(commission(3), BRAND)
    outcomes = worker.verify_many([Facts(item(1)), Facts(item(3))], gate="in-01", now=NOW)
    assert [o.decision for o in outcomes] == [Decision.PASS, Decision.PASS]
