"""The outbox: gate events published in order at QoS 1, kept until the broker acknowledges
them, replayed after restarts and broker outages, the same bytes every time."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from edge_agent.journal import Journal
from edge_agent.outbox import Outbox
from gatewire.auth import Accepted, open_sealed
from gatewire.messages import GateEvent
from simulators.broker import MosquittoBroker
from tests.edge_agent.conftest import IDENTITY, record
from tests.support.mqtt import Inbox, running_client
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

TOPIC = "provgate/v1/demo/in-01/event"


def stored(path: Path) -> dict[str, bytes]:
    """event id -> payload of every entry still in the outbox."""
    with closing(sqlite3.connect(path)) as conn:
        return {str(e): bytes(p) for e, p in conn.execute("SELECT event_id, payload FROM outbox")}


def event_ids(journal: Journal, windows: list[str]) -> list[str]:
    ids = []
    for window in windows:
        got = journal.item(window)
        assert got is not None
        assert got.event_id is not None
        ids.append(got.event_id)
    return ids


def receive(inbox: Inbox, n: int) -> list[tuple[str, bytes]]:
    """(event id, payload) of the next ``n`` messages, each a gate event sealed by the gate."""
    got = []
    for _ in range(n):
        payload = bytes(inbox.get(timeout=10).payload)
        opened = open_sealed(payload, IDENTITY.key)
        assert isinstance(opened, Accepted)
        assert isinstance(opened.message, GateEvent)
        got.append((opened.message.event_id, payload))
    return got


def outbox(path: Path, broker: MosquittoBroker) -> Outbox:
    """A publisher with a small window and short backoffs, for quick tests."""
    return Outbox(
        path,
        broker.url,
        "in-01-outbox",
        window=4,
        backoff_min_s=0.05,
        backoff_max_s=0.2,
        poll_s=0.02,
    )


@contextmanager
def subscriber(broker: MosquittoBroker) -> Iterator[Inbox]:
    inbox = Inbox()
    with running_client(broker.url, "gateway-test", [TOPIC], inbox.on_message):
        yield inbox


def test_backlog_from_before_a_restart_is_published_in_order(
    journal: Journal, journal_path: Path, fresh_mosquitto: MosquittoBroker
) -> None:
    before = [record(journal, n) for n in range(10)]  # decided while no publisher ran
    with subscriber(fresh_mosquitto) as inbox, outbox(journal_path, fresh_mosquitto) as box:
        after = [record(journal, n) for n in range(10, 20)]
        box.notify()
        got = receive(inbox, 20)
        assert [e for e, _ in got] == event_ids(journal, before + after)
        assert box.wait_drained(5)
        counters = box.counters
    assert (counters.sent, counters.queued, counters.resent, counters.failed) == (20, 0, 0, 0)
    assert journal.counts().outbox == 0
    assert inbox.empty_for(0.2)


def test_events_decided_during_a_broker_outage_are_replayed_in_order(
    journal: Journal,
    journal_path: Path,
    fresh_mosquitto: MosquittoBroker,
) -> None:
    with outbox(journal_path, fresh_mosquitto) as box:
        with subscriber(fresh_mosquitto) as inbox:
            first = [record(journal, n) for n in range(3)]
            assert [e for e, _ in receive(inbox, 3)] == event_ids(journal, first)
        fresh_mosquitto.stop()
        assert wait_until(lambda: not box.connected)
        during = [record(journal, n) for n in range(3, 10)]
        box.notify()
        assert wait_until(lambda: box.counters.failed >= 3)  # it keeps trying, with backoff
        assert journal.counts().outbox == 7
        payloads = stored(journal_path)
        box.pause()  # so that the test's subscriber is there before the replay
        assert not wait_until(lambda: box.connected, timeout=0.1)
        fresh_mosquitto.restart()
        with subscriber(fresh_mosquitto) as inbox:
            box.resume()
            got = receive(inbox, 7)
            assert [e for e, _ in got] == event_ids(journal, during)
            assert all(payload == payloads[e] for e, payload in got)
            assert box.wait_drained(5)
            assert inbox.empty_for(0.2)
        assert box.counters.sent == 10
    assert journal.counts().outbox == 0


def test_an_unacknowledged_event_is_resent_with_the_same_id_and_bytes(
    journal: Journal,
    journal_path: Path,
    fresh_mosquitto: MosquittoBroker,
) -> None:
    pid = fresh_mosquitto.pid
    assert pid is not None
    with outbox(journal_path, fresh_mosquitto) as box:
        assert wait_until(lambda: box.connected)
        os.kill(pid, signal.SIGSTOP)  # the broker takes the PUBLISH but never acknowledges
        try:
            [event_id] = event_ids(journal, [record(journal, 1)])
            box.notify()
            payload = stored(journal_path)[event_id]
            assert not wait_until(lambda: box.counters.sent > 0, timeout=0.3)
        finally:
            os.kill(pid, signal.SIGKILL)
        box.pause()
        assert wait_until(lambda: not box.connected)
        fresh_mosquitto.restart()
        with subscriber(fresh_mosquitto) as inbox:
            box.resume()
            assert receive(inbox, 1) == [(event_id, payload)]
            assert box.wait_drained(5)
        counters = box.counters
    assert (counters.sent, counters.resent) == (1, 1)
    assert counters.failed >= 1


def test_a_file_that_is_not_a_journal_never_stops_the_publisher(
    tmp_path: Path, fresh_mosquitto: MosquittoBroker
) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"not a database" * 100)
    box = outbox(path, fresh_mosquitto).start()
    try:
        assert wait_until(lambda: box.counters.failed >= 2)
        assert box._thread is not None
        assert box._thread.is_alive()
    finally:
        box.stop()
    assert not box._thread.is_alive()


def test_window_and_backoff_are_validated(journal_path: Path) -> None:
    with pytest.raises(ValueError, match="window"):
        Outbox(journal_path, "mqtt://127.0.0.1:1", "x", window=0)
    with pytest.raises(ValueError, match="backoff"):
        Outbox(journal_path, "mqtt://127.0.0.1:1", "x", backoff_min_s=2, backoff_max_s=1)
