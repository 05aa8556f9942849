"""Shared fixtures: a real mosquitto broker and a real PostgreSQL, on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.broker import BrokerError, MosquittoBroker
from tests.support.postgres import PostgresError, PostgresServer


def _start_broker() -> MosquittoBroker:
    try:
        return MosquittoBroker().start()
    except BrokerError as exc:
        pytest.fail(f"{exc} (make test installs it when run as root)", pytrace=False)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """One broker shared by the whole test session; tests use their own topics."""
    broker = _start_broker()
    yield broker
    broker.close()


@pytest.fixture
def fresh_mosquitto() -> Iterator[MosquittoBroker]:
    """A broker of this test's own, for tests that stop or restart it."""
    broker = _start_broker()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session; ``postgres.new_url()`` per test."""
    try:
        server = PostgresServer().start()
    except PostgresError as exc:
        pytest.fail(f"{exc} (make test installs it when run as root)", pytrace=False)
    yield server
    server.close()
