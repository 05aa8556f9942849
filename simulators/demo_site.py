"""The demo site: a sealed SQLite ledger holding every kind of counterfeit the rules know.

:func:`create_demo_site` seeds the ledger with the demo brands, sellers and items
(:func:`gateway.ledger.seed.demo_batches`), registers the organisations, and then writes
what each counterfeit kind needs through the mechanisms a real site uses:

======================  ===============================================================
kind                    how the gateway learns of it
======================  ===============================================================
recalled batch          a product commissioned by its brand with two lots in the ILMD;
                        one lot recalled in the registry (``POST /v1/recalls``'s call)
stolen                  the brand's ObjectEvent with disposition ``stolen``
already shipped         the site's ``shipping`` event after its ``receiving`` event
foreign prefix          commissioning signed by a counterfeiter's organisation under a
                        brand's company prefix, or a prefix nobody registered
suspended seller        a counterfeit received from the seller, confirmed by a manual
                        inspection (registry strike + the site's ``inspecting`` event,
                        as ``POST /v1/inspections`` records it): one strike, suspended
unknown serial          nothing: brand GTINs with serials nobody commissioned
======================  ===============================================================

Every demo seller is registered as first seen a year ago, so the new-seller inspection
rate does not apply. Nothing has to go through the gateway at run time: the gateway
reads all of it from the ledger and registry when it starts. The ledger is sealed and
the item projection synced, so the first verdict does not wait for a fold.

The result, :class:`DemoSite`, lists the items by category (:class:`SiteCatalogue`),
which :func:`simulators.scenario.build_scenario` turns into each gate's belt.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from gateway.api.commission import NewItem, commissioning_events
from gateway.cli import register_demo_orgs
from gateway.config import GatewayConfig, load_config
from gateway.items import ItemProjection, item_key_of
from gateway.ledger.epcis import SELLER_BTT, BizStep, Disposition, object_event, to_jsonld
from gateway.ledger.ledger import Ledger
from gateway.ledger.seed import (
    BRANDS,
    SITE,
    Organisation,
    commissioning_event,
    demo_batches,
    demo_orgs,
    seller_id,
)
from gateway.ledger.signing import Keystore
from gateway.registry import InspectionResult, Registry
from gatewire.auth import MIN_SITE_SECRET, derive_gate_key
from gatewire.messages import GateKind
from gatewire.topics import is_valid_id
from simulators.scenario import SiteCatalogue

__all__ = [
    "COUNTERFEITER",
    "SITE_ID",
    "DemoSite",
    "create_demo_site",
    "gateway_config_of",
    "seed_items_for",
    "write_gateway_config",
]

SITE_ID: Final = "demo"
"""The site id in topics and messages."""
COUNTERFEITER: Final = Organisation("trader-replica", "Replica Trading", "0398765")
"""An organisation with ledger access that commissions copies; its prefix is registered
to nobody, and it owns none of the brands' prefixes."""
SELLERS: Final = 12
"""Demo sellers ``s-01`` … ``s-12`` (as in :func:`gateway.ledger.seed.demo_batches`)."""
_INSPECTOR: Final = "site-dc1/qa-1"
_SELLER_AGE_S: Final = 365 * 86400.0
_SITE_GATE_OUT: Final = SITE.sgln("00005", "2")


@dataclass(frozen=True, slots=True)
class DemoSite:
    """A seeded demo site on disk: ledger, keys, secrets and its catalogue of items."""

    directory: Path
    ledger: Path
    """The SQLite ledger (``ledger_url`` of the gateway config)."""
    keys_dir: Path
    """The organisations' Ed25519 keys."""
    gateway_config: Path
    """Where :func:`write_gateway_config` writes the gateway's YAML config (it does not
    exist before that: the broker's URL goes into it)."""
    site_secret: bytes
    site_secret_file: Path
    """The site secret, hex (the gateway config names this file)."""
    gates: Mapping[str, GateKind]
    gate_keys: Mapping[str, bytes]
    """Each gate's key, derived from the site secret (also in ``<directory>/<gate>.key``)."""
    catalogue: SiteCatalogue
    site: str = SITE_ID

    def key_file(self, gate: str) -> Path:
        """The file holding ``gate``'s key (64 hex digits), for its gate profile."""
        return self.directory / f"{gate}.key"


def create_demo_site(
    directory: Path,
    *,
    items: int = 2000,
    seed: int = 7,
    gates: Sequence[tuple[str, GateKind]],
    site_secret: bytes | None = None,
    site: str = SITE_ID,
) -> DemoSite:
    """Seed a demo site in ``directory`` (created if missing; must hold no ledger yet).

    ``items`` demo items (brand commissioning, about half received here) plus, for the
    counterfeit kinds, about ``items / 20`` each of recalled, good-lot, counterfeiter's
    and unknown items. The catalogue is the same for the same ``(items, seed)``; the site
    secret is random unless given; ``site`` is the site id of the topics and gate keys
    (another one per run keeps runs on one shared broker apart). ValueError on bad
    arguments.
    """
    if not is_valid_id(site):
        raise ValueError(f"site must be a valid topic id, got {site!r}")
    if items < 1:
        raise ValueError(f"items must be ≥ 1, got {items}")
    kinds = _check_gates(gates)
    secret = secrets.token_bytes(32) if site_secret is None else bytes(site_secret)
    if len(secret) < MIN_SITE_SECRET:
        raise ValueError(f"site_secret must be at least {MIN_SITE_SECRET} bytes")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ledger_path = directory / "ledger.db"
    if ledger_path.exists():
        raise ValueError(f"{ledger_path} exists already: give an empty directory")
    keys_dir = directory / "keys"
    keystore = Keystore(keys_dir)
    org_keys = [keystore.load_or_generate(o.org) for o in (*demo_orgs(), COUNTERFEITER)]
    with Ledger.open(str(ledger_path), org_keys) as ledger:
        catalogue = _Seeder(ledger, items, seed).run()
    secret_file = directory / "site.secret"
    _write_private(secret_file, secret.hex() + "\n")
    keys = {gate: derive_gate_key(secret, site, gate) for gate in kinds}
    for gate, key in keys.items():
        _write_private(directory / f"{gate}.key", key.hex() + "\n")
    return DemoSite(
        directory=directory,
        ledger=ledger_path,
        keys_dir=keys_dir,
        gateway_config=directory / "gateway.yaml",
        site_secret=secret,
        site_secret_file=secret_file,
        gates=kinds,
        gate_keys=keys,
        catalogue=catalogue,
        site=site,
    )


def seed_items_for(gate_count: int, items: int, counterfeit_rate: float) -> int:
    """How many demo items to seed so that every one of ``gate_count`` gates (any mix of
    inbound and outbound) gets a belt of ``items`` from :func:`build_scenario`.

    Every gate takes a ``1/gate_count`` share of each catalogue list; the scarcest are
    the received items (about 27 % of the seeded items) at outbound gates and the
    suspended seller's stock (about 3 %) at high counterfeit rates. Checked over 1–6
    gates, 20–300 items and rates 0–1 (tests/simulators/test_demo_site.py).
    """
    if gate_count < 1 or items < 0 or not 0.0 <= counterfeit_rate <= 1.0:
        raise ValueError(
            f"need gate_count ≥ 1, items ≥ 0 and a rate in [0, 1], got "
            f"{gate_count}, {items}, {counterfeit_rate}"
        )
    per_gate = items * max(4.2, 8.0 * counterfeit_rate) + 40
    return max(200, math.ceil(gate_count * per_gate))


def write_gateway_config(
    site: DemoSite,
    mqtt_url: str,
    *,
    http: bool = False,
    http_port: int = 8080,
    inspection_rate: float = 0.01,
) -> Path:
    """Write the site's gateway config (``provgate gateway run --config``); its path.

    ``inspection_rate`` is the share of passing items the gateway asks the gate to pull
    for inspection, whatever the seller's risk (base, new-seller, recent-rejects and
    vision-anomaly rates alike); 0 turns sampling off. The file is loaded back before
    this returns: ConfigError if the gateway would refuse it.
    """
    if not 0.0 <= inspection_rate <= 1.0:
        raise ValueError(f"inspection_rate must be in [0, 1], got {inspection_rate}")
    rate = float(inspection_rate)
    config: dict[str, Any] = {
        "site": site.site,
        "site_org": SITE.org,
        "location": SITE.sgln("00005"),
        "site_secret": str(site.site_secret_file),
        "ledger_url": str(site.ledger),
        "keystore_dir": str(site.keys_dir),
        "gates": {gate: {"kind": kind.value} for gate, kind in site.gates.items()},
        "mqtt": {"url": mqtt_url},
        "http": {"enabled": http, "port": http_port},
        "policy": {
            "inspection": {
                "base_rate": rate,
                "new_seller_rate": rate,
                "recent_rejects_rate": rate,
                "vision_anomaly_rate": rate,
            }
        },
    }
    text = "# provgate demo site gateway (written by simulators/demo_site.py)\n"
    text += yaml.safe_dump(config, sort_keys=False)
    site.gateway_config.write_text(text, encoding="utf-8")
    load_config(site.gateway_config)
    return site.gateway_config


def gateway_config_of(site: DemoSite) -> GatewayConfig:
    """The config :func:`write_gateway_config` wrote for ``site`` (loaded and validated)."""
    return load_config(site.gateway_config)


def _check_gates(gates: Sequence[tuple[str, GateKind]]) -> dict[str, GateKind]:
    kinds: dict[str, GateKind] = {}
    for gate, kind in gates:
        if not is_valid_id(gate) or gate == "gateway":
            raise ValueError(f"invalid gate id {gate!r}")
        if gate in kinds:
            raise ValueError(f"gate {gate!r} is listed twice")
        kinds[gate] = GateKind(kind)
    if not kinds:
        raise ValueError("a demo site needs at least one gate")
    return kinds


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)


@dataclass(slots=True)
class _Item:
    epc: str
    brand: str
    seller: str
    received: bool = False
    conformant: bool = True


class _Seeder:
    """Writes one demo site's ledger and registry; :meth:`run` returns its catalogue."""

    def __init__(self, ledger: Ledger, items: int, seed: int) -> None:
        self.ledger = ledger
        self.items = items
        self.rng = random.Random(f"provgate-demo-site/{items}/{seed}")
        self.seed = seed
        self.per_kind = max(4, items // 20)
        self.now = time.time()
        self.last_time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def run(self) -> SiteCatalogue:
        demo = self._seed_demo_items()
        suspended = seller_id(self.rng.randrange(1, SELLERS + 1))
        others = [seller_id(n) for n in range(1, SELLERS + 1) if seller_id(n) != suspended]
        moment = self.last_time + dt.timedelta(days=1)
        transit = [i for i in demo if not i.received and i.seller != suspended]
        stock = [i for i in demo if i.received and i.conformant and i.seller != suspended]
        self.rng.shuffle(transit)
        self.rng.shuffle(stock)
        k = self.per_kind
        stolen, transit = transit[:k], transit[k:]
        shipped, already, stock = stock[:k], stock[k : 2 * k], stock[2 * k :]
        self._report_stolen(stolen, moment)
        self._ship(shipped, moment)
        recalled, good_lot = self._recalled_batch(others, moment)
        foreign = self._counterfeiter_items(others, moment)
        products = sorted({i.epc.rsplit(".", 1)[0] for i in demo})
        unknown = [
            f"{products[self.rng.randrange(len(products))]}.{900_000_000 + n}" for n in range(k)
        ]
        registry = Registry(self.ledger.store)
        register_demo_orgs(self.ledger.store)
        for number in range(1, SELLERS + 1):
            registry.ensure_seller(seller_id(number), self.now - _SELLER_AGE_S)
        self._confirm_counterfeit(registry, suspended, products[0], moment)
        self.ledger.seal()
        ItemProjection(self.ledger.store).sync()
        in_transit = [i.epc for i in transit] + good_lot
        self.rng.shuffle(in_transit)
        return SiteCatalogue(
            in_transit=tuple(in_transit),
            received=tuple(i.epc for i in stock),
            already_received=tuple(i.epc for i in already),
            already_shipped=tuple(i.epc for i in shipped),
            recalled=tuple(recalled),
            stolen=tuple(i.epc for i in stolen),
            suspended_in_transit=tuple(
                i.epc for i in demo if i.seller == suspended and not i.received
            ),
            suspended_received=tuple(
                i.epc for i in demo if i.seller == suspended and i.received and i.conformant
            ),
            foreign_prefix=tuple(foreign),
            unknown_serial=tuple(unknown),
            suspended_seller=suspended,
        )

    # ---- the demo items --------------------------------------------------------------

    def _seed_demo_items(self) -> list[_Item]:
        """Append demo_batches; every item with its brand, seller and receipt."""
        found: dict[str, _Item] = {}
        for signer, events, _ in demo_batches(self.items, seed=self.seed):
            self.ledger.append_batch(events, signer)
            for event in events:
                epc = str(event["epcList"][0])
                self._note_time(event)
                if signer == SITE.org:
                    item = found[epc]
                    item.received = True
                    item.conformant = "non_conformant" not in str(event.get("disposition"))
                else:
                    found[epc] = _Item(epc, signer, _seller_of(event))
        return list(found.values())

    def _note_time(self, event: Mapping[str, Any]) -> None:
        moment = dt.datetime.fromisoformat(str(event["eventTime"]))
        self.last_time = max(self.last_time, moment)

    # ---- what the counterfeit kinds need ---------------------------------------------

    def _report_stolen(self, stolen: Iterable[_Item], moment: dt.datetime) -> None:
        """Each brand reports its items stolen in transit (disposition ``stolen``)."""
        by_brand: dict[str, list[str]] = {}
        for item in stolen:
            by_brand.setdefault(item.brand, []).append(item.epc)
        for brand, epcs in sorted(by_brand.items()):
            events = [
                to_jsonld(
                    object_event(
                        [epc],
                        action="OBSERVE",
                        disposition=Disposition.STOLEN,
                        event_time=moment,
                        reason_codes=("REPORTED_STOLEN",),
                    )
                )
                for epc in epcs
            ]
            self.ledger.append_batch(events, brand)

    def _ship(self, shipped: Iterable[_Item], moment: dt.datetime) -> None:
        """The site ships items it received (its outbound gate's PASS events)."""
        events = [
            to_jsonld(
                object_event(
                    [item.epc],
                    action="OBSERVE",
                    biz_step=BizStep.SHIPPING,
                    disposition=Disposition.IN_TRANSIT,
                    read_point=_SITE_GATE_OUT,
                    biz_location=SITE.sgln("00005"),
                    transactions=[(SELLER_BTT, item.seller)],
                    event_time=moment,
                    verdict="PASS",
                )
            )
            for item in shipped
        ]
        if events:
            self.ledger.append_batch(events, SITE.org)

    def _recalled_batch(
        self, sellers: Sequence[str], moment: dt.datetime
    ) -> tuple[list[str], list[str]]:
        """A product of one brand in two lots, the first recalled; (recalled, good) EPCs."""
        brand = BRANDS[self.rng.randrange(len(BRANDS))]
        item_ref = f"0{self.rng.randrange(100_000):05d}"  # demo products start 1-9
        recalled_lot = f"L{self.seed % 1000:03d}R"
        good_lot = f"L{self.seed % 1000:03d}G"
        new_items: list[NewItem] = []
        for n in range(2 * self.per_kind):
            epc = f"urn:epc:id:sgtin:{brand.company_prefix}.{item_ref}.{500_000_000 + n}"
            found = item_key_of(epc)
            assert found is not None
            key, serial, _ = found
            new_items.append(
                NewItem(
                    label=epc,
                    epc=epc,
                    key=key,
                    gtin=key[:14],
                    serial=serial,
                    owner=brand.org,
                    batch=recalled_lot if n < self.per_kind else good_lot,
                    expiry=None,
                    seller=sellers[self.rng.randrange(len(sellers))],
                )
            )
        events = commissioning_events(
            new_items,
            event_time=moment,
            read_point=brand.sgln("00001", "1"),
            biz_location=brand.sgln("00001"),
        )
        self.ledger.append_batch(events, brand.org)
        Registry(self.ledger.store).add_recall(
            new_items[0].gtin, recalled_lot, f"demo recall of lot {recalled_lot}", self.now
        )
        epcs = [i.epc for i in new_items]
        return epcs[: self.per_kind], epcs[self.per_kind :]

    def _counterfeiter_items(self, sellers: Sequence[str], moment: dt.datetime) -> list[str]:
        """Copies commissioned by the counterfeiter: half under brands' prefixes, half
        under its own prefix (registered to nobody)."""
        epcs = []
        for n in range(self.per_kind):
            if n % 2:
                prefix, ref = COUNTERFEITER.company_prefix, f"{100_000 + n:06d}"
            else:
                brand = BRANDS[n // 2 % len(BRANDS)]
                prefix, ref = brand.company_prefix, f"1{self.rng.randrange(100_000):05d}"
            epcs.append(f"urn:epc:id:sgtin:{prefix}.{ref}.{600_000_000 + n}")
        events = [
            commissioning_event(
                COUNTERFEITER, epc, sellers[self.rng.randrange(len(sellers))], moment
            )
            for epc in epcs
        ]
        self.ledger.append_batch(events, COUNTERFEITER.org)
        return epcs

    def _confirm_counterfeit(
        self, registry: Registry, seller: str, product: str, moment: dt.datetime
    ) -> None:
        """A copy bought from ``seller``, received here, found counterfeit at a manual
        inspection: a strike, so the seller is suspended (one strike and you're out).
        Recorded as ``POST /v1/inspections`` records it: registry and inspecting event."""
        epc = f"{product}.{700_000_000}"
        self.ledger.append(
            commissioning_event(COUNTERFEITER, epc, seller, moment), COUNTERFEITER.org
        )
        received = object_event(
            [epc],
            action="OBSERVE",
            biz_step=BizStep.RECEIVING,
            disposition=Disposition.IN_PROGRESS,
            read_point=SITE.sgln("00005", "1"),
            biz_location=SITE.sgln("00005"),
            transactions=[(SELLER_BTT, seller)],
            event_time=moment + dt.timedelta(hours=1),
            verdict="PASS",
        )
        self.ledger.append(to_jsonld(received), SITE.org)
        found = item_key_of(epc)
        assert found is not None
        with self.ledger.store.write():
            registry.record_inspection(
                found[0],
                _INSPECTOR,
                InspectionResult.COUNTERFEIT,
                seller_id=seller,
                notes="demo: copied label, no security patch",
                now=self.now,
            )
            inspected = object_event(
                [epc],
                action="OBSERVE",
                biz_step=BizStep.INSPECTING,
                disposition=Disposition.NON_CONFORMANT,
                biz_location=SITE.sgln("00005"),
                transactions=[(SELLER_BTT, seller)],
                event_time=moment + dt.timedelta(hours=2),
                inspector=_INSPECTOR,
                reason_codes=("INSPECTION_COUNTERFEIT",),
                verdict="REJECT",
            )
            self.ledger.append(to_jsonld(inspected), SITE.org)


def _seller_of(event: Mapping[str, Any]) -> str:
    for link in event.get("bizTransactionList", ()):
        if link.get("type") == SELLER_BTT:
            return str(link["bizTransaction"])
    raise ValueError("demo event without a seller")
