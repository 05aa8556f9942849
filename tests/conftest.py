"""Shared fixtures: a real mosquitto broker and a real PostgreSQL, on free loopback ports."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from simulators.broker import BrokerError, MosquittoBroker
from tests.support.postgres import PostgresError, PostgresServer


def pytest_configure(config: pytest.Config) -> None:
    """Tests stop child processes with SIGINT, as Ctrl-C does. A shell's background job
    (and nohup) runs with SIGINT ignored, which children inherit: Python then raises no
    KeyboardInterrupt in them and they never stop. Give them the usual Ctrl-C."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
