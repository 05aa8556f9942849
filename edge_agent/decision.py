"""Decision fusion: the gateway's verdict, the label check and the site policy → one decision.

Pure logic, no I/O. :func:`fuse` takes what the gate knows about an item (its
:class:`~edge_agent.assembly.AssembledItem`), the outcome of its verification
(:class:`VerifyOutcome`, or None when none was asked or none came), the label check
(:class:`~edge_agent.vision.checker.VisionResult`) and the gate's
:class:`~edge_agent.profile.DecisionPolicy`, and returns PASS, REJECT or HOLD with every
reason code, most decisive first.

Fail closed: PASS needs a trustworthy gateway PASS, a genuine label (or no label check at
the gate) and exactly one canonical item ID. The label's DataMatrix is a third source of
that ID: a label naming another item (the camera saw a neighbour) holds the item, and so
does a label whose DataMatrix could not be read when the gate expects one (the label check
cannot be tied to this item). Every input votes a decision; the most severe
vote wins (REJECT > HOLD > PASS).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from edge_agent.assembly import READ_MISMATCH, AssembledItem
from edge_agent.profile import DecisionPolicy
from edge_agent.vision.checker import VisionResult
from gatewire.identity import parse_item_id
from gatewire.messages import Decision, VisionVerdict

__all__ = [
    "INSPECTION_REQUESTED",
    "POLICY_NO_ID",
    "POLICY_VISION_SUSPECT",
    "POLICY_VISION_UNREADABLE",
    "VERIFY_MISSING",
    "VISION_ID_MISMATCH",
    "VISION_ID_UNREAD",
    "VISION_MISSING",
    "FusedDecision",
    "VerifyOutcome",
    "VerifyStatus",
    "fuse",
]

POLICY_NO_ID: Final = "policy.no_id"
POLICY_VISION_SUSPECT: Final = "policy.vision_suspect"
POLICY_VISION_UNREADABLE: Final = "policy.vision_unreadable"
INSPECTION_REQUESTED: Final = "inspection.requested"
VERIFY_MISSING: Final = "verify.missing"
"""An item with an ID that has no verification outcome at all."""
VISION_MISSING: Final = "vision.missing"
"""The gate has a label check but no result for this item (handled as unreadable)."""
VISION_ID_MISMATCH: Final = "vision.id_mismatch"
"""The label's DataMatrix names another item than the scanner and tag did."""
VISION_ID_UNREAD: Final = "vision.id_unread"
"""The gate expects the label's DataMatrix and could not read it."""
MAX_REASONS: Final = 32
"""Most reason codes a gate event carries."""

_SEVERITY: Final = {Decision.PASS: 0, Decision.HOLD: 1, Decision.REJECT: 2}


class VerifyStatus(StrEnum):
    """How verification of one item ended; the value is its reason code."""

    ANSWERED = "verify.answered"
    """An authenticated verdict bound to the item's request arrived in time."""
    TIMEOUT = "verify.timeout"
    """No trustworthy verdict by the item's deadline (none, forged, replayed or late)."""
    ERROR = "verify.error"
    """The gateway answered with an error reply."""
    OFFLINE = "verify.offline"
    """No connection to the broker: the request could not be sent or its answer lost."""


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """The verification result of one item, as the verify client delivers it."""

    status: VerifyStatus
    decision: Decision | None = None
    """The gateway's decision; set only when ``status`` is ANSWERED."""
    reasons: tuple[str, ...] = ()
    """The gateway's reason codes (ANSWERED), or ``error.<code>`` (ERROR)."""
    inspect: bool = False
    """The gateway picked the item for random or risk-based inspection."""
    ledger_state: str | None = None
    request_id: str | None = None
    detail: str = ""
    """One line for the log."""

    @property
    def trustworthy(self) -> bool:
        """True for an authenticated, timely verdict of the gateway."""
        return self.status is VerifyStatus.ANSWERED and self.decision is not None


@dataclass(frozen=True, slots=True)
class FusedDecision:
    """What the gate does with the item, why, and whether a person should look at it."""

    decision: Decision
    reasons: tuple[str, ...]
    """Reason codes, most decisive first, without repeats, at most :data:`MAX_REASONS`."""
    inspect: bool
    """Manual inspection requested (an honoured gateway inspection request)."""


def fuse(
    item: AssembledItem,
    verify: VerifyOutcome | None,
    vision: VisionResult | None,
    policy: DecisionPolicy,
    *,
    vision_enabled: bool,
    label_id_required: bool = False,
) -> FusedDecision:
    """Fuse the inputs into one decision; see the module docstring for the rules.

    ``vision_enabled`` says whether the gate has a label check: with one, a missing
    result counts as unreadable; without one, a result given anyway is still used.
    ``label_id_required``: the label check reads the label's DataMatrix, so a genuine
    label verdict counts only when that ID is this item's.
    """
    votes: list[tuple[Decision, tuple[str, ...]]] = []
    votes.extend(_id_votes(item, policy))
    votes.extend(_verify_votes(item, verify))
    votes.extend(_vision_votes(vision, policy, vision_enabled=vision_enabled))
    votes.extend(_label_id_votes(item, vision, required=label_id_required))
    decision = max((d for d, _ in votes), key=_SEVERITY.__getitem__, default=Decision.HOLD)
    inspect = bool(verify is not None and verify.trustworthy and verify.inspect)
    inspect = inspect and policy.honour_inspection
    if inspect:
        votes.append((Decision.HOLD, (INSPECTION_REQUESTED,)))
        if decision is Decision.PASS:
            decision = Decision.HOLD
    ordered = sorted(votes, key=lambda vote: -_SEVERITY[vote[0]])  # stable: input order kept
    reasons = dict.fromkeys(code for _, codes in ordered for code in codes)
    reasons.update(dict.fromkeys(item.reasons))  # assembly notes (window.late_trigger, …)
    return FusedDecision(decision, tuple(reasons)[:MAX_REASONS], inspect)


def _id_votes(
    item: AssembledItem, policy: DecisionPolicy
) -> list[tuple[Decision, tuple[str, ...]]]:
    if item.item is None:
        return [(policy.decision("no_id"), (POLICY_NO_ID, *item.reasons))]
    if item.also_read or READ_MISMATCH in item.reasons:
        return [(Decision.HOLD, (READ_MISMATCH,))]
    return []


def _verify_votes(
    item: AssembledItem, verify: VerifyOutcome | None
) -> list[tuple[Decision, tuple[str, ...]]]:
    if verify is None:
        if item.item is None:
            return []  # nothing to ask; the no-ID vote holds or rejects it
        return [(Decision.HOLD, (VERIFY_MISSING,))]
    if not verify.trustworthy or verify.decision is None:
        status = verify.status
        if status is VerifyStatus.ANSWERED:  # answered without a decision: not trustworthy
            status = VerifyStatus.ERROR
        return [(Decision.HOLD, (status.value, *verify.reasons))]
    return [(verify.decision, verify.reasons)]


def _vision_votes(
    vision: VisionResult | None, policy: DecisionPolicy, *, vision_enabled: bool
) -> list[tuple[Decision, tuple[str, ...]]]:
    if vision is None:
        if not vision_enabled:
            return []
        decision = policy.decision("vision_unreadable")
        return [(decision, (POLICY_VISION_UNREADABLE, VISION_MISSING))]
    if vision.verdict is VisionVerdict.GENUINE:
        return []
    if vision.verdict is VisionVerdict.SUSPECT:
        decision = policy.decision("vision_suspect")
        return [(decision, (POLICY_VISION_SUSPECT, "vision.suspect"))]
    decision = policy.decision("vision_unreadable")
    return [(decision, (POLICY_VISION_UNREADABLE, "vision.unreadable"))]


def _label_id_votes(
    item: AssembledItem, vision: VisionResult | None, *, required: bool
) -> list[tuple[Decision, tuple[str, ...]]]:
    if vision is None or item.item is None:
        return []  # the vision and no-ID votes already hold such items
    if vision.item_id is None:
        return [(Decision.HOLD, (VISION_ID_UNREAD,))] if required else []
    read = parse_item_id(vision.item_id).item
    if read is None or read.key != item.item.key:
        return [(Decision.HOLD, (VISION_ID_MISMATCH,))]
    return []
