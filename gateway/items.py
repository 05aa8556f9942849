"""The gateway's item projection: each item's verification state, folded from ledger events.

The ledger is the only source of truth. :class:`ItemProjection` keeps one row per item in
``gw_items`` (same database as the ledger) and the seq of the last event it applied in
``gw_items_hwm``. :meth:`ItemProjection.sync` applies newer events in seq order inside
``store.write()``, so it is serialised with appenders and several workers may sync the
same database safely; when nothing is new it costs one indexed query.

How an event moves an item's status (see ``docs/rules.md``): a flag disposition
(stolen, recalled, destroyed, retail_sold…) sets that status; decommissioning sets
``decommissioned``; a gate REJECT verdict (``pg:verdict``) or a non-conformant disposition
quarantines the item; otherwise the business step moves it (commissioning → commissioned,
receiving → received, shipping → shipped), in eventTime order: a movement older than the
last one applied is late and moves nothing. Terminal statuses (stolen, recalled,
destroyed, decommissioned, sold) are only lifted by an event of the organisation that
commissioned the item, a quarantine also by a conforming inspection; either returns the
item to where its movements left it. Lot and expiry come only from the commissioner's
commissioning event; the seller only from the commissioner's or a registered site's
events. ``gw_item_names`` maps every name events give an item to its key (names_of).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, NamedTuple

from biip.checksums import gs1_standard_check_digit

from gateway.ledger.epcis import SELLER_BTT
from gateway.ledger.store import SqlStore
from gateway.registry import OrgRole, Registry
from gatewire.epc import EpcError, decode_epc_uri
from gatewire.identity import parse_item_id

__all__ = ["ItemProjection", "ItemRecord", "ItemStatus", "ProjectionError", "item_key_of"]

#: Events applied per write transaction: bounds how long a big catch-up holds the lock.
SYNC_CHUNK: Final = 5000
_IN_CHUNK: Final = 500
_HWM = "items"
#: Marks ``gw_item_names`` as filled up to the items' mark (row of ``gw_items_hwm``).
_NAMES_HWM = "names"
#: The ledger's last seq if the projection has not applied it yet, else NULL (also when the
#: ledger is empty): what sync() compares its mark with. Read in the same statement as
#: records (the verifier's one read), it says whether they are current: NULL means every
#: event of that snapshot is applied, so no sync (no write transaction) is needed, even
#: when another thread or worker appended and folded events since this object last synced.
HEAD_SQL: Final = (
    f"SELECT MAX(seq) FROM events WHERE seq > "
    f"COALESCE((SELECT last_seq FROM gw_items_hwm WHERE name = '{_HWM}'), 0)"
)


class ProjectionError(RuntimeError):
    """The projection could not be read or updated (the verifier then fails closed)."""


class ItemStatus(StrEnum):
    """Where an item is in its life cycle, as the ledger tells it."""

    SEEN = "seen"  # named by events, but never commissioned
    COMMISSIONED = "commissioned"
    RECEIVED = "received"
    SHIPPED = "shipped"
    SOLD = "sold"
    DECOMMISSIONED = "decommissioned"
    DESTROYED = "destroyed"
    RECALLED = "recalled"
    STOLEN = "stolen"
    QUARANTINED = "quarantined"


_STATUS: Final = {status.value: status for status in ItemStatus}
TERMINAL: Final = frozenset(
    {
        ItemStatus.SOLD,
        ItemStatus.DECOMMISSIONED,
        ItemStatus.DESTROYED,
        ItemStatus.RECALLED,
        ItemStatus.STOLEN,
    }
)
_FLAG_DISPOSITIONS: Final = {
    "stolen": ItemStatus.STOLEN,
    "recalled": ItemStatus.RECALLED,
    "destroyed": ItemStatus.DESTROYED,
    "disposed": ItemStatus.DESTROYED,
    "retail_sold": ItemStatus.SOLD,
    "dispensed": ItemStatus.SOLD,
}
_QUARANTINE_DISPOSITIONS: Final = frozenset({"non_conformant", "damaged", "expired"})
_CLEARING_DISPOSITIONS: Final = frozenset(
    {"conformant", "active", "in_progress", "sellable_accessible", "sellable_not_accessible"}
)
_RECEIVING_STEPS: Final = frozenset(
    {"receiving", "arriving", "accepting", "unloading", "storing", "stocking", "unpacking"}
)
_SHIPPING_STEPS: Final = frozenset({"shipping", "departing"})
_DECOMMISSION_STEPS: Final = frozenset({"decommissioning", "killing"})
_CBV_PREFIXES: Final = (
    "https://ref.gs1.org/cbv/BizStep-",
    "https://ref.gs1.org/cbv/Disp-",
    "urn:epcglobal:cbv:bizstep:",
    "urn:epcglobal:cbv:disp:",
)
_LOT_KEYS: Final = ("cbvmda:lotNumber", "https://ref.gs1.org/cbv/cbvmda-lotNumber")
_EXPIRY_KEYS: Final = (
    "cbvmda:itemExpirationDate",
    "https://ref.gs1.org/cbv/cbvmda-itemExpirationDate",
)
_ITEM_LISTS: Final = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_SGTIN_PREFIX_RE: Final = re.compile(r"urn:epc:id:sgtin:(\d{6,12})\.")


class ItemRecord(NamedTuple):
    """An item's verification state: what the rules read about it (immutable).

    A NamedTuple rather than a frozen dataclass: building one from a row costs about a
    tenth (a frozen dataclass's ``__init__`` goes through ``object.__setattr__`` per field,
    ~3 µs for these 13 fields here), which counts at 500 items a batch.
    """

    key: str
    """``<gtin14>/<serial>``, as ``CanonicalItemId.key``."""
    gtin: str
    serial: str
    company_prefix: str | None
    """GS1 company prefix from the EPC URI that named the item (None: named otherwise)."""
    batch: str | None
    expiry: dt.date | None
    commissioned_by: str | None
    """Organisation (ledger signer) of the first commissioning event, None if never."""
    status: ItemStatus
    seller: str | None
    """The seller of the latest event naming one (bizTransaction of type SELLER_BTT)."""
    last_site: str | None
    """Where the item was last seen: bizLocation, else readPoint, of the latest event."""
    last_signer: str | None
    """The organisation that signed that observation."""
    last_seen: float | None
    """When (eventTime, UTC epoch seconds)."""
    last_seq: int
    place: ItemStatus
    """Where the latest movement left it (seen, commissioned, received, shipped): the
    status a lifted flag or quarantine returns to."""
    moved_at: float | None
    """eventTime of that movement: an older movement delivered later does not apply."""


_FIELDS: Final = len(ItemRecord._fields)
_COLUMNS: Final = (
    "item_key, gtin, serial, company_prefix, batch, expiry, commissioned_by, status, seller, "
    "last_site, last_signer, last_seen, last_seq, place, moved_at"
)
_I_COLUMNS: Final = ", ".join(f"i.{c}" for c in _COLUMNS.split(", "))
#: Version of the projection's fold; a database folded by another version is rebuilt.
PROJECTION_VERSION: Final = 2
_VERSION_MARK: Final = "items_version"


_new_record = tuple.__new__
_date = dt.date.fromisoformat


def _record(row: Sequence[Any], at: int = 0) -> ItemRecord:
    """The record of a ``gw_items`` row (columns in ``_COLUMNS`` order) that starts at
    column ``at`` of ``row`` (a row joined to others), built without copying the row."""
    if len(row) - at != _FIELDS:
        raise ValueError(f"gw_items row has {len(row) - at} columns, not {_FIELDS}")
    expiry = row[at + 5]
    return _new_record(
        ItemRecord,
        (
            row[at],
            row[at + 1],
            row[at + 2],
            row[at + 3],
            row[at + 4],
            None if expiry is None else _date(expiry),
            row[at + 6],
            _STATUS[row[at + 7]],
            row[at + 8],
            row[at + 9],
            row[at + 10],
            row[at + 11],
            row[at + 12],
            _STATUS[row[at + 13]],
            row[at + 14],
        ),
    )


def _row(r: ItemRecord) -> tuple[Any, ...]:
    return (
        r.key,
        r.gtin,
        r.serial,
        r.company_prefix,
        r.batch,
        None if r.expiry is None else r.expiry.isoformat(),
        r.commissioned_by,
        r.status.value,
        r.seller,
        r.last_site,
        r.last_signer,
        r.last_seen,
        r.last_seq,
        r.place.value,
        r.moved_at,
    )


# An SGTIN URI whose serial needs no %-unescaping: the common case, decoded here without
# epcpy/biip (same result as gatewire.epc.decode_epc_uri, which handles everything else).
_SGTIN_FAST_RE: Final = re.compile(
    r"urn:epc:id:sgtin:(\d{6,12})\.(\d{1,7})\.([-!'()*+,.0-9:;=A-Z_a-z]{1,20})"
)
_GTINS: dict[str, str] = {}  # "<company prefix>.<item ref>" -> GTIN-14


def item_key_of(name: str) -> tuple[str, str, str | None] | None:
    """(key, serial, company prefix) of an item an event names, None if it is no item.

    EPC URIs carry the company prefix; Digital Link URIs do not (prefix None). SSCCs and
    other non-item identifiers give None.
    """
    match = _SGTIN_FAST_RE.fullmatch(name)
    if match is not None:
        company_prefix, item_ref, serial = match.groups()
        product = name[17 : match.end(2)]
        gtin = _GTINS.get(product)
        if gtin is None and len(company_prefix) + len(item_ref) == 13:
            body = item_ref[0] + company_prefix + item_ref[1:]
            gtin = body + str(gs1_standard_check_digit(body))
            if len(_GTINS) < 100_000:
                _GTINS[product] = gtin
        if gtin is not None:
            return f"{gtin}/{serial}", serial, company_prefix
    if name.startswith("urn:epc:id:sgtin:"):
        try:
            parts = decode_epc_uri(name)
        except EpcError:
            return None
        found = _SGTIN_PREFIX_RE.match(name)
        return f"{parts.gtin}/{parts.serial}", parts.serial, found.group(1) if found else None
    if name.startswith("urn:epc:"):
        return None
    item = parse_item_id(name).item
    if item is None or item.serial is None:
        return None
    return item.key, item.serial, None


def _short(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if ":" not in value:  # already a CBV short name (the usual case)
        return value
    for prefix in _CBV_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _location(event: Mapping[str, Any]) -> str | None:
    for field in ("bizLocation", "readPoint"):
        value = event.get(field)
        if isinstance(value, Mapping) and isinstance(value.get("id"), str):
            return str(value["id"])
    return None


def _seller(event: Mapping[str, Any]) -> str | None:
    links = event.get("bizTransactionList")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, Mapping) and link.get("type") == SELLER_BTT:
            ident = link.get("bizTransaction")
            if isinstance(ident, str) and ident.strip():
                return ident.strip()
    return None


def _event_time(event: Mapping[str, Any]) -> float | None:
    text = event.get("eventTime")
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _ilmd(event: Mapping[str, Any]) -> tuple[str | None, dt.date | None]:
    """(lot, expiry) from the event's ILMD, when it has them."""
    ilmd = event.get("ilmd")
    if not isinstance(ilmd, Mapping):
        return None, None
    lot = next((ilmd[k] for k in _LOT_KEYS if isinstance(ilmd.get(k), str)), None)
    expiry = None
    text = next((ilmd[k] for k in _EXPIRY_KEYS if isinstance(ilmd.get(k), str)), None)
    if text is not None:
        try:
            expiry = dt.date.fromisoformat(text[:10])
        except ValueError:
            expiry = None
    return lot, expiry


class _EventFacts(NamedTuple):
    """What an event tells about every item it names (parsed once per event)."""

    seq: int
    signer: str
    commissioning: bool
    biz_step: str | None
    disposition: str | None
    deleting: bool
    rejected: bool
    held: bool
    seller: str | None
    location: str | None
    time: float | None
    lot: str | None
    expiry: dt.date | None


def _facts(seq: int, signer: str, event: Mapping[str, Any]) -> _EventFacts:
    biz_step = _short(event.get("bizStep"))
    action = event.get("action")
    object_event = event.get("type") == "ObjectEvent"
    lot, expiry = _ilmd(event)
    verdict = event.get("pg:verdict")
    return _EventFacts(
        seq,
        signer,
        biz_step == "commissioning" or (object_event and action == "ADD"),
        biz_step,
        _short(event.get("disposition")),
        object_event and action == "DELETE",
        verdict == "REJECT",
        verdict == "HOLD",
        _seller(event),
        _location(event),
        _event_time(event),
        lot,
        expiry,
    )


def _movement(f: _EventFacts) -> ItemStatus | None:
    """Where event ``f`` moves an item (None: it does not move it)."""
    if f.held:  # a gate held it: it did not move (an outbound HOLD is not shipped)
        return None
    if f.commissioning:
        return ItemStatus.COMMISSIONED
    if f.biz_step in _RECEIVING_STEPS:
        return ItemStatus.RECEIVED
    if f.biz_step in _SHIPPING_STEPS:
        return ItemStatus.SHIPPED
    return None


def _flag(f: _EventFacts) -> ItemStatus | None:
    """The sticky status event ``f`` sets (stolen, recalled, sold…), if any."""
    disposition, step = f.disposition, f.biz_step
    if disposition in _FLAG_DISPOSITIONS:
        return _FLAG_DISPOSITIONS[disposition]
    if f.deleting or step in _DECOMMISSION_STEPS:
        return ItemStatus.DECOMMISSIONED
    if step == "destroying":
        return ItemStatus.DESTROYED
    if step == "retail_selling":
        return ItemStatus.SOLD
    return None


def _next_place(
    place: ItemStatus, moved_at: float | None, f: _EventFacts
) -> tuple[ItemStatus, float | None]:
    """(place, moved_at) after event ``f``: movements apply in eventTime order."""
    move = _movement(f)
    if move is None:
        return place, moved_at
    if move is ItemStatus.COMMISSIONED:  # commissioning only places a never-moved item
        return (move if place is ItemStatus.SEEN else place), moved_at
    if moved_at is not None and f.time is not None and f.time < moved_at:
        return place, moved_at  # a late event: the item has moved on since
    return move, moved_at if f.time is None else f.time


def _next_status(
    current: ItemStatus, f: _EventFacts, commissioned_by: str | None, place: ItemStatus
) -> ItemStatus:
    """The status after event ``f``; ``place`` is where its movements have left it."""
    flag = _flag(f)
    if flag is not None:
        return flag
    if f.rejected or f.disposition in _QUARANTINE_DISPOSITIONS:
        return current if current in TERMINAL else ItemStatus.QUARANTINED
    if current in TERMINAL or current is ItemStatus.QUARANTINED:
        clearing = f.disposition in _CLEARING_DISPOSITIONS
        by_brand = clearing and f.signer == commissioned_by
        inspected = clearing and current is ItemStatus.QUARANTINED and f.biz_step == "inspecting"
        return place if by_brand or inspected else current
    return place


def _blank_record(key: str, serial: str, prefix: str | None) -> ItemRecord:
    return ItemRecord(
        key=key,
        gtin=key[:14],
        serial=serial,
        company_prefix=prefix,
        batch=None,
        expiry=None,
        commissioned_by=None,
        status=ItemStatus.SEEN,
        seller=None,
        last_site=None,
        last_signer=None,
        last_seen=None,
        last_seq=0,
        place=ItemStatus.SEEN,
        moved_at=None,
    )


def apply_event(
    record: ItemRecord | None,
    key: str,
    serial: str,
    prefix: str | None,
    f: _EventFacts,
    sites: frozenset[str] = frozenset(),
) -> ItemRecord:
    """The item's record after event ``f`` (``record`` None: first event naming it).

    ``sites`` are the organisations registered as sites: with the commissioner, the only
    signers whose events may name the item's seller. Lot and expiry come only from the
    commissioner's commissioning event.
    """
    if record is None:
        record = _blank_record(key, serial, prefix)
    commissioned_by = record.commissioned_by
    if f.commissioning and commissioned_by is None:
        commissioned_by = f.signer  # the first commissioning counts; a later one is a clone's
    by_brand = f.signer == commissioned_by
    batch, expiry = record.batch, record.expiry
    if f.commissioning and by_brand:
        batch, expiry = f.lot or batch, f.expiry or expiry
    seller = record.seller
    if f.seller is not None and (by_brand or f.signer in sites):
        seller = f.seller
    place, moved_at = _next_place(record.place, record.moved_at, f)
    status = _next_status(record.status, f, commissioned_by, place)
    site, signer, seen = record.last_site, record.last_signer, record.last_seen
    if f.location is not None:
        if f.commissioning:  # where it was made: not a site observation (travel rule)
            if site is None:
                site, signer = f.location, f.signer
        elif seen is None or f.time is None or f.time >= seen:
            site, signer, seen = f.location, f.signer, f.time if f.time is not None else seen
    return ItemRecord(
        record.key,
        record.gtin,
        record.serial,
        record.company_prefix or prefix,
        batch,
        expiry,
        commissioned_by,
        status,
        seller,
        site,
        signer,
        seen,
        f.seq,
        place,
        moved_at,
    )


class ItemProjection:
    """Items' verification state in ``gw_items``, kept in step with the ledger by sync()."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._pg = store.placeholder != "?"
        self._synced = -1  # highest seq this object knows to be applied
        self._upsert = store._q(
            f"INSERT INTO gw_items ({_COLUMNS}) VALUES ({', '.join('?' * _FIELDS)}) "
            "ON CONFLICT (item_key) DO UPDATE SET gtin = excluded.gtin, "
            "serial = excluded.serial, company_prefix = excluded.company_prefix, "
            "batch = excluded.batch, expiry = excluded.expiry, "
            "commissioned_by = excluded.commissioned_by, status = excluded.status, "
            "seller = excluded.seller, last_site = excluded.last_site, "
            "last_signer = excluded.last_signer, last_seen = excluded.last_seen, "
            "last_seq = excluded.last_seq, place = excluded.place, moved_at = excluded.moved_at"
        )
        self._insert_name = store._q(
            "INSERT INTO gw_item_names (name, item_key, first_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._select_sql: dict[int, str] = {}
        self._with_sql: dict[tuple[str, int], str] = {}
        Registry(store)  # the organisations' table, which says who is a site
        self._create_tables()

    def _create_tables(self) -> None:
        """Create the projection's tables if missing (and fill a new names table)."""
        store = self.store
        i = store.int_type
        with store.write():
            store._execute(
                "CREATE TABLE IF NOT EXISTS gw_items_hwm (name TEXT PRIMARY KEY, "
                f"last_seq {i} NOT NULL){store.clustered}"
            )
            rebuild = self._mark(_VERSION_MARK) != [(PROJECTION_VERSION,)]
            if rebuild:  # folded by another version of this code (or never): fold again
                store._execute("DROP TABLE IF EXISTS gw_items")
            store._execute(
                "CREATE TABLE IF NOT EXISTS gw_items (item_key TEXT PRIMARY KEY, "
                "gtin TEXT NOT NULL, serial TEXT NOT NULL, company_prefix TEXT, batch TEXT, "
                "expiry TEXT, commissioned_by TEXT, status TEXT NOT NULL, seller TEXT, "
                f"last_site TEXT, last_signer TEXT, last_seen DOUBLE PRECISION, "
                f"last_seq {i} NOT NULL, place TEXT NOT NULL, moved_at DOUBLE PRECISION)"
                f"{store.clustered}"
            )
            store._execute(
                "CREATE INDEX IF NOT EXISTS gw_items_seller ON gw_items (seller, last_site)"
            )
            store._execute(
                "CREATE TABLE IF NOT EXISTS gw_item_names (name TEXT PRIMARY KEY, "
                f"item_key TEXT NOT NULL, first_seq {i} NOT NULL){store.clustered}"
            )
            store._execute(
                "CREATE INDEX IF NOT EXISTS gw_item_names_key "
                "ON gw_item_names (item_key, first_seq)"
            )
            if not self._mark(_HWM):
                self._set_mark(_HWM, 0, insert=True)
            if rebuild:
                self._set_mark(_HWM, 0)
                self._set_mark(
                    _VERSION_MARK, PROJECTION_VERSION, insert=not self._mark(_VERSION_MARK)
                )
            if not self._mark(_NAMES_HWM):  # names table new here: fill it for past events
                self._backfill_names(int(self._mark(_HWM)[0][0]))
                self._set_mark(_NAMES_HWM, 0, insert=True)

    def _mark(self, name: str) -> list[tuple[Any, ...]]:
        store = self.store
        return store._execute(store._q("SELECT last_seq FROM gw_items_hwm WHERE name = ?"), (name,))

    def _set_mark(self, name: str, seq: int, *, insert: bool = False) -> None:
        sql = (
            "INSERT INTO gw_items_hwm (last_seq, name) VALUES (?, ?)"
            if insert
            else "UPDATE gw_items_hwm SET last_seq = ? WHERE name = ?"
        )
        self.store._execute(self.store._q(sql), (seq, name))

    def _backfill_names(self, upto: int) -> None:
        """Fill ``gw_item_names`` from the ledger's index for events already applied."""
        store = self.store
        for after in range(0, upto, SYNC_CHUNK):  # whole seqs a window: no event cut in two
            last = min(after + SYNC_CHUNK, upto)
            rows = store._execute(
                store._q(
                    "SELECT seq, item_key FROM events WHERE seq > ? AND seq <= ? "
                    "AND item_key IS NOT NULL UNION ALL SELECT seq, item_key FROM item_events "
                    "WHERE seq > ? AND seq <= ? ORDER BY 1"
                ),
                (after, last, after, last),
            )
            names: dict[str, tuple[str, int]] = {}
            for seq, name in rows:
                _note_name(names, str(name), int(seq))
            self._insert_names(names)

    def _insert_names(self, names: Mapping[str, tuple[str, int]]) -> None:
        if names:
            self.store._executemany(
                self._insert_name, [(n, k, seq) for n, (k, seq) in names.items()]
            )

    # ---- sync ------------------------------------------------------------------------------

    def high_water_mark(self) -> int:
        """Seq of the last ledger event applied (0: none)."""
        return int(self._mark(_HWM)[0][0])

    def behind(self, head: int) -> bool:
        """True when ledger events up to ``head`` may not all be applied yet (sync first)."""
        return head > self._synced

    def sync(self, head: int | None = None) -> int:
        """Apply ledger events newer than the high-water mark, in seq order; how many.

        One query when nothing is new (none when the caller passes the ledger's ``head``
        seq, read along with other data). Several processes may sync one database: each
        chunk is applied in a write transaction that starts by re-reading the mark.
        """
        if head is None:
            rows = self.store._execute(HEAD_SQL)
            head = 0 if rows[0][0] is None else int(rows[0][0])
        if head <= self._synced:
            return 0
        applied = 0
        while True:
            with self.store.write():
                done, hwm = self._apply_chunk()
            applied += done
            self._synced = hwm
            if done < SYNC_CHUNK:
                return applied

    def _apply_chunk(self) -> tuple[int, int]:
        store = self.store
        hwm = self.high_water_mark()
        events = store._execute(
            store._q(
                "SELECT seq, event_json, signer FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
            ),
            (hwm, SYNC_CHUNK),
        )
        if not events:
            return 0, hwm
        parsed = [(int(seq), str(signer), json.loads(text)) for seq, text, signer in events]
        self._write_fold(self._fold(parsed))
        last = parsed[-1][0]
        self._set_mark(_HWM, last)
        return len(events), last

    def apply_appended(self, events: Sequence[tuple[int, str, Mapping[str, Any]]]) -> bool:
        """Fold events just appended, as ``(seq, signer, event)`` in seq order, inside the
        caller's write transaction (the appender's: the fold commits with the append, so
        the verifiers find nothing to sync). True if folded; False, changing nothing, when
        the projection is behind (events before them not applied yet: :meth:`sync` applies
        them all later, as for any appender) or when the events cannot be folded. A
        database error (StoreError) is raised: on PostgreSQL it has aborted the caller's
        transaction, so run this in a :meth:`SqlStore.savepoint`."""
        if not events:
            return True
        first, last = events[0][0], events[-1][0]
        if last - first + 1 != len(events) or self.high_water_mark() != first - 1:
            return False
        try:
            fold = self._fold(events)
        except (ProjectionError, KeyError, TypeError, ValueError):
            return False
        self._write_fold(fold)
        self._set_mark(_HWM, last)
        self._synced = max(self._synced, last)
        return True

    def _fold(
        self, events: Iterable[tuple[int, str, Mapping[str, Any]]]
    ) -> tuple[dict[str, ItemRecord], dict[str, tuple[str, int]]]:
        """The records the events change (read, then folded in order) and the names they
        give items; reads only."""
        parsed: list[tuple[_EventFacts, list[tuple[str, str, str | None]]]] = []
        keys: set[str] = set()
        names: dict[str, tuple[str, int]] = {}
        for seq, signer, event in events:
            items = []
            for name in _names(event):
                found = item_key_of(name)
                if found is not None:
                    items.append(found)
                    if name not in names:
                        names[name] = (found[0], seq)
            parent = event.get("parentID")
            if isinstance(parent, str) and parent:
                _note_name(names, parent, seq)
            if items:
                parsed.append((_facts(seq, signer, event), items))
                keys.update(k for k, _, _ in items)
        records = self._fetch(sorted(keys))
        sites = self._sites() if parsed else frozenset()
        for f, items in parsed:
            for key, serial, prefix in items:
                records[key] = apply_event(records.get(key), key, serial, prefix, f, sites)
        return records, names

    def _write_fold(self, fold: tuple[dict[str, ItemRecord], dict[str, tuple[str, int]]]) -> None:
        records, names = fold
        if records:
            self.store._executemany(self._upsert, [_row(r) for r in records.values()])
        self._insert_names(names)

    def _sites(self) -> frozenset[str]:
        """Organisations registered as sites (who, with the brand, may name a seller)."""
        rows = self.store._execute(
            self.store._q("SELECT org FROM gw_orgs WHERE role = ?"), (OrgRole.SITE.value,)
        )
        return frozenset(str(r[0]) for r in rows)

    # ---- reads -----------------------------------------------------------------------------

    def _fetch(self, keys: Sequence[str]) -> dict[str, ItemRecord]:
        out: dict[str, ItemRecord] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            out.update(self._lookup(keys[start : start + _IN_CHUNK]))
        return out

    def _lookup(self, keys: Sequence[str]) -> dict[str, ItemRecord]:
        if not keys:
            return {}
        if self._pg:
            rows = self.store._execute(
                f"SELECT {_COLUMNS} FROM gw_items WHERE item_key = ANY(%s)", (list(keys),)
            )
        else:
            n = len(keys)
            sql = self._select_sql.get(n)
            if sql is None:
                sql = f"SELECT {_COLUMNS} FROM gw_items WHERE item_key IN ({','.join('?' * n)})"
                if len(self._select_sql) < 1024:
                    self._select_sql[n] = sql
            rows = self.store._execute(sql, keys)
        try:
            return {row[0]: _record(row) for row in rows}
        except (KeyError, TypeError, ValueError) as exc:
            raise ProjectionError(f"gw_items holds a row this code cannot read: {exc}") from exc

    def lookup_with(
        self, meta: str, keys: Sequence[str]
    ) -> tuple[tuple[Any, ...], dict[str, ItemRecord]]:
        """The row of ``meta`` (a one-row SELECT) and the records of ``keys`` (at most 500,
        distinct), read by one statement: one round trip, and one consistent state."""
        n = len(keys)
        if n == 0:  # an empty IN list would scan the table
            return tuple(self.store._execute(meta)[0]), {}
        sql = self._with_sql.get((meta, n))
        if sql is None:
            where = "= ANY(%s)" if self._pg else f"IN ({','.join('?' * n)})"
            sql = f"SELECT m.*, {_I_COLUMNS} FROM ({meta}) AS m LEFT JOIN gw_items AS i "
            sql += f"ON i.item_key {where}"
            if len(self._with_sql) < 1024:
                self._with_sql[(meta, n)] = sql
        rows = self.store._execute(sql, (list(keys),) if self._pg else keys)
        width = len(rows[0]) - _FIELDS
        try:
            records = {row[width]: _record(row, width) for row in rows if row[width] is not None}
        except (KeyError, TypeError, ValueError) as exc:
            raise ProjectionError(f"gw_items holds a row this code cannot read: {exc}") from exc
        return tuple(rows[0][:width]), records

    def lookup_many(self, keys: Sequence[str]) -> dict[str, ItemRecord]:
        """Records of the items among ``keys`` the ledger knows (one query per 500 keys)."""
        unique = list(dict.fromkeys(keys))
        if len(unique) <= _IN_CHUNK:
            return self._lookup(unique)
        return self._fetch(unique)

    def lookup(self, key: str) -> ItemRecord | None:
        """One item's record, None if the ledger never named it."""
        return self._lookup([key]).get(key)

    def items_of_seller(self, seller_id: str, *, site: str | None = None) -> list[ItemRecord]:
        """The seller's items (last seen at ``site``, if given), by key."""
        store = self.store
        seller_id = seller_id.strip()
        if site is None:
            rows = store._execute(
                store._q(f"SELECT {_COLUMNS} FROM gw_items WHERE seller = ? ORDER BY item_key"),
                (seller_id,),
            )
        else:
            rows = store._execute(
                store._q(
                    f"SELECT {_COLUMNS} FROM gw_items WHERE seller = ? AND last_site = ? "
                    "ORDER BY item_key"
                ),
                (seller_id, site),
            )
        return [_record(r) for r in rows]

    def names_of(self, key: str) -> list[str]:
        """Every name (EPC URI, Digital Link) the ledger gives item ``key``, oldest first."""
        store = self.store
        rows = store._execute(
            store._q("SELECT name FROM gw_item_names WHERE item_key = ? ORDER BY first_seq, name"),
            (key,),
        )
        return [str(r[0]) for r in rows]

    def count(self) -> int:
        """Number of items in the projection."""
        return int(self.store._execute("SELECT COUNT(*) FROM gw_items")[0][0])


def _note_name(names: dict[str, tuple[str, int]], name: str, seq: int) -> None:
    """Remember ``name``'s item key and first seq (once; non-items are skipped)."""
    if name not in names and (found := item_key_of(name)) is not None:
        names[name] = (found[0], seq)


def _names(event: Mapping[str, Any]) -> Iterable[str]:
    for field in _ITEM_LISTS:
        value = event.get(field)
        if isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))
