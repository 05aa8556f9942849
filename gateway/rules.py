"""The counterfeit rules: PASS, REJECT or HOLD for each item a gate asks about.

:class:`Verifier` answers from the item projection (kept in step with the ledger before
every call) and from registry data (prefix owners, recalls, sellers) cached until the
registry's version changes. Each rule that fires adds a reason code
(:class:`gateway.policy.Reason`); the site policy says whether it rejects or holds, and the
strongest decision wins. An item without a trustworthy verdict comes back
``ledger.unavailable`` (HOLD, or REJECT by policy), never PASS. The table of rules is in
``docs/rules.md``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from gateway.inspection import (
    RiskFacts,
    inspection_rate,
    sampling_key,
    seller_age_days,
    should_inspect,
)
from gateway.items import HEAD_SQL, ItemProjection, ItemRecord, ItemStatus
from gateway.ledger.store import SqlStore
from gateway.policy import OK, REASON_RANK, Policy, Reason
from gateway.registry import Registry, Seller, SellerStatus
from gateway.seller_notes import SellerNotes, record_seller_notes
from gatewire.item import CanonicalItemId
from gatewire.messages import Decision, VisionVerdict

__all__ = ["ItemFacts", "Outcome", "Verifier"]

log = logging.getLogger(__name__)

#: How long a seller's recent-reject count is reused before it is asked again (seconds).
REJECTS_TTL_S: Final = 10.0
_GONE: Final = frozenset({ItemStatus.SOLD, ItemStatus.DECOMMISSIONED, ItemStatus.DESTROYED})
_STATUS_REASON: Final = {
    ItemStatus.STOLEN: Reason.STOLEN,
    ItemStatus.RECALLED: Reason.RECALLED,
    ItemStatus.QUARANTINED: Reason.QUARANTINED,
}


class ItemFacts(Protocol):
    """What a gate tells about one item (``VerifyRequest`` and ``BatchItem`` fit)."""

    @property
    def item(self) -> CanonicalItemId: ...
    @property
    def vision_verdict(self) -> VisionVerdict | None: ...
    @property
    def vision_score(self) -> float | None: ...
    @property
    def seller(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verifier's answer for one item."""

    decision: Decision
    reasons: tuple[str, ...]
    """Reason codes, most important first; ``("ledger.ok",)`` for a PASS."""
    inspect: bool
    """Pull this (passing) item for random or risk-based manual inspection."""
    ledger_state: str | None
    """The item's status in the ledger (``unknown`` if never seen; None if unreadable)."""


#: The ledger's head seq and the registry's version, as one row.
_FRESH_SQL: Final = (
    f"SELECT ({HEAD_SQL}) AS head, (SELECT value FROM gw_meta WHERE key = 'version') AS version"
)
#: Item records read along with them (the projection's IN-list chunk).
_ONE_READ: Final = 500
_NO_READS: Final[tuple[CanonicalItemId, ...]] = ()


def clean_seller(seller: str | None) -> str | None:
    """A seller ID as the registry keeps it (stripped); None for none or blank."""
    if seller is None:
        return None
    seller = seller.strip()
    return seller or None


def _unavailable(policy: Policy) -> Outcome:
    """The outcome of an item without a trustworthy verdict: HOLD or REJECT, never PASS."""
    decision = policy.decision(Reason.LEDGER_UNAVAILABLE)
    if decision not in (Decision.HOLD, Decision.REJECT):  # the policy model allows no other
        decision = Decision.HOLD
    return Outcome(decision, (Reason.LEDGER_UNAVAILABLE.value,), False, None)


def _lots(
    item: CanonicalItemId, reads: Sequence[CanonicalItemId], rec: ItemRecord | None
) -> set[str]:
    """Every batch/lot known for the item: the read, the other reads, the ledger's."""
    lots = {r.batch for r in reads if r.batch is not None}
    if item.batch is not None:
        lots.add(item.batch)
    if rec is not None and rec.batch is not None:
        lots.add(rec.batch)
    return lots


def _earliest_expiry(
    item: CanonicalItemId, reads: Sequence[CanonicalItemId], rec: ItemRecord | None
) -> dt.date | None:
    """The earliest expiry date any read or the ledger gives (None: none does)."""
    dates = [r.expiry for r in reads if r.expiry is not None]
    if item.expiry is not None:
        dates.append(item.expiry)
    if rec is not None and rec.expiry is not None:
        dates.append(rec.expiry)
    return min(dates) if dates else None


def _differs_from_ledger(
    item: CanonicalItemId, reads: Sequence[CanonicalItemId], rec: ItemRecord
) -> bool:
    """True when a read's batch or expiry contradicts the brand's commissioning data."""
    for read in (item, *reads):
        if rec.batch is not None and read.batch is not None and read.batch != rec.batch:
            return True
        if rec.expiry is not None and read.expiry is not None and read.expiry != rec.expiry:
            return True
    return False


def _reads_disagree(item: CanonicalItemId, others: Iterable[CanonicalItemId]) -> bool:
    """True when another read of the same item (barcode vs RFID) names something else."""
    for other in others:
        if other.gtin != item.gtin:
            return True
        for a, b in (
            (item.serial, other.serial),
            (item.batch, other.batch),
            (item.expiry, other.expiry),
        ):
            if a is not None and b is not None and a != b:
                return True
    return False


class Verifier:
    """Verifies items for one site's gates; one per worker (not thread-safe).

    ``site`` (and any ``aliases``) name this site as the ledger does: the organisation that
    signs its gate events, or the SGLN of its bizLocation. An item last seen at one of
    these is "here" (already-shipped, already-received, stock-elsewhere and travel rules).
    ``inbound`` tells whether a gate is an inbound gate (its PASS means receiving); without
    it the verifier cannot tell, and the already-received rule stays off.
    """

    def __init__(
        self,
        store: SqlStore,
        policy: Policy,
        *,
        site: str,
        inspection_secret: bytes,
        aliases: Iterable[str] = (),
        inbound: Callable[[str], bool] | None = None,
        notes: SellerNotes | None = None,
    ) -> None:
        self.store = store
        self.notes = notes
        """Writes the seller bookkeeping off the reply path; None: written inline."""
        self.policy = policy
        self.site = site
        self.projection = ItemProjection(store)
        self.registry = Registry(store)
        self._here = frozenset({site, *aliases})
        self._inbound = inbound
        self._unavailable = _unavailable(policy)
        self._secret = sampling_key(bytes(inspection_secret))
        self._rejecting = frozenset(
            code for code, decision in policy.decisions.items() if decision == "REJECT"
        )
        self._travel_s = policy.min_travel_hours * 3600.0
        self._anomaly_below = policy.inspection.vision_anomaly_below
        self._version = -1
        self._prefix_owner: dict[str, str] = {}
        self._gtin_owner: dict[str, str | None] = {}
        self._recalls: dict[str, frozenset[str | None]] = {}
        self._sellers: dict[str, Seller] = {}
        self._suspended: frozenset[str | None] = frozenset()
        self._passed: dict[tuple[bool, str], Outcome] = {}
        self._rejects: dict[str, tuple[float, int]] = {}

    # ---- registry cache --------------------------------------------------------------------

    def _read(self, keys: Sequence[str]) -> tuple[dict[str, ItemRecord], int]:
        """The records of ``keys`` as of the ledger's head, and the registry version.

        One statement reads the ledger's last seq if the projection has not applied it
        (``HEAD_SQL``: NULL when it has, as after the ingest's own fold), the version (the
        row ``Registry.version()`` reads, the verifier's reload signal) and up to 500
        records: one round trip per request on PostgreSQL. Only when events are unapplied
        (appended by the API, or by an appender whose fold was skipped) is the projection
        synced and read again: a write transaction, the one write before a verdict.
        """
        unique = list(dict.fromkeys(keys))
        meta, records = self.projection.lookup_with(_FRESH_SQL, unique[:_ONE_READ])
        if meta[1] is None:
            raise RuntimeError("registry version row is missing (gw_meta)")
        head, version = (0 if meta[0] is None else int(meta[0])), int(meta[1])
        if self.projection.behind(head):
            self.projection.sync(head)
            return self.projection.lookup_many(unique), version
        if len(unique) > _ONE_READ:
            records.update(self.projection.lookup_many(unique[_ONE_READ:]))
        return records, version

    def _refresh_registry(self, version: int) -> None:
        if version == self._version:
            return
        owners = self.registry.prefix_owners()
        recalls: dict[str, set[str | None]] = {}
        for recall in self.registry.recalls():
            recalls.setdefault(recall.gtin, set()).add(recall.batch)
        sellers = {s.seller_id: s for s in self.registry.sellers()}
        self._prefix_owner = owners
        self._gtin_owner = {}
        self._recalls = {gtin: frozenset(batches) for gtin, batches in recalls.items()}
        self._sellers = sellers
        self._suspended = frozenset(
            s.seller_id for s in sellers.values() if s.status is SellerStatus.SUSPENDED
        )
        self._version = version

    def _owner_of_gtin(self, gtin: str) -> str | None:
        """The org owning the longest registered prefix of the GTIN (cached)."""
        try:
            return self._gtin_owner[gtin]
        except KeyError:
            pass
        owners = self._prefix_owner
        owner = next(
            (owners[p] for n in range(12, 5, -1) if (p := gtin[1 : 1 + n]) in owners), None
        )
        if len(self._gtin_owner) > 100_000:
            self._gtin_owner.clear()
        self._gtin_owner[gtin] = owner
        return owner

    def _recent_rejects(self, seller_id: str, now: float) -> int:
        clock = time.monotonic()
        cached = self._rejects.get(seller_id)
        if cached is not None and cached[0] > clock:
            return cached[1]
        since = now - self.policy.inspection.recent_rejects_hours * 3600.0
        count = self.registry.recent_rejects(seller_id, since)
        if len(self._rejects) > 10_000:
            self._rejects.clear()
        self._rejects[seller_id] = (clock + REJECTS_TTL_S, count)
        return count

    # ---- verification ----------------------------------------------------------------------

    def verify(self, facts: ItemFacts, *, gate: str, now: float) -> Outcome:
        """One item (see :meth:`verify_many`)."""
        return self.verify_many([facts], gate=gate, now=now)[0]

    def verify_many(self, facts: Sequence[ItemFacts], *, gate: str, now: float) -> list[Outcome]:
        """One outcome per item, same order. ``now`` is the decision time (epoch seconds).

        Brings the projection up to date first, reads every item in one query, then
        applies the rules in memory. When the projection or registry cannot be read,
        every item comes back ``ledger.unavailable`` (HOLD, or REJECT if the policy says
        so; never PASS). An item named twice in one batch is held (``read.duplicate``).
        """
        if not facts:
            return []
        keys = [f.item.key for f in facts]
        try:
            records, version = self._read(keys)
            self._refresh_registry(version)
        except Exception:
            log.exception("verification of %d item(s) from gate %s failed closed", len(facts), gate)
            return [self._unavailable] * len(facts)
        today = dt.datetime.fromtimestamp(now, dt.UTC).date().toordinal()
        inbound = self._inbound is not None and self._inbound(gate)
        batch = _Batch(now, today + self.policy.expiry_min_days_left, inbound, _twice(keys))
        out: list[Outcome] = []
        rejected: list[str] = []
        unseen: set[str] = set()
        get = records.get
        for f, key in zip(facts, keys, strict=True):
            try:
                outcome, seller = self._evaluate(f, key, get(key), batch)
            except Exception:
                log.exception("rules failed for item %s; held", key)
                outcome, seller = self._unavailable, None
            out.append(outcome)
            if seller is not None:
                if outcome.decision is Decision.REJECT:
                    rejected.append(seller)
                if seller not in self._sellers:
                    unseen.add(seller)
        if rejected or unseen:
            self._note(rejected, unseen, now)
        return out

    def _note(self, rejected: list[str], unseen: set[str], now: float) -> None:
        """Learn or register first-seen sellers and count REJECTs per seller.

        Neither bumps the registry version (no worker reloads the registry for them):
        a seller registered by another worker is read here by ID, once. Handed to
        :attr:`notes`, a seller stays unregistered here (new: the highest rate) until read
        back, and the REJECTs are added to the cached recent count meanwhile.
        """
        handed_off = False
        try:
            self._learn_sellers(unseen)
            missing = sorted(s for s in unseen if s not in self._sellers)
            if missing or rejected:
                handed_off = self._record(missing, rejected, now)
        except Exception:  # the verdicts stand; only the bookkeeping is lost
            log.exception("could not record seller outcomes")
        for seller, count in Counter(rejected).items():
            if not handed_off:
                self._rejects.pop(seller, None)  # read again, with this REJECT
                continue
            try:
                recent = self._recent_rejects(seller, now)
            except Exception:
                log.exception("could not read the recent rejects of seller %.80r", seller)
                continue
            self._rejects[seller] = (self._rejects[seller][0], recent + count)

    def _learn_sellers(self, ids: Iterable[str]) -> None:
        """Add sellers the registry knows (registered since the last reload) to the cache."""
        for seller in self.registry.sellers_named(ids):
            self._sellers[seller.seller_id] = seller
            if seller.status is SellerStatus.SUSPENDED:
                self._suspended = self._suspended | {seller.seller_id}

    def _record(self, missing: list[str], rejected: list[str], now: float) -> bool:
        """Register ``missing`` sellers and note ``rejected`` REJECTs: handed to the seller
        notes' thread when there is one (off the reply path: True), else written here in
        one transaction (False)."""
        if self.notes is not None and self.notes.submit(missing, rejected, now):
            return True
        for seller in record_seller_notes(self.registry, missing, rejected, now):
            self._sellers[seller.seller_id] = seller
        return False

    def _rate(self, seller: str | None, vision_score: float | None, batch: _Batch) -> float:
        """The item's inspection rate; per seller and vision class, worked out once a batch.

        An item without a seller counts as one of a seller not known yet (new-seller rate).
        """
        anomalous = vision_score is not None and vision_score < self._anomaly_below
        cached = batch.rates.get((seller, anomalous))
        if cached is not None:
            return cached
        if seller is None:
            age, rejects = None, 0
        else:
            known = self._sellers.get(seller)
            age = 0.0 if known is None else seller_age_days(known.first_seen, batch.now)
            rejects = self._recent_rejects(seller, batch.now)
        rate = inspection_rate(self.policy.inspection, RiskFacts(age, rejects, vision_score))
        batch.rates[(seller, anomalous)] = rate
        return rate

    def _ledger_reasons(
        self,
        rec: ItemRecord,
        reads: Sequence[CanonicalItemId],
        item: CanonicalItemId,
        batch: _Batch,
    ) -> list[Reason]:
        """Reasons the item's ledger record gives (ownership, life cycle, travel, seller)."""
        reasons: list[Reason] = []
        if rec.commissioned_by is None:
            reasons.append(Reason.NOT_COMMISSIONED)
        elif self._owner_of_gtin(rec.gtin) != rec.commissioned_by:
            reasons.append(Reason.PREFIX_NOT_OWNED)
        here = rec.last_site in self._here or rec.last_signer in self._here
        status = rec.status
        if status is ItemStatus.SHIPPED:
            if here:
                reasons.append(Reason.ALREADY_SHIPPED)
        elif status is ItemStatus.RECEIVED:
            if not here:
                reasons.append(Reason.IN_STOCK_ELSEWHERE)
            elif batch.inbound:
                reasons.append(Reason.ALREADY_RECEIVED)
        elif status in _GONE:
            reasons.append(Reason.DECOMMISSIONED)
        elif status in _STATUS_REASON:
            reasons.append(_STATUS_REASON[status])
        if (
            self._travel_s > 0.0
            and rec.last_seen is not None
            and not here
            and batch.now - rec.last_seen < self._travel_s
        ):
            reasons.append(Reason.IMPOSSIBLE_TRAVEL)
        if rec.seller in self._suspended:
            reasons.append(Reason.SELLER_SUSPENDED)
        read_data = reads or item.batch is not None or item.expiry is not None
        ledger_data = rec.batch is not None or rec.expiry is not None
        if read_data and ledger_data and _differs_from_ledger(item, reads, rec):
            reasons.append(Reason.READ_MISMATCH)
        return reasons

    def _evaluate(
        self, f: ItemFacts, key: str, rec: ItemRecord | None, batch: _Batch
    ) -> tuple[Outcome, str | None]:
        item = f.item
        reads: Sequence[CanonicalItemId] = getattr(f, "also_read", None) or _NO_READS
        request_seller = f.seller
        if request_seller is not None:
            request_seller = clean_seller(request_seller)
        seller = request_seller
        if rec is None:
            reasons = [Reason.UNKNOWN_SERIAL]
            state = "unknown"
        else:
            state = rec.status  # a str (StrEnum)
            seller = seller or rec.seller
            reasons = self._ledger_reasons(rec, reads, item, batch)
        if reads and _reads_disagree(item, reads):
            reasons.append(Reason.READ_MISMATCH)
        if key in batch.twice:
            reasons.append(Reason.DUPLICATE_READ)
        recalled = self._recalls.get(item.gtin)
        if recalled is not None:
            lots = _lots(item, reads, rec)
            if None in recalled or not lots.isdisjoint(recalled):
                reasons.append(Reason.RECALLED)
            elif not lots:  # batch recalls, and nothing says which batch this is
                reasons.append(Reason.LOT_UNKNOWN)
        expiry = (
            _earliest_expiry(item, reads, rec)
            if reads or (item.expiry is not None and rec is not None)
            else item.expiry or (rec.expiry if rec is not None else None)
        )
        if expiry is not None and expiry.toordinal() < batch.expiry_limit:
            reasons.append(Reason.EXPIRED)
        if request_seller in self._suspended:
            reasons.append(Reason.SELLER_SUSPENDED)
        if f.vision_verdict is VisionVerdict.SUSPECT:
            reasons.append(Reason.VISION_SUSPECT)
        if reasons:
            if len(reasons) > 1:
                reasons = sorted(set(reasons), key=REASON_RANK.__getitem__)
            rejecting = self._rejecting
            decision = Decision.REJECT if any(r in rejecting for r in reasons) else Decision.HOLD
            return Outcome(decision, tuple(str(r) for r in reasons), False, state), seller
        inspect = should_inspect(self._secret, key, self._rate(seller, f.vision_score, batch))
        passed = self._passed.get((inspect, state))
        if passed is None:
            passed = self._passed[(inspect, state)] = Outcome(Decision.PASS, (OK,), inspect, state)
        return passed, seller


def _twice(keys: Sequence[str]) -> frozenset[str]:
    """Keys named more than once in one batch (a cloned tag read beside its original)."""
    if len(set(keys)) == len(keys):
        return frozenset()
    return frozenset(k for k, n in Counter(keys).items() if n > 1)


@dataclass(slots=True)
class _Batch:
    """What one verify_many call works out once for all its items."""

    now: float
    expiry_limit: int
    """Ordinal of the first day an item's expiry date must reach."""
    inbound: bool
    """The asking gate is an inbound gate."""
    twice: frozenset[str]
    """Item keys the batch names more than once."""
    rates: dict[tuple[str | None, bool], float] = field(default_factory=dict)
