"""``provgate demo``: the main job on embedded defaults, as far as it is built.

The gate pipeline (scanners → verification → decision → diverter) is not built yet. Until
it is, the demo shows what exists and says so: every form of one item's ID normalising to
one canonical ID, bad IDs refused with a reason, and authenticated verdicts through a real
mosquitto broker (when installed), with a tampered, a forged and a replayed verdict refused.
"""

from __future__ import annotations

import queue
import secrets
from typing import Annotated

import paho.mqtt.client as mqtt
import typer
from rich.console import Console
from rich.table import Table

from gatewire.auth import (
    Accepted,
    SiteKeyring,
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
from simulators.standin_gateway import StandinGateway

SITE = "demo"
GATE = "in-01"
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
        "[bold]provgate demo[/bold] — [yellow]the gate pipeline (scan → verify → decide → "
        "divert) is not built yet.[/yellow]\nShowing what exists: item identity and "
        "authenticated verdicts over MQTT.\n"
    )
    _show_identity(console)
    _show_wire(console, mqtt_url)


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
    gateway = StandinGateway(url, SiteKeyring(SITE, site_secret=secret))
    gateway.start()
    topics = GateTopics(SITE, GATE)
    verifier = VerdictVerifier(SITE, GATE, derive_gate_key(secret, SITE, GATE), timeout_s=5)
    inbox: queue.Queue[bytes] = queue.Queue()
    gate = make_client(f"provgate-demo-{GATE}")
    gate.on_message = lambda c, u, m: inbox.put(bytes(m.payload))
    rogue = make_client("provgate-demo-rogue")
    try:
        connect(gate, BrokerAddress.from_url(url))
        connect(rogue, BrokerAddress.from_url(url))
        gate.subscribe(topics.verdict, qos=1)
        gate.loop_start()
        rogue.loop_start()
        table = Table(
            title="Verdicts through the broker (stand-in gateway: no ledger yet, answers HOLD)",
            title_justify="left",
        )
        table.add_column("what the gate received")
        table.add_column("gate's answer")
        genuine = _ask(gate, verifier, topics, inbox)
        table.add_row("genuine verdict", _describe(verifier.accept_payload(genuine)))
        _publish(rogue, topics.verdict, genuine)
        table.add_row(
            "the same verdict replayed by a rogue client",
            _describe(verifier.accept_payload(inbox.get(timeout=5))),
        )
        second = _ask(gate, verifier, topics, inbox)
        _publish(rogue, topics.verdict, second.replace(b'"HOLD"', b'"PASS"'))
        table.add_row(
            "a verdict altered in transit (HOLD → PASS)",
            _describe(verifier.accept_payload(inbox.get(timeout=5))),
        )
        request = VerifyRequest(site=SITE, gate=GATE, item=parse_item_id(EPC_URI).item)
        request_payload = verifier.seal_request(request)
        forged = Verdict(
            site=SITE,
            gate=GATE,
            request_id=request.id,
            request_mac=request_payload[-66:-2].decode(),
            decision=Decision.PASS,
        )
        _publish(rogue, topics.verdict, seal(forged, derive_gate_key(secret, SITE, "out-02")))
        table.add_row(
            "a PASS verdict sealed with another gate's key",
            _describe(verifier.accept_payload(inbox.get(timeout=5))),
        )
        console.print(table)
    finally:
        for client in (gate, rogue):
            client.disconnect()
            client.loop_stop()
        gateway.stop()


def _ask(
    gate: mqtt.Client, verifier: VerdictVerifier, topics: GateTopics, inbox: queue.Queue[bytes]
) -> bytes:
    item = parse_item_id(SAME_ITEM_FORMS["GS1 Digital Link URI"]).item
    request = VerifyRequest(site=SITE, gate=GATE, item=item)
    _publish(gate, topics.verify_request, verifier.seal_request(request))
    return inbox.get(timeout=5)


def _publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(5)


def _describe(result: object) -> str:
    if isinstance(result, Accepted):
        return f"[green]accepted[/green]: {result.message.decision.value}"
    reason = getattr(result, "reason", None)
    return f"[red]refused[/red]: {getattr(reason, 'value', reason)}"
