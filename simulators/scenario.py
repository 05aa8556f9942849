"""The demo's item stream: which items pass a simulated gate, and what each one really is.

A :class:`ScenarioItem` is one item on one gate's belt with its ground truth: genuine, or
one of the counterfeit kinds the gateway's rules or the label check know. The conveyor
simulator turns it into device reads (barcode, RFID tag, camera frames); the demo and the
end-to-end test compare the gate's decision with the truth.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, Final

from edge_agent.vision.layout import LabelKind
from gatewire.epc import SGTIN_URI_PREFIX, decode_epc_uri, encode_sgtin_hex
from gatewire.messages import GateKind

__all__ = [
    "ScenarioItem",
    "SiteCatalogue",
    "Truth",
    "applicable_truths",
    "build_scenario",
    "datamatrix_scan",
    "relabelled_tag",
]


class Truth(StrEnum):
    """What an item really is (the demo's ground truth)."""

    GENUINE = "genuine"
    CLONED_TAG = "cloned_tag"
    """A copy of the ID of an item already received (inbound) or shipped (outbound)."""
    UNKNOWN_SERIAL = "unknown_serial"
    """A serial the brand never commissioned."""
    FOREIGN_PREFIX = "foreign_prefix"
    """A GTIN whose company prefix the commissioning organisation does not own."""
    RECALLED = "recalled"
    """An item of a recalled batch."""
    STOLEN = "stolen"
    """An item reported stolen."""
    FAKE_LABEL = "fake_label"
    """A genuine ID on a counterfeit label (only the camera can tell)."""
    READ_MISMATCH = "read_mismatch"
    """Barcode and RFID tag of the same item name different items (a relabelled fake)."""
    SUSPENDED_SELLER = "suspended_seller"
    """An item of a seller suspended after a confirmed counterfeit (one strike)."""


@dataclass(frozen=True, slots=True)
class ScenarioItem:
    """One item on one gate's belt, with what the devices will read."""

    seq: int
    """0-based position on this gate's belt."""
    truth: Truth
    item: str
    """The ID the gate should decide on: an EPC pure-identity URI (``urn:epc:id:sgtin:…``)."""
    barcode: str | None
    """What the scanner sends (AIM prefix included, e.g. ``]d2…``); None: no barcode."""
    rfid_epc: str | None
    """The EPC bank of the item's tag, hex (SGTIN-96/198); None: no tag."""
    label_kind: LabelKind
    """What the camera sees (GENUINE except for fake labels)."""

    @property
    def counterfeit(self) -> bool:
        """Anything but a genuine item."""
        return self.truth is not Truth.GENUINE

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as their values)."""
        data = asdict(self)
        data["truth"] = self.truth.value
        data["label_kind"] = self.label_kind.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioItem:
        """The inverse of :meth:`to_json`; KeyError/ValueError on a bad dict."""
        return cls(
            seq=int(data["seq"]),
            truth=Truth(data["truth"]),
            item=str(data["item"]),
            barcode=None if data["barcode"] is None else str(data["barcode"]),
            rfid_epc=None if data["rfid_epc"] is None else str(data["rfid_epc"]),
            label_kind=LabelKind(data["label_kind"]),
        )


@dataclass(frozen=True, slots=True)
class SiteCatalogue:
    """The demo site's items by what the ledger says about them (EPC URIs, disjoint lists).

    Built by :func:`simulators.demo_site.create_demo_site`; deterministic from its
    ``(items, seed)``. Which list feeds which :class:`Truth` at which gate kind is
    :func:`build_scenario`'s business.
    """

    in_transit: tuple[str, ...]
    """Commissioned, not received yet: genuine at an inbound gate."""
    received: tuple[str, ...]
    """Received here, in stock: genuine at an outbound gate."""
    already_received: tuple[str, ...]
    """Received here too, kept apart: their copies are cloned tags at an inbound gate."""
    already_shipped: tuple[str, ...]
    """Shipped from here: their copies are cloned tags at an outbound gate."""
    recalled: tuple[str, ...]
    """Items of a recalled batch."""
    stolen: tuple[str, ...]
    """Reported stolen in transit."""
    suspended_in_transit: tuple[str, ...]
    """Items of the suspended seller on their way in."""
    suspended_received: tuple[str, ...]
    """Items of the suspended seller in stock here."""
    foreign_prefix: tuple[str, ...]
    """Commissioned by an organisation that does not own their GTIN's company prefix."""
    unknown_serial: tuple[str, ...]
    """Brand GTINs with serials nobody commissioned."""
    suspended_seller: str = ""
    """The seller suspended after a confirmed counterfeit."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (lists of URIs)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SiteCatalogue:
        """The inverse of :meth:`to_json`; KeyError/TypeError on a bad dict."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data[f.name]
            if f.name == "suspended_seller":
                values[f.name] = str(value)
            elif isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise TypeError(f"catalogue field {f.name} must be a list of EPC URIs")
            else:
                values[f.name] = tuple(str(v) for v in value)
        return cls(**values)


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


#: The label kinds of counterfeit labels, in the order FAKE_LABEL items cycle through.
COUNTERFEIT_LABELS: Final = tuple(k for k in LabelKind if k is not LabelKind.GENUINE)
_LEDGER_TRUTHS: Final = (
    Truth.CLONED_TAG,
    Truth.UNKNOWN_SERIAL,
    Truth.FOREIGN_PREFIX,
    Truth.RECALLED,
    Truth.STOLEN,
    Truth.SUSPENDED_SELLER,
)


def applicable_truths(
    gate_kind: GateKind, *, has_rfid: bool, has_camera: bool
) -> tuple[Truth, ...]:
    """The counterfeit kinds a gate of this kind and these devices can meet (and catch).

    Fake labels need a camera to be caught, read mismatches an RFID reader. Only inbound and
    outbound gates are simulated (ValueError otherwise).
    """
    if gate_kind not in (GateKind.INBOUND, GateKind.OUTBOUND):
        raise ValueError(f"the demo streams items at inbound and outbound gates, not {gate_kind}")
    extra: tuple[Truth, ...] = (Truth.FAKE_LABEL,) if has_camera else ()
    if has_rfid:
        extra += (Truth.READ_MISMATCH,)
    return _LEDGER_TRUTHS + extra


def datamatrix_scan(epc_uri: str) -> str:
    """What a scanner sends for the item's GS1 DataMatrix: ``]d2`` + ``01<gtin>21<serial>``."""
    parts = decode_epc_uri(epc_uri)
    return f"]d201{parts.gtin}21{parts.serial}"


def relabelled_tag(epc_uri: str) -> str:
    """Another serial of the same product: the tag of a relabelled fake.

    The serial is ``7`` + the original serial zero-padded to 8 digits, a range the demo
    site never commissions; whatever it names, barcode and tag disagree on the serial.
    """
    parts = decode_epc_uri(epc_uri)
    company_prefix, item_ref, _ = parts.epc_uri[len(SGTIN_URI_PREFIX) :].split(".", 2)
    serial = parts.serial
    other = f"7{serial.zfill(8)}" if serial.isdigit() and len(serial) <= 11 else f"{serial}X"
    return f"{SGTIN_URI_PREFIX}{company_prefix}.{item_ref}.{other}"


def _pools(catalogue: SiteCatalogue, gate_kind: GateKind) -> dict[Truth, tuple[str, ...]]:
    """Where each truth's IDs come from at this gate kind (fake labels and read mismatches
    draw from the genuine pool: their IDs are genuine)."""
    inbound = gate_kind is GateKind.INBOUND
    return {
        Truth.GENUINE: catalogue.in_transit if inbound else catalogue.received,
        Truth.CLONED_TAG: catalogue.already_received if inbound else catalogue.already_shipped,
        Truth.UNKNOWN_SERIAL: catalogue.unknown_serial,
        Truth.FOREIGN_PREFIX: catalogue.foreign_prefix,
        Truth.RECALLED: catalogue.recalled,
        Truth.STOLEN: catalogue.stolen,
        Truth.SUSPENDED_SELLER: (
            catalogue.suspended_in_transit if inbound else catalogue.suspended_received
        ),
    }


_POOL_NAMES: Final = {
    (Truth.GENUINE, GateKind.INBOUND): "in_transit",
    (Truth.GENUINE, GateKind.OUTBOUND): "received",
    (Truth.CLONED_TAG, GateKind.INBOUND): "already_received",
    (Truth.CLONED_TAG, GateKind.OUTBOUND): "already_shipped",
    (Truth.SUSPENDED_SELLER, GateKind.INBOUND): "suspended_in_transit",
    (Truth.SUSPENDED_SELLER, GateKind.OUTBOUND): "suspended_received",
}


def build_scenario(
    catalogue: SiteCatalogue,
    gate_kind: GateKind,
    *,
    gate_index: int,
    gate_count: int,
    items: int,
    counterfeit_rate: float,
    seed: int,
    has_rfid: bool,
    has_camera: bool,
) -> list[ScenarioItem]:
    """One gate's belt: ``items`` items, a share ``counterfeit_rate`` of them counterfeit.

    Gate ``gate_index`` of the run's ``gate_count`` gates takes every ``gate_count``-th ID
    of each catalogue list, so no ID appears at two gates, and no ID appears twice on a
    belt (a repeat would itself be a clone). Counterfeits are spread evenly over
    :func:`applicable_truths` (the remainder to kinds drawn by the seed) at positions drawn
    by the seed. The same arguments always give the same list. ValueError when an argument
    is out of range or a catalogue list has too few IDs for this gate.
    """
    if gate_count < 1 or not 0 <= gate_index < gate_count:
        raise ValueError(f"gate_index {gate_index} is not in 0…{gate_count - 1}")
    if items < 0:
        raise ValueError(f"items must be ≥ 0, got {items}")
    if not 0.0 <= counterfeit_rate <= 1.0:
        raise ValueError(f"counterfeit_rate must be in [0, 1], got {counterfeit_rate}")
    kinds = applicable_truths(gate_kind, has_rfid=has_rfid, has_camera=has_camera)
    rng = random.Random(f"provgate-scenario/{seed}/{gate_index}/{gate_count}/{gate_kind}")
    fakes = round(items * counterfeit_rate)
    counts = dict.fromkeys(kinds, fakes // len(kinds))
    for kind in rng.sample(kinds, fakes % len(kinds)):
        counts[kind] += 1
    counts[Truth.GENUINE] = items - fakes
    ids = _draw_ids(catalogue, gate_kind, gate_index, gate_count, counts, rng)
    truths = [kind for kind in kinds for _ in range(counts[kind])]
    rng.shuffle(truths)
    fake_at = dict(zip(sorted(rng.sample(range(items), fakes)), truths, strict=True))
    labels = 0
    belt: list[ScenarioItem] = []
    for seq in range(items):
        truth = fake_at.get(seq, Truth.GENUINE)
        uri = ids[truth].pop()
        label = LabelKind.GENUINE
        if truth is Truth.FAKE_LABEL:
            label = COUNTERFEIT_LABELS[labels % len(COUNTERFEIT_LABELS)]
            labels += 1
        tag = relabelled_tag(uri) if truth is Truth.READ_MISMATCH else uri
        belt.append(
            ScenarioItem(
                seq=seq,
                truth=truth,
                item=uri,
                barcode=datamatrix_scan(uri),
                rfid_epc=encode_sgtin_hex(tag) if has_rfid else None,
                label_kind=label,
            )
        )
    return belt


def _draw_ids(
    catalogue: SiteCatalogue,
    gate_kind: GateKind,
    gate_index: int,
    gate_count: int,
    counts: Mapping[Truth, int],
    rng: random.Random,
) -> dict[Truth, list[str]]:
    """This gate's IDs per truth (popped from the end), each ID at most once."""
    genuine_needs = (Truth.GENUINE, Truth.FAKE_LABEL, Truth.READ_MISMATCH)
    needed = {truth: n for truth, n in counts.items() if truth not in genuine_needs}
    needed[Truth.GENUINE] = sum(counts.get(t, 0) for t in genuine_needs)
    out: dict[Truth, list[str]] = {}
    for truth, pool in _pools(catalogue, gate_kind).items():
        want = needed.get(truth, 0)
        share = list(pool[gate_index::gate_count])
        if want > len(share):
            name = _POOL_NAMES.get((truth, gate_kind), truth.value)
            raise ValueError(
                f"the catalogue's {name} list has {len(pool)} IDs, {len(share)} of them for "
                f"gate {gate_index + 1} of {gate_count}; this {gate_kind} gate needs {want} "
                f"for {truth.value} items: seed more items or stream fewer"
            )
        rng.shuffle(share)
        out[truth] = share[:want]
    genuine = out[Truth.GENUINE]
    for truth in (Truth.FAKE_LABEL, Truth.READ_MISMATCH):
        n = counts.get(truth, 0)
        out[truth] = genuine[len(genuine) - n :] if n else []
        del genuine[len(genuine) - n :]
    return out
