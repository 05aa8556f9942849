"""Gate-event ingest: the gateway's CPU per gate event, beside the ledger's raw append of it.

A gate event costs the gateway's background thread its opening (MAC, decoding), its EPCIS
object, the ledger append (CBV event hash, chain, index, blocks), the idempotency row
(``gw_ingested``) and the item projection's fold, all in one transaction; and it must
cost the network thread nothing: the next verification finds the projection current.
Measured in-process on the demo site's SQLite ledger (synchronous=FULL), thread CPU time,
medians over interleaved rounds. Baselines in the same run: ``Ledger.append_batch`` of the
same EPCIS objects on a twin ledger (the durable append alone), and the same verification
with no event before it. Events come one per transaction (a quiet site), and in fours (the
background thread's 50 ms linger at 80 events/s, the demo site's rate).

PROVGATE_BENCH_INGEST_EVENTS (events per measurement, default 400) scales it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.report import Figure, print_figures
from gateway.config import GatewayConfig
from gateway.ingest import EventIngestor, epcis_of
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore
from gateway.rules import Verifier
from gatewire.auth import Accepted, SiteKeyring, seal
from gatewire.identity import parse_item_id
from gatewire.item import CanonicalItemId
from gatewire.messages import Decision, GateEvent, GateKind, VerifyRequest, new_message_id
from simulators.demo_site import create_demo_site, gateway_config_of, write_gateway_config

EVENTS = int(os.environ.get("PROVGATE_BENCH_INGEST_EVENTS", "400"))
ROUND = 50
"""Events per turn; the measurements take turns so that load changes hit them alike."""
GROUP = 4
GATE = "in-01"
SELLER = "seller-bench"


def _cpu_per(samples: Sequence[tuple[float, int]]) -> float:
    """Median CPU milliseconds per event of ``(seconds, events)`` samples."""
    return statistics.median(s / n for s, n in samples) * 1e3


class _Side:
    """One seeded demo site: its config, a ledger connection and the gate events to send."""

    def __init__(self, directory: Path, items: int) -> None:
        site = create_demo_site(directory, items=items, gates=[(GATE, GateKind.INBOUND)])
        write_gateway_config(site, "mqtt://127.0.0.1:1883")
        self.config: GatewayConfig = gateway_config_of(site)
        key = Keystore(self.config.keys_dir()).load_or_generate(self.config.site_org)
        self.ledger = Ledger.open(self.config.ledger_url, [key])
        self.keyring = SiteKeyring(site.site, site_secret=site.site_secret)
        self.key = site.gate_keys[GATE]
        self.site = site.site
        self.items = [_item(uri) for uri in site.catalogue.in_transit]

    def sealed_events(self, items: Sequence[CanonicalItemId]) -> list[bytes]:
        now = time.time()
        return [
            seal(
                GateEvent(
                    site=self.site,
                    gate=GATE,
                    event_id=new_message_id(),
                    item=it,
                    decision=Decision.PASS,
                    reasons=["ledger.ok"],
                    request_id=new_message_id(),
                    seller=SELLER,
                    scanned_at=now - 0.05,
                    decided_at=now,
                ),
                self.key,
            )
            for it in items
        ]

    def close(self) -> None:
        self.ledger.close()


def _item(uri: str) -> CanonicalItemId:
    parsed = parse_item_id(uri).item
    assert parsed is not None
    return parsed


def _opened(side: _Side, payloads: Sequence[bytes]) -> list[GateEvent]:
    events = []
    for payload in payloads:
        opened = side.keyring.open(payload)
        assert isinstance(opened, Accepted)
        assert isinstance(opened.message, GateEvent)
        events.append(opened.message)
    return events


def _timed(
    events: int, work: Callable[..., object], *args: Any, **kwargs: Any
) -> tuple[float, int]:
    """``(thread CPU seconds, events)`` of ``work(*args, **kwargs)``."""
    start = time.thread_time()
    work(*args, **kwargs)
    return time.thread_time() - start, events


def _open_and_ingest(ingestor: EventIngestor, side: _Side, payloads: Sequence[bytes]) -> None:
    """What the gateway's background thread does with sealed gate events."""
    ingestor.ingest(_opened(side, payloads))


def run() -> list[Figure]:
    """All figures of this benchmark."""
    rounds = max(1, EVENTS // ROUND)
    with tempfile.TemporaryDirectory(prefix="provgate-bench-ingest-") as tmp:
        # in-transit items are about a third of a demo site's: enough for every event
        gw = _Side(Path(tmp) / "gateway", items=EVENTS * 12 + 400)
        twin = _Side(Path(tmp) / "twin", items=EVENTS * 12 + 400)
        try:
            ingestor = EventIngestor(gw.ledger, gw.config)
            verifier = Verifier(
                Ledger.open(gw.config.ledger_url).store,
                gw.config.policy,
                site=gw.config.site_org,
                inspection_secret=gw.config.inspection_secret_bytes(),
                aliases=[gw.config.location],
            )
            samples: dict[str, list[tuple[float, int]]] = {
                k: [] for k in ("alone", "append_alone", "group", "append_group", "after", "plain")
            }
            pool, twin_pool = iter(gw.items), iter(twin.items)
            signer = gw.config.site_org
            for _ in range(rounds):
                for size, mine, base in (
                    (1, "alone", "append_alone"),
                    (GROUP, "group", "append_group"),
                ):
                    payloads = gw.sealed_events([next(pool) for _ in range(ROUND)])
                    twin_events = _opened(
                        twin, twin.sealed_events([next(twin_pool) for _ in range(ROUND)])
                    )
                    docs = [epcis_of(e, twin.config) for e in twin_events]
                    for at in range(0, ROUND, size):
                        chunk = payloads[at : at + size]
                        samples[mine].append(
                            _timed(len(chunk), _open_and_ingest, ingestor, gw, chunk)
                        )
                        part = docs[at : at + size]
                        samples[base].append(
                            _timed(len(part), twin.ledger.append_batch, part, signer)
                        )
                for _ in range(ROUND // 2):
                    event = _opened(gw, gw.sealed_events([next(pool)]))
                    ingestor.ingest(event)
                    asked = [
                        VerifyRequest(site=gw.site, gate=GATE, item=next(pool)) for _ in range(2)
                    ]
                    for name, ask in (("after", asked[:1]), ("plain", asked[1:])):
                        samples[name].append(
                            _timed(1, verifier.verify_many, ask, gate=GATE, now=time.time())
                        )
            verifier.store.close()
        finally:
            gw.close()
            twin.close()
    load = f"load {os.getloadavg()[0]:.1f}"
    return [
        Figure(
            f"CPU per gate event, one per transaction ({load})",
            _cpu_per(samples["alone"]),
            "ms",
            "ledger append of the same event alone",
            _cpu_per(samples["append_alone"]),
            higher_is_better=False,
            target="well under 1 ms",
        ),
        Figure(
            f"CPU per gate event, in groups of {GROUP} (the linger at 80 events/s)",
            _cpu_per(samples["group"]),
            "ms",
            f"ledger append of the same {GROUP}",
            _cpu_per(samples["append_group"]),
            higher_is_better=False,
        ),
        Figure(
            "network thread: a verification right after a gate event",
            _cpu_per(samples["after"]),
            "ms",
            "the same verification with no event before it",
            _cpu_per(samples["plain"]),
            higher_is_better=False,
            target="ratio ≈ 1 (no sync)",
        ),
    ]


if __name__ == "__main__":
    print_figures("Gate-event ingest: CPU per gate event", run())
