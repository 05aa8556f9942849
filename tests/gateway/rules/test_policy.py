"""Site policy: defaults for a fulfilment site, overrides, and messages for bad config."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from gateway.policy import DEFAULT_DECISIONS, Policy, Reason
from gatewire.messages import REASON_PATTERN, Decision


def test_every_reason_code_is_a_valid_wire_reason() -> None:
    assert all(re.fullmatch(REASON_PATTERN, str(reason)) for reason in Reason)


def test_empty_policy_has_a_decision_for_every_reason() -> None:
    policy = Policy.model_validate({})
    assert set(policy.decisions) == {str(r) for r in Reason}
    assert policy.decision("ledger.unknown_serial") is Decision.REJECT
    assert policy.decision("seller.suspended") is Decision.HOLD
    assert policy.decision("ledger.unavailable") is Decision.HOLD


def test_override_changes_one_reason_and_keeps_the_others() -> None:
    policy = Policy.model_validate({"decisions": {"vision.suspect": "REJECT"}})
    assert policy.decision("vision.suspect") is Decision.REJECT
    assert policy.decision("ledger.stolen") is Decision(DEFAULT_DECISIONS[Reason.STOLEN])


def test_unknown_reason_code_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as info:
        Policy.model_validate({"decisions": {"vision.sus": "REJECT"}})
    message = str(info.value)
    assert "unknown reason code(s) vision.sus" in message
    assert "vision.suspect" in message
    assert "ledger.unknown_serial" in message


def test_pass_is_no_decision_a_reason_can_have() -> None:
    with pytest.raises(ValidationError, match="'REJECT' or 'HOLD'"):
        Policy.model_validate({"decisions": {"ledger.stolen": "PASS"}})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"inspection": {"base_rate": 1.5}}, "less than or equal to 1"),
        ({"inspection": {"base_rat": 0.1}}, "Extra inputs are not permitted"),
        ({"min_travel_hours": -1}, "greater than or equal to 0"),
        ({"expiry": 3}, "Extra inputs are not permitted"),
    ],
)
def test_bad_values_and_unknown_keys_are_refused(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Policy.model_validate(section)


def test_policy_is_frozen() -> None:
    policy = Policy()
    with pytest.raises(ValidationError):
        policy.min_travel_hours = 1
