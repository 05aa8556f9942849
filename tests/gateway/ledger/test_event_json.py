"""The stored JSON text of an event: what the standard library's strict encoder accepts and
means, whichever encoder wrote it."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ledger.event_json import encode_event
from tests.gateway.ledger.ledger_support import aggregation, epc, event


def _stdlib(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_any_json_value_reads_back_as_itself_and_as_the_standard_library_writes_it(
    value: Any,
) -> None:
    text, _ = encode_event(value)
    assert json.loads(text) == value
    assert json.loads(text) == json.loads(_stdlib(value))


def test_gate_events_are_written_exactly_as_the_standard_library_writes_them() -> None:
    docs = [event(1), event(2, "receiving", "in_progress", t=61), aggregation([epc(1), epc(2)])]
    docs.append(event(3) | {"pg:note": "Prüfung – ok ✓", "pg:score": 0.25, "pg:count": 3})
    for doc in docs:
        assert encode_event(doc) == (_stdlib(doc), True)


@pytest.mark.parametrize(
    "value",
    [
        {"a": math.nan},
        {"a": [1, math.inf]},
        {"a": -math.inf},
        {"a": {1, 2}},
        {"a": datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC)},
        {"a": b"bytes"},
    ],
    ids=["nan", "inf", "-inf", "set", "datetime", "bytes"],
)
def test_what_is_not_json_is_refused(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_event(value)


def test_a_dataclass_is_refused() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    with pytest.raises(TypeError):
        encode_event({"a": Point(1)})


def test_an_object_containing_itself_is_refused() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises((ValueError, RecursionError)):
        encode_event(loop)


@pytest.mark.parametrize(
    "value",
    [
        {"n": 2**80},
        {1: "int key", 2.5: "float key", None: "none key"},
        {"text": "null and NaN are just words here", "none": None},
        {"deep": json.loads("[" * 300 + "]" * 300)},
    ],
    ids=["big-int", "non-string-keys", "null-in-text", "deep-nesting"],
)
def test_what_only_the_standard_library_writes_is_written_as_it_writes_it(value: Any) -> None:
    assert encode_event(value)[0] == _stdlib(value)


@pytest.mark.parametrize("value", [{"a": "x\ud800"}, {"a": "\udfff", "n": 2**80}, {"\ud83d": 1}])
def test_text_that_is_not_unicode_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_event(value)
