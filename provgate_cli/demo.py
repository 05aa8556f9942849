"""``provgate demo``: the main job on embedded defaults, as far as it is built.

The gate agent (scanners → item assembly → decision → diverter) is not built yet. Until
it is, the demo shows what exists and says so: every form of one item's ID normalising to
one canonical ID, bad IDs refused with a reason, and the real gateway answering gates
through a real mosquitto broker (when installed) from a freshly seeded ledger with its
rules, with a tampered, a forged and a replayed verdict refused by the gate, and the
camera label check (the shipped TFLite model) on a freshly rendered genuine label and one
of each counterfeit kind, plus a black frame and a corrupt JPEG.
"""

from __future__ import annotations

import queue
import secrets
import tempfile
from pathlib import Path
from typing import Annotated

import paho.mqtt.client as mqtt
import typer
from rich.console import Console
from rich.table import Table

from gateway.cli import register_demo_orgs
from gateway.config import GateSettings, GatewayConfig, HttpSettings, MqttSettings
from gateway.ledger.ledger import Ledger
from gateway.ledger.seed import BRANDS, demo_batches, demo_orgs
from gateway.ledger.seed import SITE as SEED_SITE
from gateway.ledger.signing import Keystore
from gateway.service import open_service
from gatewire.auth import (
    Accepted,
    VerdictVerifier,
    derive_gate_key,
    seal,
)
from gatewire.epc import encode_sgtin_hex
from gatewire.identity import parse_item_id
from gatewire.messages import Decision, Verdict, VerifyRequest
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics
from simulators.broker import BrokerError, MosquittoBroker, find_mosquitto

SITE = "demo"
GATE = "in-01"
OUT_GATE = "out-01"
SEED_ITEMS = 60
EPC_URI = "urn:epc:id:sgtin:0614141.812345.6789"
SAME_ITEM_FORMS = {
    "GS1-128 scan (AIM ]C1, GS separators)": "]C10180614141123458" + "216789",
    "GS1 DataMatrix scan (AIM ]d2)": "]d2018061414112345817261231" + "10LOT42\x1d216789",
    "bracketed human-readable": "(01)80614141123458(21)6789",
    "GS1 Digital Link URI": "https://id.gs1.org/01/80614141123458/21/6789",
    "EPC pure-identity URI": EPC_URI,
    "EPC binary from an RFID tag (SGTIN-96)": encode_sgtin_hex(EPC_URI, 3),
}
BAD_INPUTS = {
    "wrong check digit": "(01)80614141123459(21)6789",
    "unknown AI": "(01)80614141123458(23)X(21)6789",
    "truncated EPC hex": encode_sgtin_hex(EPC_URI, 3)[:20],
    "junk": "hello world",
}


def demo(
    mqtt_url: Annotated[
        str | None,
        typer.Option("--mqtt", help="Use this broker (mqtt://host:port) instead of a private one."),
    ] = None,
) -> None:
    """Run the demo on embedded defaults (what exists so far; see the notice it prints)."""
    console = Console()
    console.print(
        "[bold]provgate demo[/bold] — [yellow]the gate agent (scan → assemble → decide → "
        "divert) is not built yet.[/yellow]\nShowing what exists: item identity, and the "
        "gateway's authenticated verdicts from the provenance ledger over MQTT, and the "
        "camera label check.\n"
    )
    _show_identity(console)
    _show_wire(console, mqtt_url)
    _show_vision(console)


def _show_identity(console: Console) -> None:
    table = Table(title="One item, six ways it reaches a gate", title_justify="left")
    for column in ("read as", "kind", "canonical key", "serial"):
        table.add_column(column)
    keys = set()
    for label, text in SAME_ITEM_FORMS.items():
        outcome = parse_item_id(text)
        if outcome.item is None:
            console.print(f"[red]demo input failed to parse: {label}: {outcome.error}[/red]")
            raise typer.Exit(1)
        keys.add(outcome.item.key)
        table.add_row(label, outcome.item.kind.value, outcome.item.key, outcome.item.serial)
    console.print(table)
    verdict = "[green]all agree[/green]" if len(keys) == 1 else "[red]DISAGREE[/red]"
    console.print(f"Canonical IDs: {verdict} ({len(keys)} distinct)\n")
    bad = Table(title="Bad reads are refused with a reason", title_justify="left")
    bad.add_column("input")
    bad.add_column("reason")
    for label, text in BAD_INPUTS.items():
        outcome = parse_item_id(text)
        bad.add_row(label, outcome.error or "[red]ACCEPTED (bug)[/red]")
    console.print(bad)


def _show_wire(console: Console, mqtt_url: str | None) -> None:
    console.print()
    if mqtt_url is None and find_mosquitto() is None:
        console.print(
            "[yellow]mosquitto is not installed: skipping the broker round trip "
            "(apt-get install mosquitto, or pass --mqtt URL).[/yellow]"
        )
        return
    broker = None
    try:
        if mqtt_url is None:
            broker = MosquittoBroker().start()
            mqtt_url = broker.url
            console.print(f"Started a private mosquitto at {mqtt_url}")
        _round_trip(console, mqtt_url)
    except (BrokerError, OSError, TimeoutError) as exc:
        console.print(f"[red]broker round trip failed: {exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        if broker is not None:
            broker.close()


def _round_trip(console: Console, url: str) -> None:
    secret = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="provgate-demo-") as tmp:
        db = f"{tmp}/ledger.db"
        inbound, received = _seed(db, Path(tmp) / "keys")
        config = GatewayConfig(
            site=SITE,
            site_org=SEED_SITE.org,
            location=SEED_SITE.sgln("00005"),
            site_secret=secret.hex(),
            ledger_url=db,
            keystore_dir=Path(tmp) / "keys",
            gates={GATE: GateSettings(kind="inbound"), OUT_GATE: GateSettings(kind="outbound")},
            mqtt=MqttSettings(url=url),
            http=HttpSettings(enabled=False),
        )
        gateway = open_service(config)
        gateway.start()
        try:
            with _Gate(url, secret, GATE) as gate_in, _Gate(url, secret, OUT_GATE) as gate_out:
                _show_verdicts(console, gate_in, gate_out, inbound, received)
                _show_refusals(console, gate_in, secret, url)
        finally:
            gateway.stop()


def _seed(db: str, keys_dir: Path) -> tuple[list[str], list[str]]:
    """A small demo ledger; (EPCs on their way in, EPCs received in order at the site)."""
    keystore = Keystore(keys_dir)
    org_keys = [keystore.load_or_generate(o.org) for o in demo_orgs()]
    commissioned: list[str] = []
    seen_here: set[str] = set()
    received: list[str] = []
    with Ledger.open(db, org_keys) as ledger:
        for signer, events, _ in demo_batches(SEED_ITEMS, seed=7, batch_size=SEED_ITEMS):
            ledger.append_batch(events, signer)
            for event in events:
                epc = event["epcList"][0]
                if signer != SEED_SITE.org:
                    commissioned.append(epc)
                    continue
                seen_here.add(epc)
                if "non_conformant" not in str(event["disposition"]):
                    received.append(epc)
        ledger.seal()
        register_demo_orgs(ledger.store)
    return [n for n in commissioned if n not in seen_here], received


class _Gate:
    """A demo gate: seals requests with its key and accepts only verdicts bound to them."""

    def __init__(self, url: str, secret: bytes, gate: str) -> None:
        self.gate = gate
        self.topics = GateTopics(SITE, gate)
        self.verifier = VerdictVerifier(SITE, gate, derive_gate_key(secret, SITE, gate))
        self.inbox: queue.Queue[bytes] = queue.Queue()
        self.client = make_client(f"provgate-demo-{gate}-{secrets.token_hex(3)}")
        self.client.on_message = lambda c, u, m: self.inbox.put(bytes(m.payload))
        connect(self.client, BrokerAddress.from_url(url))
        self.client.subscribe(self.topics.verdict, qos=1)
        self.client.loop_start()

    def __enter__(self) -> _Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def ask(self, text: str) -> tuple[VerifyRequest, bytes]:
        """Ask the gateway about the item ``text`` names; (request, raw reply)."""
        item = parse_item_id(text).item
        assert item is not None, text
        request = VerifyRequest(site=SITE, gate=self.gate, item=item)
        _publish(self.client, self.topics.verify_request, self.verifier.seal_request(request))
        return request, self.inbox.get(timeout=10)


def _show_verdicts(
    console: Console, gate_in: _Gate, gate_out: _Gate, inbound: list[str], received: list[str]
) -> None:
    brand = BRANDS[0]
    cases = [
        ("commissioned by its brand, arriving", gate_in, inbound[0]),
        ("received here, leaving", gate_out, received[0]),
        ("received here, read again at inbound (copied label?)", gate_in, received[1]),
        (
            "never commissioned (unknown serial)",
            gate_in,
            f"urn:epc:id:sgtin:{brand.company_prefix}.{_product(inbound[0])}.999999999",
        ),
        ("prefix nobody registered (foreign clone)", gate_in, "urn:epc:id:sgtin:0012345.012345.42"),
    ]
    table = Table(
        title=f"The gateway's verdicts from the ledger ({SEED_ITEMS} seeded items, real rules)",
        title_justify="left",
    )
    for column in ("item", "gate", "verdict", "reasons"):
        table.add_column(column)
    for label, gate, text in cases:
        _, reply = gate.ask(text)
        result = gate.verifier.accept_payload(reply)
        if isinstance(result, Accepted) and isinstance(result.message, Verdict):
            verdict = result.message
            colour = {"PASS": "green", "REJECT": "red"}.get(verdict.decision.value, "yellow")
            table.add_row(
                label,
                gate.gate,
                f"[{colour}]{verdict.decision.value}[/{colour}]",
                ", ".join(verdict.reasons),
            )
        else:
            table.add_row(label, gate.gate, "[red]no valid verdict[/red]", _describe(result))
    console.print(table)


def _product(epc: str) -> str:
    return epc.rsplit(":", 1)[1].split(".")[1]


def _show_refusals(console: Console, gate: _Gate, secret: bytes, url: str) -> None:
    table = Table(title="What a gate refuses on the verdict topic", title_justify="left")
    table.add_column("what the gate received")
    table.add_column("gate's answer")
    rogue = make_client(f"provgate-demo-rogue-{secrets.token_hex(3)}")
    connect(rogue, BrokerAddress.from_url(url))
    rogue.loop_start()
    try:
        unknown = "urn:epc:id:sgtin:0012345.012345.43"
        _, genuine = gate.ask(unknown)
        table.add_row("genuine verdict", _describe(gate.verifier.accept_payload(genuine)))
        _publish(rogue, gate.topics.verdict, genuine)
        table.add_row(
            "the same verdict replayed by a rogue client",
            _describe(gate.verifier.accept_payload(gate.inbox.get(timeout=5))),
        )
        _, second = gate.ask(unknown)
        _publish(rogue, gate.topics.verdict, second.replace(b'"REJECT"', b'"PASS"'))
        table.add_row(
            "a verdict altered in transit (REJECT → PASS)",
            _describe(gate.verifier.accept_payload(gate.inbox.get(timeout=5))),
        )
        request = VerifyRequest(site=SITE, gate=gate.gate, item=parse_item_id(EPC_URI).item)
        request_payload = gate.verifier.seal_request(request)
        forged = Verdict(
            site=SITE,
            gate=gate.gate,
            request_id=request.id,
            request_mac=request_payload[-66:-2].decode(),
            decision=Decision.PASS,
        )
        _publish(rogue, gate.topics.verdict, seal(forged, derive_gate_key(secret, SITE, "out-02")))
        table.add_row(
            "a PASS verdict sealed with another gate's key",
            _describe(gate.verifier.accept_payload(gate.inbox.get(timeout=5))),
        )
    finally:
        rogue.disconnect()
        rogue.loop_stop()
    console.print(table)


def _publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(5)


def _describe(result: object) -> str:
    if isinstance(result, Accepted):
        return f"[green]accepted[/green]: {result.message.decision.value}"
    reason = getattr(result, "reason", None)
    return f"[red]refused[/red]: {getattr(reason, 'value', reason)}"


def _show_vision(console: Console) -> None:
    """The label check on one freshly rendered label of each kind, two lighting angles."""
    import numpy as np

    from edge_agent.vision.checker import LabelChecker
    from edge_agent.vision.layout import LabelKind
    from edge_agent.vision.runtime import ModelLoadError, RuntimeUnavailableError
    from simulators.labels import render_sample

    console.print()
    try:
        checker = LabelChecker.load(two_frame=True)
    except (ModelLoadError, RuntimeUnavailableError) as exc:
        console.print(f"[red]camera label check unavailable: {exc}[/red]")
        return
    table = Table(
        title=f"Camera label check (shipped model on {checker.runtime_name}, two lighting "
        "angles per label)",
        title_justify="left",
    )
    for column in ("label in front of the camera", "verdict", "score", "reasons", "DataMatrix"):
        table.add_column(column)
    shown: list[tuple[str, list[np.ndarray | bytes]]] = [
        (kind.value.replace("_", " "), list(render_sample(2026, kind, frames=2).frames))
        for kind in LabelKind
    ]
    shown.append(("black frame (lens covered)", [np.zeros((480, 640, 3), np.uint8)]))
    shown.append(("corrupt JPEG", [b"\xff\xd8\xff\xe0 broken"]))
    for what, frames in shown:
        result = checker.check(frames)
        colour = {"genuine": "green", "suspect": "red"}.get(result.verdict.value, "yellow")
        table.add_row(
            what,
            f"[{colour}]{result.verdict.value}[/{colour}]",
            "–" if result.score is None else f"{result.score:.3f}",
            ", ".join(result.reasons) or "–",
            result.item_id or "–",
        )
    console.print(table)
