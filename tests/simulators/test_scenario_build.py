"""build_scenario: each gate's belt of genuine and counterfeit items, with its ground truth."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from typing import Any

import pytest

from edge_agent.vision.layout import LabelKind
from gatewire.identity import parse_item_id
from gatewire.messages import GateKind
from simulators.scenario import (
    COUNTERFEIT_LABELS,
    ScenarioItem,
    SiteCatalogue,
    Truth,
    applicable_truths,
    build_scenario,
)

#: Each catalogue list's own product, so a test can tell which list an ID came from.
_PRODUCTS = {
    "in_transit": "4012345.100001",
    "received": "4012345.100002",
    "already_received": "4012345.100003",
    "already_shipped": "4012345.100004",
    "recalled": "4012345.000005",
    "stolen": "0614141.100006",
    "suspended_in_transit": "0614141.100007",
    "suspended_received": "0614141.100008",
    "foreign_prefix": "0398765.100009",
    "unknown_serial": "9521141.100010",
}
_LIST_OF = {product: name for name, product in _PRODUCTS.items()}


def _catalogue(size: int = 400) -> SiteCatalogue:
    lists: dict[str, Any] = {
        name: tuple(f"urn:epc:id:sgtin:{product}.{100000 + n}" for n in range(size))
        for name, product in _PRODUCTS.items()
    }
    return SiteCatalogue(**lists, suspended_seller="https://provgate.dev/seller/s-04")


CATALOGUE = _catalogue()


def _belt(kind: GateKind = GateKind.INBOUND, **changes: Any) -> list[ScenarioItem]:
    args: dict[str, Any] = {
        "gate_index": 0,
        "gate_count": 1,
        "items": 300,
        "counterfeit_rate": 0.2,
        "seed": 11,
        "has_rfid": True,
        "has_camera": True,
    }
    args.update(changes)
    catalogue = args.pop("catalogue", CATALOGUE)
    return build_scenario(catalogue, kind, **args)


def _list_of(uri: str) -> str:
    return _LIST_OF[uri.removeprefix("urn:epc:id:sgtin:").rsplit(".", 1)[0]]


def test_the_same_arguments_give_the_same_belt_and_another_seed_another() -> None:
    assert _belt() == _belt()
    assert _belt(seed=12) != _belt()
    assert [i.seq for i in _belt()] == list(range(300))


def test_genuine_ids_never_repeat_on_a_belt_nor_across_gates() -> None:
    gates = [GateKind.INBOUND, GateKind.OUTBOUND, GateKind.INBOUND, GateKind.OUTBOUND]
    belts = [
        _belt(kind, gate_index=index, gate_count=len(gates), items=80)
        for index, kind in enumerate(gates)
    ]
    every = [entry.item for belt in belts for entry in belt]
    assert len(every) == len(set(every)) == 4 * 80


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_the_share_of_counterfeits_is_the_rate(rate: float) -> None:
    belt = _belt(counterfeit_rate=rate, items=200)
    assert sum(entry.counterfeit for entry in belt) == round(200 * rate)


@pytest.mark.parametrize("kind", [GateKind.INBOUND, GateKind.OUTBOUND])
@pytest.mark.parametrize(("rfid", "camera"), [(True, True), (True, False), (False, True)])
def test_every_applicable_kind_is_present_and_spread_evenly(
    kind: GateKind, rfid: bool, camera: bool
) -> None:
    belt = _belt(kind, has_rfid=rfid, has_camera=camera, items=400, counterfeit_rate=0.25)
    counts = Counter(entry.truth for entry in belt if entry.counterfeit)
    expected = set(applicable_truths(kind, has_rfid=rfid, has_camera=camera))
    assert set(counts) == expected
    assert (Truth.FAKE_LABEL in counts) is camera
    assert (Truth.READ_MISMATCH in counts) is rfid
    assert max(counts.values()) - min(counts.values()) <= 1


def test_ids_come_from_the_list_of_their_truth_at_each_gate_kind() -> None:
    sources = {
        kind: {(e.truth, _list_of(e.item)) for e in _belt(kind, counterfeit_rate=0.5)}
        for kind in (GateKind.INBOUND, GateKind.OUTBOUND)
    }
    shared = {
        (Truth.UNKNOWN_SERIAL, "unknown_serial"),
        (Truth.FOREIGN_PREFIX, "foreign_prefix"),
        (Truth.RECALLED, "recalled"),
        (Truth.STOLEN, "stolen"),
    }
    assert sources[GateKind.INBOUND] == shared | {
        (Truth.GENUINE, "in_transit"),
        (Truth.FAKE_LABEL, "in_transit"),
        (Truth.READ_MISMATCH, "in_transit"),
        (Truth.CLONED_TAG, "already_received"),
        (Truth.SUSPENDED_SELLER, "suspended_in_transit"),
    }
    assert sources[GateKind.OUTBOUND] == shared | {
        (Truth.GENUINE, "received"),
        (Truth.FAKE_LABEL, "received"),
        (Truth.READ_MISMATCH, "received"),
        (Truth.CLONED_TAG, "already_shipped"),
        (Truth.SUSPENDED_SELLER, "suspended_received"),
    }


def test_barcode_and_tag_name_the_item_except_on_a_read_mismatch() -> None:
    for entry in _belt(counterfeit_rate=0.5):
        assert entry.barcode is not None
        assert entry.barcode.startswith("]d201")
        barcode = parse_item_id(entry.barcode).item
        item = parse_item_id(entry.item).item
        assert entry.rfid_epc is not None
        tag = parse_item_id(entry.rfid_epc).item
        assert barcode is not None
        assert item is not None
        assert tag is not None
        assert barcode.key == item.key
        if entry.truth is Truth.READ_MISMATCH:
            assert (tag.gtin, tag.serial != item.serial) == (item.gtin, True)
        else:
            assert tag.key == item.key


def test_without_an_rfid_reader_no_item_has_a_tag() -> None:
    assert {entry.rfid_epc for entry in _belt(has_rfid=False)} == {None}


def test_only_fake_labels_show_a_counterfeit_label_cycling_through_every_kind() -> None:
    belt = _belt(items=400, counterfeit_rate=0.5)
    fakes = [entry.label_kind for entry in belt if entry.truth is Truth.FAKE_LABEL]
    assert len(fakes) >= len(COUNTERFEIT_LABELS)
    assert fakes[: len(COUNTERFEIT_LABELS)] == list(COUNTERFEIT_LABELS)
    others = {entry.label_kind for entry in belt if entry.truth is not Truth.FAKE_LABEL}
    assert others == {LabelKind.GENUINE}


def test_too_small_a_catalogue_is_refused_naming_the_list() -> None:
    small = _catalogue(size=40)
    with pytest.raises(ValueError, match="received list has 40 IDs, 20 of them for gate 2 of 2"):
        _belt(GateKind.OUTBOUND, catalogue=small, gate_index=1, gate_count=2, items=30)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gate_index": 2, "gate_count": 2}, "gate_index"),
        ({"gate_count": 0}, "gate_index"),
        ({"items": -1}, "items"),
        ({"counterfeit_rate": 1.5}, "counterfeit_rate"),
        ({"counterfeit_rate": float("nan")}, "counterfeit_rate"),
    ],
)
def test_bad_arguments_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _belt(**changes)


def test_an_inspection_gate_has_no_belt() -> None:
    with pytest.raises(ValueError, match="inbound and outbound"):
        _belt(GateKind.INSPECTION)


def test_the_catalogue_and_items_survive_json() -> None:
    assert SiteCatalogue.from_json(CATALOGUE.to_json()) == CATALOGUE
    belt = _belt()
    assert [ScenarioItem.from_json(entry.to_json()) for entry in belt] == belt
    broken = CATALOGUE.to_json()
    broken[fields(SiteCatalogue)[0].name] = "urn:epc:id:sgtin:4012345.100001.1"
    with pytest.raises(TypeError):
        SiteCatalogue.from_json(broken)


def test_an_empty_belt_is_empty() -> None:
    assert _belt(items=0) == []
