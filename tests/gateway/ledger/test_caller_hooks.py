"""What a caller's event hash or item_keys_fn returns is checked like the event itself:
IDs neither backend can store as given (NUL, lone surrogates, not strings) are refused as
bad input on both alike, naming the event, and nothing is stored; looking such an ID up
finds nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from gateway.ledger.ledger import Ledger, LedgerError
from gateway.ledger.signing import OrgKey
from tests.gateway.ledger.ledger_support import BRAND, event, fake_event_hash


def _id_with(suffix: str) -> Callable[[Mapping[str, Any]], str]:
    def fn(e: Mapping[str, Any]) -> str:
        return fake_event_hash(e) + suffix

    return fn


@pytest.mark.parametrize("suffix", ["\x00", "\ud800"], ids=["nul", "surrogate"])
def test_an_event_id_the_database_cannot_store_is_refused_alike_and_nothing_stored(
    ledger_url: str, keys: dict[str, OrgKey], suffix: str
) -> None:
    with Ledger.open(ledger_url, keys.values(), event_hash=_id_with(suffix)) as ledger:
        with pytest.raises(LedgerError, match="event 0"):
            ledger.append(event(1), BRAND)
        assert ledger.store.event_count() == 0


def test_an_event_id_that_is_not_a_string_is_refused(
    ledger_url: str, keys: dict[str, OrgKey]
) -> None:
    with (
        Ledger.open(ledger_url, keys.values(), event_hash=lambda e: 12345) as ledger,
        pytest.raises(LedgerError, match="event 0"),
    ):
        ledger.append(event(1), BRAND)


def test_an_item_key_with_a_lone_surrogate_from_item_keys_fn_is_refused(
    ledger_url: str, keys: dict[str, OrgKey]
) -> None:
    with Ledger.open(
        ledger_url, keys.values(), event_hash=fake_event_hash, item_keys_fn=lambda e: ["x\udc00"]
    ) as ledger:
        with pytest.raises(LedgerError, match="event 0"):
            ledger.append(event(1), BRAND)
        assert ledger.store.event_count() == 0


def test_item_keys_fn_returning_none_is_refused(ledger_url: str, keys: dict[str, OrgKey]) -> None:
    opened = Ledger.open(
        ledger_url, keys.values(), event_hash=fake_event_hash, item_keys_fn=lambda e: None
    )
    with opened as ledger, pytest.raises(LedgerError, match="event 0"):
        ledger.append(event(1), BRAND)


def test_after_a_bad_event_id_mid_batch_nothing_is_stored_and_the_ledger_goes_on(
    ledger_url: str, keys: dict[str, OrgKey]
) -> None:
    def hash_fn(e: Mapping[str, Any]) -> str:
        return fake_event_hash(e) + ("\ud800" if e["epcList"] == [event(2)["epcList"][0]] else "")

    with Ledger.open(ledger_url, keys.values(), event_hash=hash_fn, block_size=4) as ledger:
        ledger.append(event(1), BRAND)
        with pytest.raises(LedgerError, match="event 1: the event hash gave"):
            ledger.append_batch([event(3), event(2)], BRAND)
        assert ledger.store.event_count() == 1
        assert ledger.append(event(4), BRAND).seq == 2
        assert ledger.audit().ok


@pytest.mark.parametrize("key", ["a\x00b", "x\ud800"], ids=["nul", "surrogate"])
def test_looking_up_an_item_id_no_append_can_store_finds_nothing(ledger: Ledger, key: str) -> None:
    assert ledger.history(key) == []
    assert ledger.item_state(key) is None
    with pytest.raises(LedgerError, match="not in the ledger"):
        ledger.prove(key)


def test_a_caller_item_keys_fn_error_of_any_type_names_the_event(
    ledger_url: str, keys: dict[str, OrgKey]
) -> None:
    def broken(e: Mapping[str, Any]) -> list[str]:
        raise KeyError("epcList")

    opened = Ledger.open(ledger_url, keys.values(), event_hash=fake_event_hash, item_keys_fn=broken)
    with opened as ledger, pytest.raises(LedgerError, match="event 0: cannot compute its item"):
        ledger.append(event(1), BRAND)
