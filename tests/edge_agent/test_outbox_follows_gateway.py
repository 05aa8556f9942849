"""Gate events wait in the journal while the gateway is offline and reach its ledger once it
is back: the broker would acknowledge an event nobody is subscribed to, and it would be lost.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.assembly import SourceRead
from edge_agent.profile import GateProfile
from edge_agent.runner import GateRun, build_gate
from gateway.service import open_service
from gatewire.auth import derive_gate_key
from gatewire.messages import ReadSource
from hardware.gate_io.sim import SimGateIo
from simulators.broker import MosquittoBroker
from simulators.site_summary import check_ledger
from tests.gateway.service.support import SECRET, Site, epc, gateway_config, new_site_id

pytestmark = pytest.mark.broker

GATE = "in-01"
BELT = {"speed_m_s": 2.0, "scan_to_reject_m": 1.0, "window_m": 0.1, "actuation_ms": 50}


def _wait(condition: Callable[[], bool], timeout: float = 8.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _queued(journal: Path) -> int:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def _item(run: GateRun, n: int) -> None:
    """An item passes the photo eye with its barcode read; wait until it is decided."""
    assert isinstance(run.gate_io, SimGateIo)
    enter, _ = run.gate_io.trigger(0.02)
    run.agent.on_read(SourceRead(ReadSource.BARCODE, epc(n), enter.ts + 0.005, "scanner"))
    assert run.agent.wait_idle(5)


def test_events_wait_while_the_gateway_is_offline_and_are_recorded_once_it_is_back(
    mosquitto: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_id = new_site_id()
    ledger = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    ledger.commissioned(1, 2)
    config = gateway_config(ledger, mosquitto.url, site_id=site_id)
    monkeypatch.setenv("GATE_KEY", derive_gate_key(SECRET, site_id, GATE).hex())
    journal = tmp_path / "gate.db"
    profile = GateProfile.model_validate(
        {
            "gate": {"site": site_id, "id": GATE, "kind": "inbound", "key_env": "GATE_KEY"},
            "devices": {
                "scanner": {"type": "serial_scanner", "port": str(tmp_path / "no-such-tty")},
                "gate_io": {"type": "sim_gate_io"},
            },
            "belt": BELT,
            "verification": {"mqtt_url": mosquitto.url},
            "journal": {"path": str(journal)},
        }
    )
    run = build_gate(profile, profile.gate.load_key())
    service = None
    try:
        run.start()
        _item(run, 1)  # no gateway has ever announced itself: held, its event waits
        time.sleep(1.0)
        assert _queued(journal) == 1
        assert run.agent.verify.gateway_online is None

        service = open_service(config)
        service.start()  # announces online: the outbox sends what waited
        assert _wait(lambda: _queued(journal) == 0)
        service.stop()  # a clean stop announces offline
        service = None
        assert _wait(lambda: run.agent.verify.gateway_online is False)

        _item(run, 2)
        time.sleep(1.0)
        assert _queued(journal) == 1  # not sent into the void

        service = open_service(config)
        service.start()
        assert _wait(lambda: _queued(journal) == 0)
        assert _wait(lambda: check_ledger(tmp_path / "ledger.db", {GATE: journal}).ok)
        check = check_ledger(tmp_path / "ledger.db", {GATE: journal})
        assert (check.expected, check.recorded) == (2, 2)
    finally:
        run.stop()
        if service is not None:
            service.stop()
        ledger.close()
