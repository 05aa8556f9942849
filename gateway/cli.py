"""``provgate ledger …``: the provenance ledger from the shell (mounted by ``provgate_cli.main``).

Every command that uses the database takes ``--db URL`` (a path, ``sqlite:///…`` or
``postgresql://…``; default ``provgate-ledger.db``, or ``$PROVGATE_LEDGER_DB``) and
``--keys DIR`` (the organisations' Ed25519 keystore; default ``<db>.keys`` next to a
SQLite file, ``provgate-ledger.keys`` otherwise, or ``$PROVGATE_LEDGER_KEYS``).

Exit codes: 0 success; 1 the audit or the proof does not verify; 2 bad input (missing
database or file, unreadable document, unknown item), with one line on stderr.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, TypeVar

import paho.mqtt.client as mqtt
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.ledger.epcis import EpcisError, EpcisEvent, from_jsonld, to_jsonld
from gateway.ledger.event_hash import EventHashError, document_event_hashes
from gateway.ledger.jsonld import read_document, write_document
from gateway.ledger.ledger import Ledger, LedgerError
from gateway.ledger.proofs import verify_proof
from gateway.ledger.seed import BRANDS, SITE, demo_batches, demo_orgs
from gateway.ledger.signing import Keystore, KeyStoreError, OrgKey, load_public
from gateway.ledger.store import SqlStore, StoreError
from gatewire.auth import Accepted, Reply, VerdictVerifier, derive_gate_key
from gatewire.messages import ErrorReply, Verdict, VerifyRequest, wire_object
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = ["app", "default_keys_dir", "gateway_app", "sqlite_path", "verify_cmd"]

FuncT = TypeVar("FuncT", bound=Callable[..., Any])


def reflow(func: FuncT) -> FuncT:
    """Join the lines of each paragraph of ``func``'s docstring, so the terminal's width
    decides how typer's help wraps (it keeps the line breaks of later paragraphs)."""
    import inspect

    doc = inspect.cleandoc(func.__doc__ or "")
    func.__doc__ = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    return func


EXIT_FAILED: Final = 1
EXIT_INVALID: Final = 2
DEFAULT_DB: Final = "provgate-ledger.db"
IMPORT_BATCH: Final = 10_000
GIL_SWITCH_S: Final = 0.001
"""Python's thread switch interval in a serving gateway: the network thread answering
requests must not wait the default 5 ms for the interpreter while the background thread
ingests events."""

app = typer.Typer(
    help="Provenance ledger: EPCIS 2.0 events, CBV event hashes, signed blocks, proofs.",
    no_args_is_help=True,
)

DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="PROVGATE_LEDGER_DB",
        help="Ledger database: a path, sqlite:///… or postgresql://…",
    ),
]
KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        envvar="PROVGATE_LEDGER_KEYS",
        help="Organisation keystore directory (default: <db>.keys next to a SQLite db).",
        show_default=False,
    ),
]


def _fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite ledger URL, or None for PostgreSQL / in-memory."""
    if url.startswith(("postgresql://", "postgres://")):
        return None
    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///")
    if not url or url == ":memory:" or "://" in url:
        return None
    return Path(url)


def default_keys_dir(url: str) -> Path:
    """Where the keystore lives when ``--keys`` is not given: next to a SQLite file."""
    path = sqlite_path(url)
    if path is None:
        return Path("provgate-ledger.keys")
    return path.with_name(path.name.removesuffix(".db") + ".keys")


@contextmanager
def _ledger(db: str, keys: list[OrgKey] | None = None, *, create: bool = False) -> Iterator[Ledger]:
    path = sqlite_path(db)
    if not create and path is not None and not path.is_file():
        _fail(f"no ledger database at {path} (create one with `provgate ledger seed` or `import`)")
    try:
        ledger = Ledger.open(db, keys or [])
    except (StoreError, LedgerError) as exc:
        _fail(f"cannot open ledger {db}: {exc}")
    try:
        yield ledger
    except (StoreError, LedgerError) as exc:
        _fail(f"ledger error: {exc}")
    finally:
        ledger.close()


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        _fail(f"{file}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{file}: cannot read: {exc}")


def _read_json(file: Path) -> Any:
    text = _read_text(file)
    try:
        return json.loads(text)
    except ValueError as exc:
        _fail(f"{file}: not JSON: {exc}")


def _write_out(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        _fail(f"{out}: cannot write: {exc}")


# --- event-hash ---------------------------------------------------------------------


@app.command("event-hash")
def event_hash_cmd(
    file: Annotated[Path, typer.Argument(help="EPCIS 2.0 JSON-LD document.", show_default=False)],
) -> None:
    """Print the CBV 2.0 event hash of every event of a document, one per line, in order."""
    doc = _read_json(file)
    if not isinstance(doc, dict):
        _fail(f"{file}: not an EPCIS document (a JSON object is expected)")
    try:
        hashes = document_event_hashes(doc)
    except (EventHashError, ValueError) as exc:
        _fail(f"{file}: {exc}")
    for line in hashes:
        typer.echo(line)


# --- audit --------------------------------------------------------------------------


@app.command("audit")
def audit_cmd(
    db: DbOpt = DEFAULT_DB,
    allow_unsealed: Annotated[
        bool,
        typer.Option(
            "--allow-unsealed",
            help="Accept events not yet sealed in a signed block (chain-protected only).",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Hashing processes (default: one per CPU)."),
    ] = None,
) -> None:
    """Recompute hashes, chain, Merkle roots and signatures; exit 1 naming the first bad event."""
    with _ledger(db) as ledger:
        report = ledger.audit(strict=not allow_unsealed, workers=workers)
    if report.ok:
        typer.echo(report.summary())
        return
    first = report.first
    typer.echo(report.summary(), err=True)
    if first is not None:
        typer.echo(f"first bad event: seq {first.seq}", err=True)
        typer.echo(f"  event ID: {first.event_id or '-'}", err=True)
        typer.echo(f"  reason:   {first.reason}", err=True)
    raise typer.Exit(EXIT_FAILED)


# --- prove / verify-proof -----------------------------------------------------------


@app.command("prove")
def prove_cmd(
    item: Annotated[str, typer.Argument(help="Item key (EPC URI as stored).", show_default=False)],
    db: DbOpt = DEFAULT_DB,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the proof here (default: stdout).")
    ] = None,
) -> None:
    """Write the item's history with Merkle inclusion proofs (JSON), checkable offline."""
    with _ledger(db) as ledger:
        if ledger.item_state(item) is None:
            _fail(f"unknown item {item!r}: not in ledger {db}")
        proof = ledger.prove(item)
    _write_out(json.dumps(proof, ensure_ascii=False, indent=2), out)
    if out is not None:
        typer.echo(
            f"proof of {item}: {len(proof['events'])} sealed events, "
            f"{len(proof['unsealed'])} unsealed -> {out}",
            err=True,
        )


def _public_key_from(spec: str) -> Ed25519PublicKey:
    """A public key from hex, a file of hex, or a PEM file (private or public key)."""
    path = Path(spec)
    if not path.is_file():
        return load_public(spec.strip())
    data = path.read_bytes()
    if b"-----BEGIN" not in data:
        return load_public(data.decode("ascii", "replace").strip())
    loaded: Any
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        try:
            loaded = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise KeyStoreError(f"{path}: not a PEM key: {exc}") from None
    if isinstance(loaded, Ed25519PrivateKey):
        return loaded.public_key()
    if isinstance(loaded, Ed25519PublicKey):
        return loaded
    raise KeyStoreError(f"{path} is not an Ed25519 key")


@app.command("verify-proof")
def verify_proof_cmd(
    file: Annotated[Path, typer.Argument(help="Proof JSON from `prove`.", show_default=False)],
    public_key: Annotated[
        list[str] | None,
        typer.Option(
            "--public-key",
            "-k",
            help="Signer's public key: 64 hex digits, a file of them, or a PEM key file. "
            "Repeat for several signers. Default: every key of --keys.",
            show_default=False,
        ),
    ] = None,
    keys: KeysOpt = None,
) -> None:
    """Check a proof offline (no database): exit 0 if it verifies, 1 with the reason."""
    doc = _read_json(file)
    found: list[Ed25519PublicKey] = []
    try:
        if public_key:
            found = [_public_key_from(spec) for spec in public_key]
        else:
            store = Keystore(keys or default_keys_dir(DEFAULT_DB))
            found = [store.load(org).public_key for org in store.orgs()]
    except (KeyStoreError, OSError) as exc:
        _fail(f"bad public key: {exc}")
    if not found:
        _fail("no public key: pass --public-key or a --keys directory holding the signers' keys")
    result = verify_proof(doc, {str(i): k for i, k in enumerate(found)})
    if result.ok:
        typer.echo(f"proof OK: {result.reason}")
        return
    typer.echo(f"proof does NOT verify: {result.reason}", err=True)
    raise typer.Exit(EXIT_FAILED)


@app.command("public-key")
def public_key_cmd(
    org: Annotated[str, typer.Argument(help="Organisation.", show_default=False)],
    db: DbOpt = DEFAULT_DB,
    keys: KeysOpt = None,
) -> None:
    """Print an organisation's public key (hex) from the keystore, for verify-proof."""
    try:
        key = Keystore(keys or default_keys_dir(db)).load(org)
    except KeyStoreError as exc:
        _fail(str(exc))
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    typer.echo(raw.hex())


# --- seed ---------------------------------------------------------------------------


def register_demo_orgs(store: SqlStore) -> None:
    """Register the demo brand owners with their company prefixes and the site with the
    gateway's registry, so the gateway's rules know who owns what (idempotent)."""
    from gateway.registry import OrgRole, Registry

    registry = Registry(store)
    for brand in BRANDS:
        registry.add_org(brand.org, brand.name, OrgRole.BRAND_OWNER)
        registry.add_prefix(brand.org, brand.company_prefix)
    registry.add_org(SITE.org, SITE.name, OrgRole.SITE)


@app.command("seed")
def seed_cmd(
    items: Annotated[int, typer.Option("--items", "-n", min=0, help="Number of demo items.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Items per append batch.")
    ] = 1000,
    db: DbOpt = DEFAULT_DB,
    keys: KeysOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fill the ledger with demo brand owners, a site, sellers and commissioned items."""
    keystore = Keystore(keys or default_keys_dir(db))
    try:
        org_keys = [keystore.load_or_generate(o.org) for o in demo_orgs()]
    except (KeyStoreError, OSError) as exc:
        _fail(f"keystore {keystore.directory}: {exc}")
    counts: dict[str, int] = {}
    started = time.perf_counter()
    console = Console(stderr=True)
    with (
        _ledger(db, org_keys, create=True) as ledger,
        Progress(
            TextColumn("[bold]seeding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task("seed", total=items)
        for signer, events, done in demo_batches(items, seed, batch_size):
            ledger.append_batch(events, signer)
            counts[signer] = counts.get(signer, 0) + len(events)
            progress.update(task, completed=done)
        blocks = ledger.seal()
        total_events = ledger.store.event_count()
        try:
            register_demo_orgs(ledger.store)
        except ValueError as exc:
            _fail(f"cannot register the demo organisations: {exc}")
    elapsed = time.perf_counter() - started
    appended = sum(counts.values())
    typer.echo(
        f"seeded {items} items: {appended} events in {elapsed:.1f} s "
        f"({appended / elapsed if elapsed > 0 else 0:,.0f} events/s), "
        f"{len(blocks)} blocks sealed at the end; ledger holds {total_events} events"
    )
    for org in [*BRANDS, SITE]:
        typer.echo(
            f"  {org.org:<16} {org.name:<18} prefix {org.company_prefix}  "
            f"{counts.get(org.org, 0):>7} events"
        )
    typer.echo(f"  db {db}, keys {keystore.directory}")


# --- import / export ----------------------------------------------------------------


def _stored_form(event: EpcisEvent) -> dict[str, Any]:
    """The JSON the ledger stores for an imported event (keeps foreign namespaces)."""
    data = to_jsonld(event)
    if event.namespaces:
        return {"@context": [dict(event.namespaces)], **data}
    return data


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="EPCIS 2.0 JSON-LD document.", show_default=False)],
    signer: Annotated[str, typer.Option("--signer", help="Organisation that signs these events.")],
    db: DbOpt = DEFAULT_DB,
    keys: KeysOpt = None,
) -> None:
    """Append the ObjectEvents and AggregationEvents of a document, signed by --signer."""
    try:
        events = read_document(_read_text(file))
    except EpcisError as exc:
        _fail(f"{file}: {exc}")
    if not events:
        _fail(f"{file}: the document holds no event")
    keystore = Keystore(keys or default_keys_dir(db))
    try:
        created = not keystore.path(signer).exists()
        key = keystore.load_or_generate(signer)
    except (KeyStoreError, OSError) as exc:
        _fail(f"keystore {keystore.directory}: {exc}")
    if created:
        typer.echo(f"created a new key for {signer} at {keystore.path(signer)}", err=True)
    stored = [_stored_form(e) for e in events]
    with _ledger(db, [key], create=True) as ledger:
        batches = (
            stored[start : start + IMPORT_BATCH] for start in range(0, len(stored), IMPORT_BATCH)
        )
        appended = [a for part in ledger.append_batches(batches, signer) for a in part]
        ledger.seal(signer)
    typer.echo(
        f"imported {len(appended)} events from {file} signed by {signer} "
        f"(seq {appended[0].seq}–{appended[-1].seq})"
    )


@app.command("export")
def export_cmd(
    db: DbOpt = DEFAULT_DB,
    item: Annotated[
        str | None, typer.Option("--item", help="Only this item's history.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Write the ledger's events (or one item's) as an EPCIS 2.0 JSON-LD document."""
    with _ledger(db) as ledger:
        if item is not None:
            if ledger.item_state(item) is None:
                _fail(f"unknown item {item!r}: not in ledger {db}")
            rows = [e.event for e in ledger.history(item)]
        else:
            rows = [json.loads(text) for _s, _e, text, _o, _c in ledger.store.iter_events()]
    try:
        events = [from_jsonld(r) for r in rows]
        text = write_document(events, indent=2)
    except EpcisError as exc:
        _fail(f"cannot export: {exc}")
    _write_out(text, out)


# --- provgate gateway run / provgate verify -----------------------------------------------

gateway_app = typer.Typer(
    help="The site gateway: MQTT verification service and HTTP API.", no_args_is_help=True
)

EXIT_PASS: Final = 0
EXIT_HOLD: Final = 3
EXIT_REJECT: Final = 4
EXIT_ERROR_REPLY: Final = 5
EXIT_TIMEOUT: Final = 6
EXIT_UNREACHABLE: Final = 7


@gateway_app.callback()
def _gateway_group() -> None:
    # Keeps `run` a subcommand while it is the only one.
    pass


@gateway_app.command("run")
@reflow
def run_cmd(
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="PROVGATE_GATEWAY_CONFIG",
            help="Gateway config (YAML); without it, demo defaults (site demo, example secret).",
            show_default=False,
        ),
    ] = None,
    mqtt_only: Annotated[
        bool, typer.Option("--mqtt-only", help="Run only the MQTT verification service.")
    ] = False,
    http_only: Annotated[bool, typer.Option("--http-only", help="Run only the HTTP API.")] = False,
) -> None:
    """Run the gateway: the MQTT verification service and the HTTP API in one process.

    Prints one `gateway ready: …` line on stdout once serving. SIGINT or SIGTERM stops both
    cleanly (the gateway's retained availability goes offline). Exit 2 for a bad config.
    """
    from gateway.config import load_config
    from gatewire.yamlconfig import ConfigError

    if mqtt_only and http_only:
        _fail("--mqtt-only and --http-only exclude each other")
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _serve(
        config,
        mqtt=config.mqtt.enabled and not http_only,
        http=config.http.enabled and not mqtt_only,
    )


#: Seconds of stopping after which the gateway dumps its threads' stacks to stderr.
SLOW_STOP_S = 15.0


def _serve(config: GatewayConfig, *, mqtt: bool, http: bool) -> None:
    """Start what is asked, print the ready line, wait for a signal, stop everything."""
    from gateway.service import GatewayService, open_service

    if not (mqtt or http):
        _fail("nothing to run: the part asked for is disabled in the config")
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
    log = logging.getLogger("gateway")
    if config.uses_demo_secret:
        log.warning("using the documented example site secret: demo only, never in production")
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    service: GatewayService | None = None
    server: Any = None
    thread: threading.Thread | None = None
    workers: list[subprocess.Popen[bytes]] = []
    parts: list[str] = []
    try:
        if mqtt:
            try:
                service = open_service(config)
                service.start()
            except (OSError, TimeoutError, StoreError, LedgerError, KeyStoreError) as exc:
                _fail(f"cannot start the MQTT service: {exc}", EXIT_FAILED)
            workers = [_start_worker(config, n) for n in range(2, config.mqtt.workers + 1)]
            names = ", ".join([config.mqtt.worker, *(f"w{n}" for n in range(2, len(workers) + 2))])
            parts.append(f"mqtt {config.mqtt.url} site {config.site} workers {names}")
        if http:
            server, thread = _start_http(config)
            parts.append(f"http http://{config.http.host}:{config.http.port}")
        typer.echo(f"gateway ready: {', '.join(parts)}")
        sys.stdout.flush()
        while not stop.wait(0.2):
            if thread is not None and not thread.is_alive():
                log.error("the HTTP API stopped; shutting down")
                break
            if any(w.poll() is not None for w in workers):
                log.error("an MQTT worker process stopped; shutting down")
                break
    finally:
        # If stopping takes unusually long, say where every thread is (stderr) and go on.
        faulthandler.dump_traceback_later(SLOW_STOP_S, exit=False)
        for worker in workers:
            worker.terminate()
        if server is not None:
            server.should_exit = True  # uvicorn winds down while the MQTT side stops
        for worker in workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if service is not None:
            service.stop()
        if thread is not None:
            thread.join(timeout=10)
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("gateway stopped")


def _start_worker(config: GatewayConfig, number: int) -> subprocess.Popen[bytes]:
    """MQTT worker ``w<number>`` in a child process of its own (its own GIL and database
    connections): ``provgate gateway worker`` reading the config, secrets included, from
    its stdin, so nothing secret shows in a process listing."""
    mqtt_settings = config.mqtt.model_copy(update={"worker": f"w{number}", "workers": 1})
    child = config.model_copy(update={"mqtt": mqtt_settings})
    document = child.model_dump(mode="json")
    document["site_secret"] = config.site_secret.get_secret_value()
    if config.inspection_secret is not None:
        document["inspection_secret"] = config.inspection_secret.get_secret_value()
    document["http"] = {"enabled": False}
    proc = subprocess.Popen(
        [sys.executable, "-m", "provgate_cli.main", "gateway", "worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(document).encode())
    proc.stdin.close()
    return proc


@gateway_app.command("worker", hidden=True)
def worker_cmd() -> None:
    """One extra MQTT worker of `provgate gateway run` (config as JSON on stdin)."""
    from gateway.config import GatewayConfig

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = GatewayConfig.model_validate_json(sys.stdin.buffer.read())
    _serve(config, mqtt=True, http=False)


def _start_http(config: GatewayConfig) -> tuple[Any, threading.Thread]:
    """The API's uvicorn server, running in a thread once it listens."""
    from gateway.api import ApiSettings, make_server

    key = config.http.bootstrap_admin_key
    settings = ApiSettings(
        ledger_url=config.ledger_url,
        keystore_dir=config.keys_dir(),
        site=config.site,
        site_org=config.site_org,
        bootstrap_admin_key=None if key is None else key.get_secret_value(),
        site_location=config.location,
    )
    server = make_server(settings, config.http.host, config.http.port)
    thread = threading.Thread(target=server.run, name="gateway-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            _fail(
                f"cannot start the HTTP API on {config.http.host}:{config.http.port}", EXIT_FAILED
            )
        time.sleep(0.05)
    return server, thread


@reflow
def verify_cmd(
    item_id: Annotated[
        str,
        typer.Argument(
            help="Item ID in any form a gate reads: GS1 element string, (01)…(21)…, "
            "Digital Link URI, EPC URI or EPC hex.",
            show_default=False,
        ),
    ],
    mqtt_url: Annotated[
        str,
        typer.Option("--mqtt", envvar="PROVGATE_MQTT_URL", help="Broker URL, mqtt://host:port."),
    ],
    site: Annotated[str, typer.Option("--site", help="Site id.")] = "demo",
    gate: Annotated[
        str,
        typer.Option(
            "--gate",
            help="Gate id to ask as; the rules depend on the gate's kind (an unlisted `cli` "
            "is an inspection gate: ask as an inbound gate to hear what it would be told).",
        ),
    ] = "cli",
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="PROVGATE_SITE_SECRET",
            help="Site secret (hex) the gate key derives from; default: the demo secret.",
            show_default=False,
        ),
    ] = None,
    seller: Annotated[
        str | None, typer.Option("--seller", help="Seller to name in the request.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, max=300, help="Seconds to wait for a verdict.")
    ] = 5.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Ask the gateway about one item, as a gate would, and print the verdict.

    The request is sealed with the gate's key (derived from the site secret) and the reply
    is accepted only if it is authentic and bound to this request.

    Exit codes: 0 PASS; 3 HOLD; 4 REJECT; 5 the gateway answered with an error; 6 no
    verdict within --timeout; 7 the broker is unreachable; 2 bad input (unreadable ID,
    bad option).
    """
    from gateway.config import DEMO_SITE_SECRET, resolve_secret
    from gatewire.identity import parse_item_id

    parsed = parse_item_id(item_id.strip())
    if parsed.item is None:
        _fail(f"not an item ID: {parsed.error}")
    try:
        topics = GateTopics(site, gate)
        key = derive_gate_key(resolve_secret(secret or DEMO_SITE_SECRET, "--secret"), site, gate)
        address = BrokerAddress.from_url(mqtt_url)
        request = VerifyRequest(site=site, gate=gate, item=parsed.item, seller=seller)
    except (ValueError, ValidationError) as exc:
        _fail(str(exc).splitlines()[0])
    verifier = VerdictVerifier(site, gate, key, timeout_s=timeout)
    reply = _ask(address, topics, verifier, request, timeout)
    if reply is None:
        _fail(f"no verdict from the gateway of site {site} within {timeout:g} s", EXIT_TIMEOUT)
    _print_reply(reply, parsed.item.key, json_out)
    if isinstance(reply, Verdict):
        raise typer.Exit({"PASS": EXIT_PASS, "HOLD": EXIT_HOLD}.get(reply.decision, EXIT_REJECT))
    raise typer.Exit(EXIT_ERROR_REPLY)


def _ask(
    address: BrokerAddress,
    topics: GateTopics,
    verifier: VerdictVerifier,
    request: VerifyRequest,
    timeout: float,
) -> Reply | None:
    """Publish the sealed request and wait for an accepted reply (None on timeout)."""
    replies: queue.Queue[Reply] = queue.Queue()
    subscribed = threading.Event()

    def on_message(c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        result = verifier.accept_payload(bytes(msg.payload))
        if isinstance(result, Accepted) and result.message.request_id == request.id:
            replies.put(result.message)

    client = make_client(f"provgate-verify-{os.getpid()}")
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    try:
        connect(client, address)
    except OSError as exc:
        _fail(f"cannot reach the broker at {address.host}:{address.port}: {exc}", EXIT_UNREACHABLE)
    client.loop_start()
    try:
        client.subscribe(topics.verdict, qos=1)
        if not subscribed.wait(timeout):
            return None
        client.publish(topics.verify_request, verifier.seal_request(request), qos=1)
        try:
            return replies.get(timeout=timeout)
        except queue.Empty:
            return None
    finally:
        client.disconnect()
        client.loop_stop()


def _print_reply(reply: Reply, key: str, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(wire_object(reply), ensure_ascii=False))
        return
    if isinstance(reply, Verdict):
        line = f"{reply.decision.value}  {key}  reasons: {', '.join(reply.reasons) or '-'}"
        if reply.ledger_state:
            line += f"  state: {reply.ledger_state}"
        if reply.inspect:
            line += "  (pull for inspection)"
        typer.echo(line)
    elif isinstance(reply, ErrorReply):
        typer.echo(f"ERROR  {key}  {reply.code.value}: {reply.detail}")
