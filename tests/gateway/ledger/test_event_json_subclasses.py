"""The stored text of events holding subclasses of the JSON types is what the standard
library's strict encoder writes, and the event's ID is computed from what is stored (so
the audit of an untouched ledger passes); types only orjson writes are refused by the CBV
event hash."""

from __future__ import annotations

import collections
import enum
import json
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gateway.ledger.event_json import encode_event
from gateway.ledger.ledger import Ledger, LedgerError
from gateway.ledger.signing import OrgKey
from tests.gateway.ledger.ledger_support import BRAND, event


def _stdlib(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class _ShownDict(dict[str, Any]):
    """A dict whose items() shows other values than it stores (e.g. a multi-value dict that
    stores lists and shows each key's first value, like werkzeug's MultiDict)."""

    def items(self) -> Any:
        return [(k, v[0] if isinstance(v, list) else v) for k, v in super().items()]


class _ShownList(list[Any]):
    """A list that iterates over other values than it stores."""

    def __iter__(self) -> Iterator[Any]:
        return iter([str(v) for v in super().__iter__()])


class _Colour(enum.Enum):
    RED = "red"


SUBCLASSES = {
    "dict-items": {"pg:x": _ShownDict(a=["first", "second"])},
    "list-iter": {"pg:x": _ShownList([1, 2])},
}


@pytest.mark.parametrize("value", SUBCLASSES.values(), ids=SUBCLASSES.keys())
def test_a_container_subclass_is_written_as_the_standard_library_writes_it(value: Any) -> None:
    # orjson reads a dict's or list's storage; json.dumps asks items() / iterates it, as the
    # event hash does: fix with orjson.OPT_PASSTHROUGH_SUBCLASS (then the stdlib decides).
    assert encode_event(value) == (_stdlib(value), False)


def test_an_ordered_dict_is_written_with_the_same_members() -> None:
    # orjson writes the dict's storage order, json.dumps the OrderedDict's: same object.
    ordered = collections.OrderedDict(a=1, b=2)
    ordered.move_to_end("a")
    assert json.loads(encode_event({"pg:x": ordered})[0]) == {"pg:x": {"a": 1, "b": 2}}


class _ShownFloat(float):
    def __str__(self) -> str:
        return "2.5"


class _ShownInt(int):
    def __str__(self) -> str:
        return "7"


APPENDED = SUBCLASSES | {"float-str": {"pg:x": _ShownFloat(1.5)}, "int-str": {"pg:x": _ShownInt(3)}}


@pytest.mark.parametrize("extra", APPENDED.values(), ids=APPENDED.keys())
def test_an_appended_subclass_event_passes_the_audit(
    ledger_url: str, keys: dict[str, OrgKey], extra: dict[str, Any]
) -> None:
    # The CBV hash renders what items() / str() show; the text holds what the encoder
    # writes. The ID is computed from the text read back, as the audit computes it.
    with Ledger.open(ledger_url, [keys[BRAND]], block_size=4) as ledger:
        ledger.append(event(1) | extra, BRAND)
        ledger.seal()
        report = ledger.audit(strict=True)
        assert report.ok, report.summary()


NOT_JSON = {
    "enum": _Colour.RED,
    "uuid": uuid.UUID(int=1),
    "fragment-broken": orjson.Fragment(b"[1,2"),
    "fragment-nan": orjson.Fragment(b"NaN"),
}


@pytest.mark.parametrize("value", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_the_ledger_refuses_them_anyway_through_the_cbv_hash(
    ledger_url: str, keys: dict[str, OrgKey], value: Any
) -> None:
    with Ledger.open(ledger_url, [keys[BRAND]], block_size=4) as ledger:
        with pytest.raises(LedgerError, match="event hash"):
            ledger.append(event(1) | {"pg:x": value}, BRAND)
        assert ledger.store.event_count() == 0
