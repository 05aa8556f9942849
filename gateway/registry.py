"""The gateway's business data that is not item history, in ``gw_*`` tables of the ledger DB.

Organisations and their GS1 company prefixes, sellers and their strikes ("one strike and
you're out"), inspection outcomes and photos, per-seller verdict outcomes, recalls, API
keys and gate status. Item history stays in the ledger; this is everything around it.

Tables (SQLite types shown; PostgreSQL uses BIGINT and BYTEA):

- ``gw_meta(key PK, value)``: ``version``, bumped in the same transaction by every write
  that changes what the verifier caches (organisations, prefixes, recalls, a seller's
  status or strikes), so a reader knows with one primary-key read whether to reload.
  Writes the verifier makes on every batch do not bump it: verdict outcomes
  (``note_outcome``, ``prune_outcomes``) and a new active seller (``ensure_seller``); nor
  do inspection records without a strike, photos, API keys and gate status.
- ``gw_orgs(org PK, name, role, created_at)``, ``gw_prefixes(prefix PK, org)``.
- ``gw_sellers(seller_id PK, status, strikes, first_seen, suspended_at, reason)``.
- ``gw_inspections(id PK, item_key, inspector, result, seller_id, notes, photos, at)``;
  ``photos`` is a JSON list of photo references (see :meth:`Registry.add_photo`).
- ``gw_photos(ref PK, media_type, data, at)``: inspection photos by SHA-256.
- ``gw_outcomes(seller_id, at, decision)``: verdicts the verifier reports per seller.
- ``gw_recalls(gtin, batch, reason, at) PK (gtin, batch)``; ``batch = ''`` is the whole GTIN.
- ``gw_api_keys(key_hash PK, key_id, role, org, label, created_at, revoked_at)``.
- ``gw_gates(site, gate, online, last_seen, counters, health) PK (site, gate)``.

Writes go through ``store.write()`` (serialised across processes and workers), so ids
allocated as ``MAX(id) + 1`` inside it are unique. Not thread-safe: one Registry per
store, and one store per thread (as for the ledger).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from gateway.ledger.signing import check_org_name
from gateway.ledger.store import SqlStore
from gatewire.gs1 import Gs1Error, parse_gtin

__all__ = [
    "ApiKeyInfo",
    "ApiPrincipal",
    "ApiRole",
    "GateStatus",
    "Inspection",
    "InspectionResult",
    "Org",
    "OrgRole",
    "Recall",
    "Registry",
    "RegistryConflictError",
    "RegistryError",
    "RegistryNotFoundError",
    "Seller",
    "SellerStatus",
]

API_KEY_PREFIX: Final = "pgk_"
MAX_PHOTO_BYTES: Final = 4 * 1024 * 1024
MAX_TEXT: Final = 2000
_PREFIX_RE: Final = re.compile(r"[0-9]{6,12}")
_GTIN14_RE: Final = re.compile(r"[0-9]{14}")
_GTIN_RE: Final = re.compile(r"[0-9]{8}|[0-9]{12,14}")
_BATCH_RE: Final = re.compile(r"[!-~]{1,20}")  # GS1 AI (10): up to 20 printable ASCII
_DECISIONS: Final = frozenset({"PASS", "REJECT", "HOLD"})
_PHOTO_TYPES: Final = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


class RegistryError(ValueError):
    """A request the registry cannot carry out; the message says what to fix."""


class RegistryNotFoundError(RegistryError):
    """The organisation, seller or other record named does not exist."""


class RegistryConflictError(RegistryError):
    """The request contradicts what is registered (a prefix another org owns, …)."""


class OrgRole(StrEnum):
    """What an organisation is to the site."""

    BRAND_OWNER = "brand_owner"
    SITE = "site"
    OTHER = "other"


class ApiRole(StrEnum):
    """What an API key may do (see docs/api.md)."""

    BRAND_OWNER = "brand_owner"
    OPERATOR = "operator"
    MANAGER = "manager"
    ADMIN = "admin"


class SellerStatus(StrEnum):
    """Whether a seller's goods may pass."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


class InspectionResult(StrEnum):
    """Outcome of a manual inspection."""

    GENUINE = "genuine"
    COUNTERFEIT = "counterfeit"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Org:
    """A registered organisation and its GS1 company prefixes (sorted)."""

    org: str
    name: str
    role: OrgRole
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class Seller:
    """A third-party seller; ``strikes`` counts confirmed counterfeits."""

    seller_id: str
    status: SellerStatus
    strikes: int
    first_seen: float
    suspended_at: float | None
    reason: str | None


@dataclass(frozen=True)
class Recall:
    """A recalled GTIN (``batch`` None) or one batch of it."""

    gtin: str
    batch: str | None
    reason: str
    at: float


@dataclass(frozen=True)
class ApiPrincipal:
    """Who an API key belongs to."""

    key_id: str
    role: ApiRole
    org: str | None


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as listed (never its secret)."""

    key_id: str
    role: ApiRole
    org: str | None
    label: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class GateStatus:
    """Last reported state of a gate."""

    site: str
    gate: str
    online: bool
    last_seen: float
    counters: dict[str, int]
    health: dict[str, str]


@dataclass(frozen=True)
class Inspection:
    """A recorded manual inspection."""

    inspection_id: int
    item_key: str
    inspector: str
    result: InspectionResult
    seller_id: str | None
    notes: str
    photos: tuple[str, ...]
    at: float


# ---------------------------------------------------------------------------- checks


def _text(value: object, what: str, *, max_len: int = 200, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise RegistryError(f"{what} must be a non-empty string, got {value!r:.60}")
    if len(value) > max_len:
        raise RegistryError(f"{what} is {len(value)} characters long; at most {max_len}")
    return value


def _time(value: object, what: str = "now") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RegistryError(f"{what} must be a finite number of seconds, got {value!r:.60}")
    return float(value)


def _org_name(org: object) -> str:
    try:
        return check_org_name(org)  # type: ignore[arg-type]
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


def normalise_gtin(gtin: str) -> str:
    """GTIN-8/12/13/14 → GTIN-14 with a verified check digit; RegistryError otherwise."""
    if not isinstance(gtin, str) or not _GTIN_RE.fullmatch(gtin):
        raise RegistryError(f"GTIN must be 8, 12, 13 or 14 digits, got {gtin!r:.40}")
    try:
        return parse_gtin(gtin).gtin14
    except Gs1Error as exc:
        raise RegistryError(f"bad GTIN {gtin!r}: {exc}") from None


def clean_seller_id(seller_id: object) -> str:
    """A seller ID without surrounding blanks; RegistryError if none is left (or too long)."""
    if not isinstance(seller_id, str) or not seller_id.strip():
        raise RegistryError(f"seller ID must be a non-empty string, got {seller_id!r:.60}")
    return _text(seller_id.strip(), "seller ID", max_len=500)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


class Registry:
    """Business data of one site in the ledger's database (``gw_*`` tables)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        i, b, f = store.int_type, store.blob_type, "DOUBLE PRECISION"
        statements = [
            f"CREATE TABLE IF NOT EXISTS gw_meta (key TEXT PRIMARY KEY, value {i} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS gw_orgs (org TEXT PRIMARY KEY, name TEXT NOT NULL, "
            f"role TEXT NOT NULL, created_at {f} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS gw_prefixes (prefix TEXT PRIMARY KEY, org TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS gw_sellers (seller_id TEXT PRIMARY KEY, "
            f"status TEXT NOT NULL, strikes {i} NOT NULL, first_seen {f} NOT NULL, "
            f"suspended_at {f}, reason TEXT)",
            f"CREATE TABLE IF NOT EXISTS gw_inspections (id {i} PRIMARY KEY, "
            "item_key TEXT NOT NULL, inspector TEXT NOT NULL, result TEXT NOT NULL, "
            f"seller_id TEXT, notes TEXT NOT NULL, photos TEXT NOT NULL, at {f} NOT NULL)",
            "CREATE INDEX IF NOT EXISTS gw_inspections_item ON gw_inspections (item_key, id)",
            "CREATE TABLE IF NOT EXISTS gw_photos (ref TEXT PRIMARY KEY, "
            f"media_type TEXT NOT NULL, data {b} NOT NULL, at {f} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS gw_outcomes (seller_id TEXT NOT NULL, "
            f"at {f} NOT NULL, decision TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS gw_outcomes_seller_at ON gw_outcomes (seller_id, at)",
            "CREATE TABLE IF NOT EXISTS gw_recalls (gtin TEXT NOT NULL, batch TEXT NOT NULL, "
            f"reason TEXT NOT NULL, at {f} NOT NULL, PRIMARY KEY (gtin, batch))",
            "CREATE TABLE IF NOT EXISTS gw_api_keys (key_hash TEXT PRIMARY KEY, "
            "key_id TEXT NOT NULL UNIQUE, role TEXT NOT NULL, org TEXT, label TEXT NOT NULL, "
            f"created_at {f} NOT NULL, revoked_at {f})",
            "CREATE TABLE IF NOT EXISTS gw_gates (site TEXT NOT NULL, gate TEXT NOT NULL, "
            f"online {i} NOT NULL, last_seen {f} NOT NULL, counters TEXT NOT NULL, "
            "health TEXT NOT NULL, PRIMARY KEY (site, gate))",
        ]
        with store.write():
            for sql in statements:
                store._execute(sql)
            store._execute(
                "INSERT INTO gw_meta (key, value) VALUES ('version', 0) "
                "ON CONFLICT (key) DO NOTHING"
            )

    # ---- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _write(self, *, bump: bool = True) -> Iterator[SqlStore]:
        """A serialised write transaction; with ``bump``, it bumps the version before it
        commits (only for data the verifier caches: see the module's notes)."""
        with self.store.write() as tx:
            yield tx
            if bump:
                tx._execute("UPDATE gw_meta SET value = value + 1 WHERE key = 'version'")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.store._execute(self.store._q(sql), params)

    def version(self) -> int:
        """Counter bumped by every write of what the verifier caches (one primary-key read)."""
        return int(self._rows("SELECT value FROM gw_meta WHERE key = 'version'")[0][0])

    # ---- organisations and prefixes ----------------------------------------------------

    def add_org(self, org: str, name: str, role: OrgRole) -> Org:
        """Register an organisation; registering it again identically changes nothing."""
        org = _org_name(org)
        name = _text(name, "organisation name")
        try:
            role = OrgRole(role)
        except ValueError:
            raise RegistryError(
                f"organisation role must be one of {', '.join(OrgRole)}, got {role!r:.40}"
            ) from None
        existing = self.org(org)
        if existing is not None:
            if (existing.name, existing.role) != (name, role):
                raise RegistryConflictError(
                    f"organisation {org!r} is already registered as {existing.name!r} "
                    f"({existing.role})"
                )
            return existing
        with self._write():
            self._rows(
                "INSERT INTO gw_orgs (org, name, role, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (org) DO NOTHING",
                (org, name, role.value, time.time()),
            )
            stored = self._rows("SELECT name, role FROM gw_orgs WHERE org = ?", (org,))[0]
            if (stored[0], stored[1]) != (name, role.value):  # registered meanwhile
                raise RegistryConflictError(
                    f"organisation {org!r} is already registered as {stored[0]!r} ({stored[1]})"
                )
        return Org(org, name, role, ())

    def add_prefix(self, org: str, company_prefix: str) -> None:
        """Give ``org`` a GS1 company prefix (6–12 digits). Refused when another prefix
        overlaps it (one starts with the other): GS1 never allocates overlapping prefixes,
        so an overlap is a typo or a claim on someone else's range."""
        if not isinstance(company_prefix, str) or not _PREFIX_RE.fullmatch(company_prefix):
            raise RegistryError(f"company prefix must be 6–12 digits, got {company_prefix!r:.40}")
        with self._write():
            if not self._rows("SELECT 1 FROM gw_orgs WHERE org = ?", (org,)):
                raise RegistryNotFoundError(
                    f"unknown organisation {org!r}: register it before its prefixes"
                )
            for prefix, owner in self._rows("SELECT prefix, org FROM gw_prefixes"):
                if prefix == company_prefix and owner == org:
                    return  # already there; the version bump is harmless
                if prefix.startswith(company_prefix) or company_prefix.startswith(prefix):
                    what = "is" if prefix == company_prefix else f"overlaps prefix {prefix}"
                    raise RegistryConflictError(
                        f"company prefix {company_prefix} {what} registered to {owner!r}"
                    )
            self._rows("INSERT INTO gw_prefixes (prefix, org) VALUES (?, ?)", (company_prefix, org))

    def org(self, org: str) -> Org | None:
        """The organisation, or None."""
        rows = self._rows("SELECT org, name, role FROM gw_orgs WHERE org = ?", (org,))
        if not rows:
            return None
        prefixes = self._rows(
            "SELECT prefix FROM gw_prefixes WHERE org = ? ORDER BY prefix", (org,)
        )
        r = rows[0]
        return Org(str(r[0]), str(r[1]), OrgRole(r[2]), tuple(str(p[0]) for p in prefixes))

    def orgs(self) -> list[Org]:
        """Every organisation, by name."""
        owned: dict[str, list[str]] = {}
        for prefix, org in self._rows("SELECT prefix, org FROM gw_prefixes ORDER BY prefix"):
            owned.setdefault(str(org), []).append(str(prefix))
        return [
            Org(str(o), str(n), OrgRole(r), tuple(owned.get(str(o), ())))
            for o, n, r in self._rows("SELECT org, name, role FROM gw_orgs ORDER BY org")
        ]

    def prefix_owners(self) -> dict[str, str]:
        """Every registered company prefix → its organisation."""
        return {str(p): str(o) for p, o in self._rows("SELECT prefix, org FROM gw_prefixes")}

    def owner_of_gtin(self, gtin14: str) -> str | None:
        """The org owning the longest registered prefix that ``gtin14[1:]`` starts with."""
        found = self.prefix_of_gtin(gtin14)
        return None if found is None else found[1]

    def prefix_of_gtin(self, gtin14: str) -> tuple[str, str] | None:
        """(company prefix, org) of the longest registered prefix matching ``gtin14[1:]``."""
        if not isinstance(gtin14, str) or not _GTIN14_RE.fullmatch(gtin14):
            raise RegistryError(f"GTIN-14 must be 14 digits, got {gtin14!r:.40}")
        candidates = [gtin14[1 : 1 + n] for n in range(6, 13)]
        marks = ", ".join("?" * len(candidates))
        rows = self._rows(
            f"SELECT prefix, org FROM gw_prefixes WHERE prefix IN ({marks})", candidates
        )
        if not rows:
            return None
        prefix, org = max(rows, key=lambda r: len(str(r[0])))
        return str(prefix), str(org)

    # ---- sellers -----------------------------------------------------------------------

    def _seller_rows(self, where: str = "", params: Sequence[Any] = ()) -> list[Seller]:
        rows = self._rows(
            "SELECT seller_id, status, strikes, first_seen, suspended_at, reason "
            f"FROM gw_sellers {where} ORDER BY seller_id",
            params,
        )
        return [
            Seller(
                str(r[0]),
                SellerStatus(r[1]),
                int(r[2]),
                float(r[3]),
                _opt_float(r[4]),
                None if r[5] is None else str(r[5]),
            )
            for r in rows
        ]

    def seller(self, seller_id: str) -> Seller | None:
        """The seller, or None if never seen."""
        found = self._seller_rows("WHERE seller_id = ?", (clean_seller_id(seller_id),))
        return found[0] if found else None

    def sellers_named(self, seller_ids: Iterable[str]) -> list[Seller]:
        """The known sellers among ``seller_ids`` (blank IDs skipped), by ID."""
        ids = sorted({s.strip() for s in seller_ids if isinstance(s, str) and s.strip()})
        found: list[Seller] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found += self._seller_rows(f"WHERE seller_id IN ({marks})", chunk)
        return found

    def sellers(self) -> list[Seller]:
        """Every known seller, by ID."""
        return self._seller_rows()

    def _ensure_seller_locked(self, seller_id: str, now: float) -> None:
        self._rows(
            "INSERT INTO gw_sellers (seller_id, status, strikes, first_seen) "
            "VALUES (?, 'active', 0, ?) ON CONFLICT (seller_id) DO NOTHING",
            (seller_id, now),
        )

    def ensure_seller(self, seller_id: str, now: float) -> Seller:
        """The seller, created (active, no strikes, first seen ``now``) if new. Creating
        one does not bump the version: an active seller changes no verdict."""
        seller_id = clean_seller_id(seller_id)
        now = _time(now)
        found = self.seller(seller_id)
        if found is not None:
            return found
        with self._write(bump=False):
            self._ensure_seller_locked(seller_id, now)
        seller = self.seller(seller_id)
        assert seller is not None
        return seller

    def suspend_seller(self, seller_id: str, reason: str, now: float) -> Seller:
        """Suspend the seller (created if never seen); an already suspended seller keeps
        its original suspension time and reason."""
        seller_id = clean_seller_id(seller_id)
        reason = _text(reason, "suspension reason", max_len=MAX_TEXT)
        now = _time(now)
        with self._write():
            self._ensure_seller_locked(seller_id, now)
            self._suspend_locked(seller_id, reason, now)
        seller = self.seller(seller_id)
        assert seller is not None
        return seller

    def _suspend_locked(self, seller_id: str, reason: str, now: float) -> None:
        self._rows(
            "UPDATE gw_sellers SET status = 'suspended', suspended_at = ?, reason = ? "
            "WHERE seller_id = ? AND status <> 'suspended'",
            (now, reason, seller_id),
        )

    def reinstate_seller(self, seller_id: str, now: float) -> Seller:
        """Lift a suspension (strikes stay on record; the next strike suspends again)."""
        seller_id = clean_seller_id(seller_id)
        _time(now)
        with self._write():
            if not self._rows("SELECT 1 FROM gw_sellers WHERE seller_id = ?", (seller_id,)):
                raise RegistryNotFoundError(f"unknown seller {seller_id!r}")
            self._rows(
                "UPDATE gw_sellers SET status = 'active', suspended_at = NULL, reason = NULL "
                "WHERE seller_id = ?",
                (seller_id,),
            )
        seller = self.seller(seller_id)
        assert seller is not None
        return seller

    # ---- inspections and outcomes ------------------------------------------------------

    def record_inspection(
        self,
        item_key: str,
        inspector: str,
        result: InspectionResult,
        *,
        seller_id: str | None,
        notes: str = "",
        photos: Sequence[str] = (),
        now: float,
    ) -> int:
        """Record a manual inspection; its ID. A counterfeit with a known seller adds a
        strike and suspends the seller in the same transaction (one strike and you're out)."""
        item_key = _text(item_key, "item key")
        inspector = _text(inspector, "inspector")
        notes = _text(notes, "notes", max_len=MAX_TEXT, empty=True)
        try:
            result = InspectionResult(result)
        except ValueError:
            raise RegistryError(
                f"inspection result must be one of {', '.join(InspectionResult)}, "
                f"got {result!r:.40}"
            ) from None
        if seller_id is not None:
            seller_id = clean_seller_id(seller_id)
        if isinstance(photos, str) or not all(isinstance(p, str) and p for p in photos):
            raise RegistryError("photos must be a list of photo references (strings)")
        if len(photos) > 16:
            raise RegistryError(f"{len(photos)} photos; at most 16 per inspection")
        now = _time(now)
        strike = result is InspectionResult.COUNTERFEIT and seller_id is not None
        with self._write(bump=strike):
            inspection_id = int(
                self._rows("SELECT COALESCE(MAX(id), 0) + 1 FROM gw_inspections")[0][0]
            )
            self._rows(
                "INSERT INTO gw_inspections (id, item_key, inspector, result, seller_id, notes, "
                "photos, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    inspection_id,
                    item_key,
                    inspector,
                    result.value,
                    seller_id,
                    notes,
                    json.dumps(list(photos)),
                    now,
                ),
            )
            if strike and seller_id is not None:
                self._ensure_seller_locked(seller_id, now)
                self._rows(
                    "UPDATE gw_sellers SET strikes = strikes + 1 WHERE seller_id = ?", (seller_id,)
                )
                self._suspend_locked(
                    seller_id,
                    f"counterfeit confirmed by inspection {inspection_id} of {item_key}",
                    now,
                )
        return inspection_id

    def inspections(self, item_key: str | None = None) -> list[Inspection]:
        """Recorded inspections (of one item, or all), oldest first."""
        where, params = ("WHERE item_key = ?", (item_key,)) if item_key is not None else ("", ())
        rows = self._rows(
            "SELECT id, item_key, inspector, result, seller_id, notes, photos, at "
            f"FROM gw_inspections {where} ORDER BY id",
            params,
        )
        return [
            Inspection(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                InspectionResult(r[3]),
                None if r[4] is None else str(r[4]),
                str(r[5]),
                tuple(json.loads(r[6])),
                float(r[7]),
            )
            for r in rows
        ]

    def add_photo(self, data: bytes, now: float) -> str:
        """Store an inspection photo (JPEG or PNG, at most 4 MiB); its reference
        ``sha256:<hex>`` for :meth:`record_inspection` and :meth:`photo`."""
        if not isinstance(data, bytes) or not data:
            raise RegistryError("a photo must be non-empty bytes")
        if len(data) > MAX_PHOTO_BYTES:
            raise RegistryError(f"photo of {len(data)} bytes; at most {MAX_PHOTO_BYTES}")
        media_type = next((t for magic, t in _PHOTO_TYPES if data.startswith(magic)), None)
        if media_type is None:
            raise RegistryError("a photo must be a JPEG or PNG image")
        ref = "sha256:" + hashlib.sha256(data).hexdigest()
        now = _time(now)
        with self._write(bump=False):
            self._rows(
                "INSERT INTO gw_photos (ref, media_type, data, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (ref) DO NOTHING",
                (ref, media_type, data, now),
            )
        return ref

    def photo(self, ref: str) -> tuple[str, bytes] | None:
        """(media type, bytes) of a stored photo, or None."""
        rows = self._rows("SELECT media_type, data FROM gw_photos WHERE ref = ?", (ref,))
        return (str(rows[0][0]), bytes(rows[0][1])) if rows else None

    def note_outcome(self, seller_id: str, decision: str, now: float) -> None:
        """Record a verdict (PASS, REJECT or HOLD) the verifier gave for a seller's item
        (no version bump: recent rejects are read per seller, not cached by version)."""
        seller_id = clean_seller_id(seller_id)
        decision = str(decision)  # a Verdict StrEnum is welcome; store its plain value
        if decision not in _DECISIONS:
            raise RegistryError(f"decision must be PASS, REJECT or HOLD, got {decision!r:.40}")
        now = _time(now)
        with self._write(bump=False):
            self._rows(
                "INSERT INTO gw_outcomes (seller_id, at, decision) VALUES (?, ?, ?)",
                (seller_id, now, decision),
            )

    def recent_rejects(self, seller_id: str, since: float) -> int:
        """How many REJECTs the seller's items got at or after ``since``."""
        rows = self._rows(
            "SELECT COUNT(*) FROM gw_outcomes WHERE seller_id = ? AND at >= ? "
            "AND decision = 'REJECT'",
            (str(seller_id).strip(), _time(since, "since")),
        )
        return int(rows[0][0])

    def prune_outcomes(self, before: float) -> int:
        """Forget outcomes older than ``before`` (they only feed recent_rejects); how many."""
        before = _time(before, "before")
        with self._write(bump=False):
            count = int(
                self._rows("SELECT COUNT(*) FROM gw_outcomes WHERE at < ?", (before,))[0][0]
            )
            self._rows("DELETE FROM gw_outcomes WHERE at < ?", (before,))
        return count

    # ---- recalls -----------------------------------------------------------------------

    def add_recall(self, gtin: str, batch: str | None, reason: str, now: float) -> Recall:
        """Recall a GTIN (``batch`` None) or one batch of it. Recalling what is already
        recalled returns the existing recall unchanged."""
        gtin14 = normalise_gtin(gtin)
        if batch is not None and (not isinstance(batch, str) or not _BATCH_RE.fullmatch(batch)):
            raise RegistryError(f"batch must be 1–20 printable ASCII characters, got {batch!r:.40}")
        reason = _text(reason, "recall reason", max_len=MAX_TEXT)
        now = _time(now)
        key = (gtin14, batch or "")
        with self._write():
            rows = self._rows("SELECT reason, at FROM gw_recalls WHERE gtin = ? AND batch = ?", key)
            if rows:
                return Recall(gtin14, batch, str(rows[0][0]), float(rows[0][1]))
            self._rows(
                "INSERT INTO gw_recalls (gtin, batch, reason, at) VALUES (?, ?, ?, ?)",
                (*key, reason, now),
            )
        return Recall(gtin14, batch, reason, now)

    def recalls(self) -> list[Recall]:
        """Every recall, oldest first."""
        rows = self._rows("SELECT gtin, batch, reason, at FROM gw_recalls ORDER BY at, gtin, batch")
        return [Recall(str(g), str(b) or None, str(r), float(a)) for g, b, r, a in rows]

    # ---- API keys ----------------------------------------------------------------------

    @staticmethod
    def _hash_key(plaintext: str) -> str:
        return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()

    def create_api_key(self, role: ApiRole, org: str | None, label: str) -> str:
        """A new API key; the plaintext is returned once, only its SHA-256 is stored.
        Brand-owner keys must name their (registered) organisation."""
        try:
            role = ApiRole(role)
        except ValueError:
            raise RegistryError(
                f"API role must be one of {', '.join(ApiRole)}, got {role!r:.40}"
            ) from None
        label = _text(label, "key label")
        if role is ApiRole.BRAND_OWNER and org is None:
            raise RegistryError("a brand_owner key must name its organisation (org)")
        plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
        digest = self._hash_key(plaintext)
        key_id = "k_" + digest[:12]
        with self._write(bump=False):
            if org is not None and not self._rows("SELECT 1 FROM gw_orgs WHERE org = ?", (org,)):
                raise RegistryNotFoundError(f"unknown organisation {org!r}: register it first")
            self._rows(
                "INSERT INTO gw_api_keys (key_hash, key_id, role, org, label, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (digest, key_id, role.value, org, label, time.time()),
            )
        return plaintext

    def check_api_key(self, plaintext: str) -> ApiPrincipal | None:
        """Who holds this key, or None for an unknown or revoked key. Looked up by its
        SHA-256 (a timing difference can reveal nothing about a stored key's secret)."""
        if not isinstance(plaintext, str) or not plaintext.startswith(API_KEY_PREFIX):
            return None
        if len(plaintext) > 200:
            return None
        digest = self._hash_key(plaintext)
        rows = self._rows(
            "SELECT key_hash, key_id, role, org FROM gw_api_keys "
            "WHERE key_hash = ? AND revoked_at IS NULL",
            (digest,),
        )
        if not rows or not hmac.compare_digest(str(rows[0][0]), digest):
            return None
        r = rows[0]
        return ApiPrincipal(str(r[1]), ApiRole(r[2]), None if r[3] is None else str(r[3]))

    def api_keys(self) -> list[ApiKeyInfo]:
        """Every API key ever created (without secrets), oldest first."""
        rows = self._rows(
            "SELECT key_id, role, org, label, created_at, revoked_at FROM gw_api_keys "
            "ORDER BY created_at, key_id"
        )
        return [
            ApiKeyInfo(
                str(r[0]),
                ApiRole(r[1]),
                None if r[2] is None else str(r[2]),
                str(r[3]),
                float(r[4]),
                _opt_float(r[5]),
            )
            for r in rows
        ]

    def revoke_api_key(self, key_id: str, now: float) -> None:
        """Revoke a key by its ID; RegistryNotFoundError if there is none."""
        now = _time(now)
        with self._write(bump=False):
            if not self._rows("SELECT 1 FROM gw_api_keys WHERE key_id = ?", (key_id,)):
                raise RegistryNotFoundError(f"unknown API key {key_id!r}")
            self._rows(
                "UPDATE gw_api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (now, key_id),
            )

    # ---- gates -------------------------------------------------------------------------

    def record_gate_status(
        self,
        site: str,
        gate: str,
        *,
        now: float,
        online: bool | None = None,
        counters: Mapping[str, int] | None = None,
        health: Mapping[str, str] | None = None,
    ) -> None:
        """Merge a gate's report: ``online`` if given (a new gate starts online), counters
        and health entries replace those of the same name, others are kept."""
        site = _text(site, "site")
        gate = _text(gate, "gate")
        now = _time(now)
        new_counters = dict(counters or {})
        new_health = dict(health or {})
        if not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in new_counters.items()
        ):
            raise RegistryError("gate counters must map names to integers")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in new_health.items()):
            raise RegistryError("gate health must map names to strings")
        with self._write(bump=False):
            rows = self._rows(
                "SELECT online, counters, health FROM gw_gates WHERE site = ? AND gate = ?",
                (site, gate),
            )
            if rows:
                is_online = bool(rows[0][0]) if online is None else online
                merged_counters = {**json.loads(rows[0][1]), **new_counters}
                merged_health = {**json.loads(rows[0][2]), **new_health}
            else:
                is_online = True if online is None else online
                merged_counters, merged_health = new_counters, new_health
            self._rows(
                "INSERT INTO gw_gates (site, gate, online, last_seen, counters, health) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, gate) DO UPDATE SET "
                "online = excluded.online, last_seen = excluded.last_seen, "
                "counters = excluded.counters, health = excluded.health",
                (
                    site,
                    gate,
                    int(is_online),
                    now,
                    json.dumps(merged_counters, sort_keys=True),
                    json.dumps(merged_health, sort_keys=True),
                ),
            )

    def gates(self) -> list[GateStatus]:
        """Every gate that ever reported, by site and gate."""
        rows = self._rows(
            "SELECT site, gate, online, last_seen, counters, health FROM gw_gates "
            "ORDER BY site, gate"
        )
        return [
            GateStatus(
                str(r[0]), str(r[1]), bool(r[2]), float(r[3]), json.loads(r[4]), json.loads(r[5])
            )
            for r in rows
        ]
