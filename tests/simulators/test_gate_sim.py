"""The gate simulator as its own process: the real agent, drivers on simulated devices on
ptys, a real mosquitto and the real gateway on a seeded ledger. Genuine items pass,
counterfeits are diverted, every item is journaled and reported, and bad input exits 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.vision.layout import LabelKind
from gateway.policy import InspectionPolicy, Policy
from gateway.service import open_service
from gatewire.auth import derive_gate_key
from gatewire.epc import encode_sgtin_hex
from gatewire.identity import parse_item_id
from simulators.broker import MosquittoBroker
from simulators.scenario import ScenarioItem, Truth
from tests.gateway.service.support import SECRET, Site, epc, gateway_config, new_site_id

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "firmware_configs" / "gates" / "demo-inbound.yaml"
GATE = "in-01"
GENUINE = range(1, 21)
UNKNOWN = (901, 902)
FAKE_LABEL = 21
NO_INSPECTION = Policy(
    inspection=InspectionPolicy(
        base_rate=0, new_seller_rate=0, recent_rejects_rate=0, vision_anomaly_rate=0
    )
)


def scenario_item(
    seq: int, n: int, truth: Truth, kind: LabelKind = LabelKind.GENUINE
) -> ScenarioItem:
    """Item ``n`` as its barcode (GS1 DataMatrix), SGTIN-96 tag and label show it."""
    uri = epc(n)
    parsed = parse_item_id(uri).item
    assert parsed is not None
    barcode = f"]d201{parsed.gtin}21{parsed.serial}"
    return ScenarioItem(seq, truth, uri, barcode, encode_sgtin_hex(uri), kind)


def scenario() -> list[ScenarioItem]:
    """20 genuine items with two unknown serials and a fake label among them."""
    plan = [(n, Truth.GENUINE, LabelKind.GENUINE) for n in GENUINE]
    plan.insert(5, (UNKNOWN[0], Truth.UNKNOWN_SERIAL, LabelKind.GENUINE))
    plan.insert(12, (FAKE_LABEL, Truth.FAKE_LABEL, LabelKind.PATCH_FLAT))
    plan.insert(18, (UNKNOWN[1], Truth.UNKNOWN_SERIAL, LabelKind.GENUINE))
    return [scenario_item(seq, n, truth, kind) for seq, (n, truth, kind) in enumerate(plan)]


@pytest.fixture
def site_id() -> str:
    return new_site_id()


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: MosquittoBroker, site_id: str) -> Iterator[Site]:
    site = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    site.commissioned(*GENUINE, FAKE_LABEL)
    service = open_service(
        gateway_config(site, mosquitto.url, site_id=site_id, policy=NO_INSPECTION)
    )
    service.start()
    yield site
    service.stop()
    site.close()


def gate_sim_args(tmp_path: Path, url: str, site_id: str, items: list[ScenarioItem]) -> list[str]:
    """The command line of a run over ``items``: the demo inbound gate of our site."""
    key_file = tmp_path / "gate.key"
    key_file.write_text(derive_gate_key(SECRET, site_id, GATE).hex(), encoding="utf-8")
    items_file = tmp_path / "items.json"
    items_file.write_text(json.dumps([i.to_json() for i in items]), encoding="utf-8")
    return [
        sys.executable,
        "-m",
        "simulators.gate_sim",
        "--profile",
        str(PROFILE),
        "--site",
        site_id,
        "--gate",
        GATE,
        "--key-file",
        str(key_file),
        "--mqtt",
        url,
        "--journal",
        str(tmp_path / "journal.db"),
        "--items",
        str(items_file),
        "--rate",
        "20",
        "--out",
        str(tmp_path / "result.json"),
        "--progress-s",
        "0.3",
    ]


def events(stdout: str) -> list[dict[str, Any]]:
    """The JSON lines the process printed (every line must be one)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_every_item_decided_genuine_pass_counterfeits_diverted_and_journaled(
    tmp_path: Path, mosquitto: MosquittoBroker, gateway: Site, site_id: str
) -> None:
    items = scenario()
    run = subprocess.run(
        gate_sim_args(tmp_path, mosquitto.url, site_id, items),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = events(run.stdout)
    kinds = [line["event"] for line in lines]
    assert kinds[-1] == "done"
    assert "ready" in kinds
    assert "progress" in kinds
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    by_seq = {item["seq"]: item for item in result["items"]}
    assert sorted(by_seq) == [i.seq for i in items]
    for item in items:
        got = by_seq[item.seq]
        assert got["window_id"] is not None, f"item {item.seq} has no journal row"
        assert got["late"] is False
        if item.truth is Truth.GENUINE:
            assert got["decision"] == "PASS", (item.seq, got["reasons"])
            assert not got["diverted"]
        else:
            assert got["decision"] in ("REJECT", "HOLD"), (item.seq, got["reasons"])
            assert got["diverted"], f"counterfeit {item.seq} was not diverted"
    unknown = [by_seq[i.seq] for i in items if i.truth is Truth.UNKNOWN_SERIAL]
    assert all("ledger.unknown_serial" in u["reasons"] for u in unknown)
    fake = next(by_seq[i.seq] for i in items if i.truth is Truth.FAKE_LABEL)
    assert fake["vision"] == "suspect"
    summary = result["summary"]
    assert summary["decided"] == summary["items"] == len(items)
    assert summary["counterfeits_passed"] == 0
    assert summary["pulses"] == summary["rejected"] + summary["held"] == 3
    assert summary["pulses_unmatched"] == 0
    assert summary["rows_unmatched"] == 0
    assert result["counters"]["items"] == len(items)
    assert all(h["state"] != "unhealthy" for h in result["health"].values())


def test_sigterm_stops_cleanly_and_reports_what_was_decided(
    tmp_path: Path, mosquitto: MosquittoBroker, gateway: Site, site_id: str
) -> None:
    items = [scenario_item(seq, n, Truth.GENUINE) for seq, n in enumerate(GENUINE)]
    args = gate_sim_args(tmp_path, mosquitto.url, site_id, items)
    args[args.index("--rate") + 1] = "4"  # 5 s of belt: stopped long before the end
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["on_belt"] >= 2:
            break
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert events(out)[-1]["event"] == "done"
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    summary = result["summary"]
    assert summary["stopped_early"] is True
    assert 0 < summary["on_belt"] < len(items)
    assert summary["decided"] == summary["on_belt"], "everything that passed the eye decided"


@pytest.mark.parametrize(
    ("change", "value"),
    [("--rate", "0"), ("--items", "/nonexistent/items.json"), ("--gate", "Bad Id!")],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, mosquitto: MosquittoBroker, change: str, value: str
) -> None:
    args = gate_sim_args(tmp_path, mosquitto.url, "demo", [scenario_item(0, 1, Truth.GENUINE)])
    args[args.index(change) + 1] = value
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stdout == ""


def test_a_gate_that_cannot_start_exits_1(
    tmp_path: Path, mosquitto: MosquittoBroker, site_id: str
) -> None:
    args = gate_sim_args(tmp_path, mosquitto.url, site_id, [scenario_item(0, 1, Truth.GENUINE)])
    args[args.index("--journal") + 1] = str(tmp_path / "no-such-dir" / "journal.db")
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "could not start" in run.stderr
    assert not (tmp_path / "result.json").exists()


def test_frames_are_decoded_before_the_belt_runs_while_they_fit_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first item's frames fit the budget: decoded now, the very images the camera would
    decode from the JPEG; the next ones no longer fit and stay JPEG."""
    from edge_agent.profile import load_gate_profile
    from simulators import gate_sim
    from simulators.belt_camera import decode_frame, label_id, render_label_frames
    from simulators.labels import sample_seed

    monkeypatch.setattr(gate_sim, "DECODED_BUDGET_BYTES", 1)
    items = scenario()[:2]
    belt, _ = gate_sim.prerender(items, load_gate_profile(PROFILE), 5, 60.0, threading.Event())
    first, second = belt
    jpeg = render_label_frames(
        sample_seed(5, items[0].seq),
        items[0].label_kind,
        label_id(items[0].barcode, ""),
        len(first.frames),
    )
    assert first.frames
    for image, data in zip(first.frames, jpeg, strict=True):
        assert isinstance(image, np.ndarray)
        decoded = decode_frame(data)
        assert decoded is not None
        assert np.array_equal(image, decoded)
    assert all(isinstance(frame, bytes) for frame in second.frames)
