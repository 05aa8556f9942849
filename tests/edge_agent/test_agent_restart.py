"""A gate killed mid-belt (SIGKILL: no clean stop) and restarted on the same journal loses
and duplicates nothing: items left undecided are held on restart, every decision's gate
event reaches the gateway's ledger exactly once (the outbox replays what was not acked)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.vision.layout import LabelKind
from gateway.policy import InspectionPolicy, Policy
from gateway.service import open_service
from gatewire.auth import derive_gate_key
from gatewire.epc import encode_sgtin_hex
from gatewire.identity import parse_item_id
from simulators.broker import MosquittoBroker
from simulators.scenario import ScenarioItem, Truth
from simulators.site_summary import check_ledger
from tests.gateway.service.support import SECRET, Site, epc, gateway_config, new_site_id

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "firmware_configs" / "gates" / "demo-inbound.yaml"
GATE = "in-01"
ITEMS = range(1, 61)
NO_INSPECTION = Policy(
    inspection=InspectionPolicy(
        base_rate=0, new_seller_rate=0, recent_rejects_rate=0, vision_anomaly_rate=0
    )
)


def _item(seq: int, n: int) -> ScenarioItem:
    uri = epc(n)
    parsed = parse_item_id(uri).item
    assert parsed is not None
    barcode = f"]d201{parsed.gtin}21{parsed.serial}"
    return ScenarioItem(seq, Truth.GENUINE, uri, barcode, encode_sgtin_hex(uri), LabelKind.GENUINE)


@pytest.fixture
def site(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[tuple[Site, str]]:
    site_id = new_site_id()
    site = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    site.commissioned(*ITEMS)
    service = open_service(
        gateway_config(site, mosquitto.url, site_id=site_id, policy=NO_INSPECTION)
    )
    service.start()
    yield site, site_id
    service.stop()
    site.close()


def _gate_sim(
    tmp_path: Path, url: str, site_id: str, items: list[ScenarioItem], run: str
) -> list[str]:
    key_file = tmp_path / "gate.key"
    key_file.write_text(derive_gate_key(SECRET, site_id, GATE).hex(), encoding="utf-8")
    items_file = tmp_path / f"items-{run}.json"
    items_file.write_text(json.dumps([i.to_json() for i in items]), encoding="utf-8")
    return [
        *(sys.executable, "-m", "simulators.gate_sim", "--profile", str(PROFILE)),
        *("--site", site_id, "--gate", GATE, "--key-file", str(key_file), "--mqtt", url),
        *("--journal", str(tmp_path / "journal.db"), "--items", str(items_file)),
        *("--rate", "10", "--out", str(tmp_path / f"result-{run}.json"), "--progress-s", "0.2"),
    ]


def _rows(journal: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM items ORDER BY seq").fetchall()
    finally:
        db.close()


def test_a_gate_killed_mid_belt_restarts_without_losing_or_duplicating_an_item(
    tmp_path: Path, mosquitto: MosquittoBroker, site: tuple[Site, str]
) -> None:
    _, site_id = site
    items = [_item(seq, n) for seq, n in enumerate(ITEMS)]
    first = subprocess.Popen(
        _gate_sim(tmp_path, mosquitto.url, site_id, items, "1"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert first.stdout is not None
    for line in first.stdout:  # kill it once the belt is well under way
        event = json.loads(line)
        if event["event"] == "progress" and event["items"] >= 15:
            break
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    first.stdout.close()
    journal = tmp_path / "journal.db"
    before = _rows(journal)
    assert 15 <= len(before) < len(items)

    rest = items[len(before) :]
    second = subprocess.run(
        _gate_sim(tmp_path, mosquitto.url, site_id, rest, "2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 0, second.stderr[-2000:]

    after = _rows(journal)
    assert len(after) == len(items)  # every item once: nothing lost, nothing duplicated
    # an item whose reads all came after its 20 ms window (a loaded machine) has no ID: it
    # is held, never passed
    assert all(r["decision"] == "HOLD" for r in after if r["item"] is None)
    keys = [json.loads(r["item"])["serial"] for r in after if r["item"] is not None]
    assert len(set(keys)) == len(keys)
    assert all(r["decision"] is not None for r in after)
    undecided = {r["window_id"] for r in before if r["decision"] is None}
    for row in after:
        if row["window_id"] in undecided:
            assert row["decision"] == "HOLD"
            assert "agent.restart" in json.loads(row["reasons"])
    deadline = time.monotonic() + 10
    check = check_ledger(tmp_path / "ledger.db", {GATE: journal})
    while not check.ok and time.monotonic() < deadline:
        time.sleep(0.2)
        check = check_ledger(tmp_path / "ledger.db", {GATE: journal})
    assert check.ok, check
    assert check.recorded == len(keys)  # every item with an ID (one without sends no event)
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    finally:
        db.close()
