"""Fixtures: a site ledger (SQLite, or PostgreSQL where a test asks) and a running gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.service import GatewayService, open_service
from simulators.broker import MosquittoBroker
from tests.gateway.service.support import Gate, Site, gateway_config, new_site_id


@pytest.fixture
def site_id() -> str:
    """This test's own site id."""
    return new_site_id()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A SQLite site ledger with the brands' prefixes registered."""
    opened = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    yield opened
    opened.close()


@pytest.fixture
def start_gateway(
    site: Site, mosquitto: MosquittoBroker, site_id: str
) -> Iterator[Callable[..., GatewayService]]:
    """Starts gateway workers on ``site`` (config changes as keyword arguments)."""
    started: list[GatewayService] = []

    def start(**changes: Any) -> GatewayService:
        service = open_service(gateway_config(site, mosquitto.url, site_id=site_id, **changes))
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayService]) -> GatewayService:
    """One running gateway worker."""
    return start_gateway()


@pytest.fixture
def gate(mosquitto: MosquittoBroker, site_id: str) -> Iterator[Gate]:
    """Inbound gate ``in-01`` of the test's site."""
    g = Gate(mosquitto.url, site_id)
    yield g
    g.close()
