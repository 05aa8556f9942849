"""The demo site: a seeded, sealed ledger whose catalogue the real gateway judges as the
ground truth says, at an inbound and an outbound gate, through a real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.ledger.ledger import Ledger
from gateway.service import GatewayService, open_service
from gatewire.auth import derive_gate_key
from gatewire.identity import parse_item_id
from gatewire.item import CanonicalItemId
from gatewire.messages import Decision, GateKind, Verdict, VisionVerdict
from simulators.broker import MosquittoBroker
from simulators.demo_site import (
    DemoSite,
    create_demo_site,
    seed_items_for,
    write_gateway_config,
)
from simulators.scenario import ScenarioItem, Truth, applicable_truths, build_scenario
from tests.gateway.service.support import SECRET, Gate

GATES = [("in-01", GateKind.INBOUND), ("out-01", GateKind.OUTBOUND)]
#: (decision, reasons) the gateway gives each truth, per gate kind; FAKE_LABEL is a genuine
#: ID (only the camera can tell), checked apart.
EXPECTED: dict[tuple[GateKind, Truth], tuple[Decision, list[str]]] = {}
for _kind in (GateKind.INBOUND, GateKind.OUTBOUND):
    EXPECTED |= {
        (_kind, Truth.GENUINE): (Decision.PASS, ["ledger.ok"]),
        (_kind, Truth.UNKNOWN_SERIAL): (Decision.REJECT, ["ledger.unknown_serial"]),
        (_kind, Truth.FOREIGN_PREFIX): (Decision.REJECT, ["ledger.prefix_not_owned"]),
        (_kind, Truth.RECALLED): (Decision.REJECT, ["item.recalled"]),
        (_kind, Truth.STOLEN): (Decision.HOLD, ["ledger.stolen"]),
        (_kind, Truth.READ_MISMATCH): (Decision.HOLD, ["read.mismatch"]),
        (_kind, Truth.SUSPENDED_SELLER): (Decision.HOLD, ["seller.suspended"]),
    }
EXPECTED[(GateKind.INBOUND, Truth.CLONED_TAG)] = (Decision.HOLD, ["ledger.already_received"])
EXPECTED[(GateKind.OUTBOUND, Truth.CLONED_TAG)] = (Decision.REJECT, ["ledger.already_shipped"])


def _site(directory: Path, items: int = 200, seed: int = 7) -> DemoSite:
    return create_demo_site(directory, items=items, seed=seed, gates=GATES, site_secret=SECRET)


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    return _site(tmp_path_factory.mktemp("demo") / "site")


@pytest.fixture
def gateway(demo_site: DemoSite, mosquitto: MosquittoBroker) -> Iterator[GatewayService]:
    write_gateway_config(demo_site, mosquitto.url, inspection_rate=0.0)
    service = open_service(load_config(demo_site.gateway_config))
    service.start()
    yield service
    service.stop()


def _one_of_each(site: DemoSite, index: int, kind: GateKind) -> list[ScenarioItem]:
    """A belt with one item of every truth a gate with RFID and camera meets."""
    truths = applicable_truths(kind, has_rfid=True, has_camera=True)
    belt = build_scenario(
        site.catalogue,
        kind,
        gate_index=index,
        gate_count=len(GATES),
        items=len(truths) + 1,
        counterfeit_rate=len(truths) / (len(truths) + 1),
        seed=3,
        has_rfid=True,
        has_camera=True,
    )
    assert sorted(i.truth for i in belt) == sorted([Truth.GENUINE, *truths])
    return belt


def _read(text: str | None) -> CanonicalItemId:
    assert text is not None
    found = parse_item_id(text).item
    assert found is not None, text
    return found


def _ask(gate: Gate, entry: ScenarioItem, **fields: object) -> Verdict:
    """Ask as an agent would: the barcode's ID, the tag's when it names another item."""
    item, tag = _read(entry.barcode), _read(entry.rfid_epc)
    also = [tag] if tag.key != item.key else []
    reply = gate.verify(item, also_read=also, **fields)
    assert isinstance(reply, Verdict), reply
    return reply


@pytest.mark.broker
@pytest.mark.parametrize(("index", "kind"), [(0, GateKind.INBOUND), (1, GateKind.OUTBOUND)])
@pytest.mark.usefixtures("gateway")
def test_the_gateway_judges_every_truth_as_the_catalogue_says(
    demo_site: DemoSite, mosquitto: MosquittoBroker, index: int, kind: GateKind
) -> None:
    gate_id = GATES[index][0]
    gate = Gate(mosquitto.url, demo_site.site, gate_id)
    try:
        for entry in _one_of_each(demo_site, index, kind):
            verdict = _ask(gate, entry)
            if entry.truth is Truth.FAKE_LABEL:
                assert (verdict.decision, verdict.reasons) == (Decision.PASS, ["ledger.ok"])
                suspect = _ask(gate, entry, vision_verdict=VisionVerdict.SUSPECT, vision_score=0.1)
                assert (suspect.decision, suspect.reasons) == (Decision.HOLD, ["vision.suspect"])
                continue
            assert (verdict.decision, verdict.reasons) == EXPECTED[(kind, entry.truth)], entry
            assert not verdict.inspect
    finally:
        gate.close()


def test_the_catalogue_is_the_same_for_the_same_items_and_seed(tmp_path: Path) -> None:
    first = _site(tmp_path / "a", items=120, seed=5)
    assert _site(tmp_path / "b", items=120, seed=5).catalogue == first.catalogue
    assert _site(tmp_path / "c", items=120, seed=6).catalogue != first.catalogue


def test_catalogue_lists_are_disjoint_and_every_counterfeit_list_is_filled(
    demo_site: DemoSite,
) -> None:
    lists = {k: v for k, v in demo_site.catalogue.to_json().items() if isinstance(v, list)}
    assert all(lists.values()), {k: len(v) for k, v in lists.items()}
    every = [uri for uris in lists.values() for uri in uris]
    assert len(every) == len(set(every))
    assert all(_read(uri).epc_uri == uri for uri in every)


def test_gate_keys_config_and_sealed_ledger_are_ready_for_the_gateway(
    demo_site: DemoSite,
) -> None:
    for gate, _ in GATES:
        key = derive_gate_key(SECRET, "demo", gate)
        assert demo_site.gate_keys[gate] == key
        assert demo_site.key_file(gate).read_text().strip() == key.hex()
        assert demo_site.key_file(gate).stat().st_mode & 0o077 == 0
    config = load_config(write_gateway_config(demo_site, "mqtt://127.0.0.1:1", http=True))
    assert config.site == "demo"
    assert config.site_secret_bytes() == SECRET
    assert {g: s.kind for g, s in config.gates.items()} == dict(GATES)
    assert config.http.enabled
    assert config.policy.inspection.base_rate == 0.01
    with Ledger.open(config.ledger_url) as ledger:
        report = ledger.audit(strict=True)
    assert report.ok, report.first
    assert report.unsealed == 0


def test_seeding_two_thousand_items_takes_seconds_and_feeds_several_gates(
    tmp_path: Path,
) -> None:
    # CPU time of this process (about 1 s here): the wall clock on a loaded machine also
    # counts the time others had the CPU
    started = time.process_time()
    site = create_demo_site(tmp_path / "big", gates=GATES)
    assert time.process_time() - started < 5.0
    cat = site.catalogue
    assert len(cat.in_transit) > 800
    assert len(cat.received) > 400
    assert min(len(cat.recalled), len(cat.stolen), len(cat.already_shipped)) == 100


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ([], "at least one gate"),
        ([("in-01", GateKind.INBOUND), ("in-01", GateKind.INBOUND)], "listed twice"),
        ([("bad/id", GateKind.INBOUND)], "invalid gate id"),
    ],
)
def test_bad_gates_are_refused(
    tmp_path: Path, gates: list[tuple[str, GateKind]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_demo_site(tmp_path, items=10, gates=gates)


def test_an_existing_ledger_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "ledger.db").write_bytes(b"precious")
    with pytest.raises(ValueError, match="exists already"):
        _site(tmp_path, items=10)
    assert (tmp_path / "ledger.db").read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("inbound", "outbound", "items", "rate"),
    [(1, 0, 60, 0.0), (2, 2, 30, 0.2), (1, 2, 20, 1.0), (0, 1, 80, 0.5)],
)
def test_seed_items_for_seeds_enough_for_every_gate(
    tmp_path: Path, inbound: int, outbound: int, items: int, rate: float
) -> None:
    layout = [(f"in-{n:02d}", GateKind.INBOUND) for n in range(1, inbound + 1)]
    layout += [(f"out-{n:02d}", GateKind.OUTBOUND) for n in range(1, outbound + 1)]
    seeded = seed_items_for(len(layout), items, rate)
    site = create_demo_site(tmp_path, items=seeded, seed=2, gates=layout)
    for index, (_, kind) in enumerate(layout):
        belt = build_scenario(
            site.catalogue,
            kind,
            gate_index=index,
            gate_count=len(layout),
            items=items,
            counterfeit_rate=rate,
            seed=index,
            has_rfid=True,
            has_camera=True,
        )
        assert len(belt) == items


def test_a_site_of_its_own_id_derives_its_gate_keys_and_config_from_it(tmp_path: Path) -> None:
    site = create_demo_site(
        tmp_path, items=200, seed=1, gates=GATES, site_secret=SECRET, site="demo-a1b2c3"
    )
    for gate, _ in GATES:
        assert site.gate_keys[gate] == derive_gate_key(SECRET, "demo-a1b2c3", gate)
    assert load_config(write_gateway_config(site, "mqtt://127.0.0.1:1")).site == "demo-a1b2c3"
    with pytest.raises(ValueError, match="site must be a valid topic id"):
        create_demo_site(tmp_path / "bad", items=10, gates=GATES, site="a/b")
