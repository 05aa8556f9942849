"""Decision fusion: every input can only make the decision stricter; PASS needs them all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.assembly import READ_MISMATCH, READ_NONE, AssembledItem
from edge_agent.decision import (
    INSPECTION_REQUESTED,
    POLICY_NO_ID,
    POLICY_VISION_SUSPECT,
    POLICY_VISION_UNREADABLE,
    VERIFY_MISSING,
    VISION_ID_MISMATCH,
    VISION_ID_UNREAD,
    VISION_MISSING,
    VerifyOutcome,
    VerifyStatus,
    fuse,
)
from edge_agent.profile import DecisionPolicy
from edge_agent.vision.checker import VisionResult
from gatewire.item import CanonicalItemId
from gatewire.messages import Decision, ReadSource, VisionVerdict
from tests.edge_agent.conftest import item_id

PASS, REJECT, HOLD = Decision.PASS, Decision.REJECT, Decision.HOLD
GENUINE = VisionResult(VisionVerdict.GENUINE, 0.98)
SUSPECT = VisionResult(VisionVerdict.SUSPECT, 0.1, ("label_model",))
UNREADABLE = VisionResult(VisionVerdict.UNREADABLE, reasons=("no_label",))
DEFAULT = DecisionPolicy()


def assembled(
    item: CanonicalItemId | None = None,
    *,
    also_read: tuple[CanonicalItemId, ...] = (),
    reasons: tuple[str, ...] = (),
    no_id: bool = False,
) -> AssembledItem:
    """A closed window that read ``item`` (default: one good ID) by barcode."""
    return AssembledItem(
        window_id="w1",
        opened_at=10.0,
        closed_at=10.1,
        trigger_ts=10.0,
        item=None if no_id else (item or item_id("ABC123")),
        sources=() if no_id else (ReadSource.BARCODE,),
        also_read=also_read,
        reasons=reasons,
        frames=(),
        reads=(),
        invalid_reads=0,
    )


def answered(decision: Decision, *reasons: str, inspect: bool = False) -> VerifyOutcome:
    return VerifyOutcome(VerifyStatus.ANSWERED, decision, reasons or ("ledger.ok",), inspect)


MISMATCHED = assembled(also_read=(item_id("ZZZ999"),), reasons=(READ_MISMATCH,))
NO_ID = assembled(no_id=True, reasons=(READ_NONE,))

# (case, item, verify, vision, policy, vision_enabled, decision, reasons that must be there)
CASES = [
    ("all good", assembled(), answered(PASS), GENUINE, DEFAULT, True, PASS, ["ledger.ok"]),
    ("no camera at gate", assembled(), answered(PASS), None, DEFAULT, False, PASS, []),
    ("gateway reject", assembled(), answered(REJECT, "ledger.unknown_serial"), GENUINE,
     DEFAULT, True, REJECT, ["ledger.unknown_serial"]),
    ("gateway hold", assembled(), answered(HOLD, "ledger.quarantined"), GENUINE, DEFAULT,
     True, HOLD, ["ledger.quarantined"]),
    ("reject beats hold policy", assembled(), answered(REJECT, "seller.suspended"),
     UNREADABLE, DEFAULT, True, REJECT, ["seller.suspended", POLICY_VISION_UNREADABLE]),
    ("timeout", assembled(), VerifyOutcome(VerifyStatus.TIMEOUT), GENUINE, DEFAULT, True,
     HOLD, ["verify.timeout"]),
    ("error reply", assembled(), VerifyOutcome(VerifyStatus.ERROR, reasons=("error.internal",)),
     GENUINE, DEFAULT, True, HOLD, ["verify.error", "error.internal"]),
    ("offline", assembled(), VerifyOutcome(VerifyStatus.OFFLINE), GENUINE, DEFAULT, True, HOLD,
     ["verify.offline"]),
    ("answered without decision", assembled(), VerifyOutcome(VerifyStatus.ANSWERED), GENUINE,
     DEFAULT, True, HOLD, ["verify.error"]),
    ("no outcome", assembled(), None, GENUINE, DEFAULT, True, HOLD, [VERIFY_MISSING]),
    ("no id, default hold", NO_ID, None, None, DEFAULT, True, HOLD, [POLICY_NO_ID, READ_NONE]),
    ("no id, site rejects", NO_ID, None, GENUINE, DecisionPolicy(no_id="REJECT"), True, REJECT,
     [POLICY_NO_ID]),
    ("vision suspect rejects", assembled(), answered(PASS), SUSPECT, DEFAULT, True, REJECT,
     [POLICY_VISION_SUSPECT, "vision.suspect"]),
    ("vision suspect held", assembled(), answered(PASS), SUSPECT,
     DecisionPolicy(vision_suspect="HOLD"), True, HOLD, [POLICY_VISION_SUSPECT]),
    ("vision unreadable", assembled(), answered(PASS), UNREADABLE, DEFAULT, True, HOLD,
     [POLICY_VISION_UNREADABLE, "vision.unreadable"]),
    ("vision missing", assembled(), answered(PASS), None, DEFAULT, True, HOLD,
     [POLICY_VISION_UNREADABLE, VISION_MISSING]),
    ("suspect without camera still counts", assembled(), answered(PASS), SUSPECT, DEFAULT,
     False, REJECT, [POLICY_VISION_SUSPECT]),
    ("read mismatch", MISMATCHED, answered(PASS), GENUINE, DEFAULT, True, HOLD, [READ_MISMATCH]),
    ("inspection honoured", assembled(), answered(PASS, inspect=True), GENUINE, DEFAULT, True,
     HOLD, [INSPECTION_REQUESTED, "ledger.ok"]),
    ("inspection not honoured", assembled(), answered(PASS, inspect=True), GENUINE,
     DecisionPolicy(honour_inspection=False), True, PASS, ["ledger.ok"]),
    ("inspection on a reject", assembled(), answered(REJECT, "ledger.recalled", inspect=True),
     GENUINE, DEFAULT, True, REJECT, ["ledger.recalled", INSPECTION_REQUESTED]),
    ("assembly notes kept", assembled(reasons=("window.late_trigger",)), answered(PASS),
     GENUINE, DEFAULT, True, PASS, ["window.late_trigger"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("item", "verify", "vision", "policy", "vision_enabled", "decision", "reasons"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_fusion_table(
    item: AssembledItem,
    verify: VerifyOutcome | None,
    vision: VisionResult | None,
    policy: DecisionPolicy,
    vision_enabled: bool,
    decision: Decision,
    reasons: list[str],
) -> None:
    fused = fuse(item, verify, vision, policy, vision_enabled=vision_enabled)
    assert fused.decision is decision
    assert [r for r in fused.reasons if r in reasons] == reasons  # present, in this order
    assert len(fused.reasons) == len(set(fused.reasons))


def test_reasons_of_the_deciding_input_come_first() -> None:
    fused = fuse(assembled(), answered(REJECT, "ledger.cloned"), UNREADABLE, DEFAULT,
                 vision_enabled=True)  # fmt: skip
    assert fused.reasons[0] == "ledger.cloned"


def test_inspect_flag_only_for_honoured_trustworthy_requests() -> None:
    policy_off = DecisionPolicy(honour_inspection=False)
    assert fuse(assembled(), answered(PASS, inspect=True), GENUINE, DEFAULT,
                vision_enabled=True).inspect  # fmt: skip
    assert not fuse(assembled(), answered(PASS, inspect=True), GENUINE, policy_off,
                    vision_enabled=True).inspect  # fmt: skip
    untrusted = VerifyOutcome(VerifyStatus.TIMEOUT, inspect=True)
    assert not fuse(assembled(), untrusted, GENUINE, DEFAULT, vision_enabled=True).inspect


def test_reasons_are_capped_at_32() -> None:
    many = tuple(f"rule.r{i}" for i in range(40))
    fused = fuse(assembled(), answered(HOLD, *many), SUSPECT, DEFAULT, vision_enabled=True)
    assert len(fused.reasons) == 32


# --- property: PASS only with everything in order ----------------------------------------

_serials = st.sampled_from(["ABC123", "ZZZ999"])
_items = st.builds(
    lambda no_id, others, extra: assembled(
        no_id=no_id,
        also_read=tuple(item_id(s) for s in others),
        reasons=((READ_NONE,) if no_id else ()) + ((READ_MISMATCH,) if others else ()) + extra,
    ),
    st.booleans(),
    st.lists(_serials, max_size=2),
    st.sampled_from([(), ("window.late_trigger",), (READ_MISMATCH,)]),
)
_outcomes = st.none() | st.builds(
    VerifyOutcome,
    st.sampled_from(VerifyStatus),
    st.none() | st.sampled_from(Decision),
    st.just(("ledger.ok",)),
    st.booleans(),
)
_visions = st.none() | st.builds(VisionResult, st.sampled_from(VisionVerdict), st.none())
_policies = st.builds(
    DecisionPolicy,
    vision_suspect=st.sampled_from(["REJECT", "HOLD"]),
    vision_unreadable=st.sampled_from(["REJECT", "HOLD"]),
    no_id=st.sampled_from(["REJECT", "HOLD"]),
    honour_inspection=st.booleans(),
)


@given(_items, _outcomes, _visions, _policies, st.booleans())
def test_never_pass_without_gateway_pass_genuine_label_and_one_id(
    item: AssembledItem,
    verify: VerifyOutcome | None,
    vision: VisionResult | None,
    policy: DecisionPolicy,
    vision_enabled: bool,
) -> None:
    fused = fuse(item, verify, vision, policy, vision_enabled=vision_enabled)
    assert fused.reasons, "every decision carries its reasons"
    if fused.decision is not PASS:
        return
    assert verify is not None
    assert verify.status is VerifyStatus.ANSWERED
    assert verify.decision is PASS
    if vision_enabled or vision is not None:
        assert vision is not None
        assert vision.verdict is VisionVerdict.GENUINE
    assert item.item is not None
    assert not item.also_read
    assert READ_MISMATCH not in item.reasons
    assert not (verify.inspect and policy.honour_inspection)


@given(_items, _outcomes, _visions, _policies, st.booleans())
def test_gateway_reject_always_rejects(
    item: AssembledItem,
    verify: VerifyOutcome | None,
    vision: VisionResult | None,
    policy: DecisionPolicy,
    vision_enabled: bool,
) -> None:
    if verify is None or verify.status is not VerifyStatus.ANSWERED:
        return
    reject = VerifyOutcome(VerifyStatus.ANSWERED, REJECT, ("ledger.cloned",), verify.inspect)
    fused = fuse(item, reject, vision, policy, vision_enabled=vision_enabled)
    assert fused.decision is REJECT


def _label(
    item: CanonicalItemId | None, verdict: VisionVerdict = VisionVerdict.GENUINE
) -> VisionResult:
    """A label check result whose DataMatrix read ``item`` (bracketed HRI, as zxing gives it)."""
    text = None if item is None else f"(01){item.gtin}(21){item.serial}"
    return VisionResult(verdict, 0.97, (), text)


def test_a_genuine_label_of_this_item_lets_a_gateway_pass_through() -> None:
    item = item_id("ABC123")
    fused = fuse(
        assembled(item),
        answered(PASS),
        _label(item),
        DEFAULT,
        vision_enabled=True,
        label_id_required=True,
    )
    assert fused.decision is PASS


def test_a_genuine_label_naming_another_item_holds_the_item() -> None:
    """The camera judged a neighbour's label: its verdict says nothing about this item."""
    fused = fuse(
        assembled(item_id("ABC123")),
        answered(PASS),
        _label(item_id("OTHER9")),
        DEFAULT,
        vision_enabled=True,
    )
    assert fused.decision is HOLD
    assert VISION_ID_MISMATCH in fused.reasons


@pytest.mark.parametrize(("required", "expected"), [(True, HOLD), (False, PASS)])
def test_an_unread_label_id_holds_only_where_the_gate_expects_one(
    required: bool, expected: Decision
) -> None:
    fused = fuse(
        assembled(item_id("ABC123")),
        answered(PASS),
        _label(None),
        DEFAULT,
        vision_enabled=True,
        label_id_required=required,
    )
    assert fused.decision is expected
    assert (VISION_ID_UNREAD in fused.reasons) is required
