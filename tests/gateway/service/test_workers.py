"""Several gateway workers on one PostgreSQL ledger share the load and agree."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger.epcis import BizStep
from gateway.policy import InspectionPolicy, Policy
from gateway.service import GatewayService, open_service
from gatewire.messages import Verdict, VisionVerdict
from simulators.broker import MosquittoBroker
from tests.gateway.service.support import (
    OTHER_BRAND,
    SITE_ORG,
    Gate,
    Site,
    commission,
    gateway_config,
    item,
    new_site_id,
    observe,
)
from tests.support.postgres import PostgresServer


@pytest.fixture
def pg_site(postgres: PostgresServer, tmp_path: Path) -> Iterator[Site]:
    """A site ledger on PostgreSQL with items that provoke several rules."""
    site = Site.create(postgres.new_url(), tmp_path / "keys")
    site.commissioned(*range(1, 41))
    site.append(OTHER_BRAND, commission(41))
    site.append(SITE_ORG, observe(42, BizStep.RECEIVING))
    yield site
    site.close()


def ask_all(gate: Gate) -> list[tuple[str, tuple[str, ...], bool]]:
    """Verdicts for items 1–44 (44 unknown), every fifth with a suspect label."""
    out = []
    for n in range(1, 45):
        vision = VisionVerdict.SUSPECT if n % 5 == 0 else None
        reply = gate.verify(item(n), vision_verdict=vision)
        assert isinstance(reply, Verdict)
        out.append((reply.decision.value, tuple(reply.reasons), reply.inspect))
    return out


def test_two_workers_share_the_requests_and_give_the_verdicts_of_one(
    pg_site: Site, mosquitto: MosquittoBroker
) -> None:
    site_id = new_site_id()
    # Equal rates: a seller's first REJECT (item 41) raises no rate, so a second pass over
    # the same items draws the same inspections.
    rates = InspectionPolicy(base_rate=0.2, new_seller_rate=0.2, recent_rejects_rate=0.2)
    config = gateway_config(
        pg_site, mosquitto.url, site_id=site_id, policy=Policy(inspection=rates)
    )
    gate = Gate(mosquitto.url, site_id)
    try:
        with open_service(config) as alone:
            expected = ask_all(gate)
            assert alone.counts()["requests"] == len(expected)
        time.sleep(0.05)
        two = [
            open_service(
                config.model_copy(update={"mqtt": config.mqtt.model_copy(update={"worker": w})})
            )
            for w in ("w1", "w2")
        ]
        for worker in two:
            worker.start()
        try:
            got = ask_all(gate)
            counts = [w.counts().get("requests", 0) for w in two]
        finally:
            for worker in two:
                worker.stop()
    finally:
        gate.close()
    assert got == expected
    assert {d for d, _, _ in expected} == {"PASS", "REJECT", "HOLD"}
    assert sum(counts) == len(expected)
    assert min(counts) > 0, counts
    assert any(inspect for _, _, inspect in expected)


def test_a_worker_ignores_requests_of_another_site(
    pg_site: Site, mosquitto: MosquittoBroker
) -> None:
    site_id = new_site_id()
    service: GatewayService = open_service(gateway_config(pg_site, mosquitto.url, site_id=site_id))
    with service:
        service._dispatch(service._client, f"provgate/v1/other/{'in-01'}/verify/request", b"{}")
        assert service.counts()["refused.topic.bad_topic"] == 1
