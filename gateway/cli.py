"""``provgate ledger …``: the provenance ledger from the shell (mounted by ``provgate_cli.main``).

Every command that uses the database takes ``--db URL`` (a path, ``sqlite:///…`` or
``postgresql://…``; default ``provgate-ledger.db``, or ``$PROVGATE_LEDGER_DB``) and
``--keys DIR`` (the organisations' Ed25519 keystore; default ``<db>.keys`` next to a
SQLite file, ``provgate-ledger.keys`` otherwise, or ``$PROVGATE_LEDGER_KEYS``).

Exit codes: 0 success; 1 the audit or the proof does not verify; 2 bad input (missing
database or file, unreadable document, unknown item), with one line on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.ledger.epcis import EpcisError, EpcisEvent, from_jsonld, to_jsonld
from gateway.ledger.event_hash import EventHashError, document_event_hashes
from gateway.ledger.jsonld import read_document, write_document
from gateway.ledger.ledger import Ledger, LedgerError
from gateway.ledger.proofs import verify_proof
from gateway.ledger.seed import BRANDS, SITE, demo_batches, demo_orgs
from gateway.ledger.signing import Keystore, KeyStoreError, OrgKey, load_public
from gateway.ledger.store import StoreError

__all__ = ["app", "default_keys_dir", "sqlite_path"]

EXIT_FAILED: Final = 1
EXIT_INVALID: Final = 2
DEFAULT_DB: Final = "provgate-ledger.db"
IMPORT_BATCH: Final = 10_000

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
        appended = []
        for start in range(0, len(stored), IMPORT_BATCH):
            appended += ledger.append_batch(stored[start : start + IMPORT_BATCH], signer)
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
