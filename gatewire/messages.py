"""Versioned JSON messages between gates and the gateway.

Every message is a JSON object with ``v`` (schema version, 1), ``type`` (the discriminator),
``id`` (this message's id), ``site``, ``gate`` and ``ts`` (UTC epoch seconds as a JSON
number). Replies carry the ``request_id`` and ``request_mac`` of the request they answer, so
correlation works on MQTT 3.1.1 and 5.

:func:`encode` writes a message's *body*: compact JSON of ``v``, ``type``, ``id``, ``ts`` and
the fields that were set explicitly (unset defaults stay off the wire, :func:`wire_object`),
never ``mac``. Authenticated messages travel sealed (:func:`gatewire.auth.seal`): the body
with ``,"mac":"<hex>"}`` in place of its closing brace; a message opened from such a payload
carries that ``mac``. :func:`decode` is strict (no type coercion, no unknown members,
``v``/``id``/``ts`` required) and never raises on bad input: it returns a
:class:`DecodeError` value. It does not authenticate anything. The wire format is
documented in ``docs/protocol.md``.

The gateway's hot path writes reply bodies from templates (:func:`verdict_body`,
:func:`batch_verdict_body`): the same bytes :func:`encode` writes for the model, without
building and validating one.
"""

from __future__ import annotations

import contextlib
import json
import json.encoder
import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gatewire.item import CanonicalItemId
from gatewire.topics import ID_PATTERN

SCHEMA_VERSION: Final = 1
MAX_BATCH: Final = 500
"""Most items in one ``verify_batch_request`` (and results in one ``batch_verdict``)."""
MAX_ALSO_READ: Final = 4
"""Most ids in one item's ``also_read`` (the other sources' reads of the same item)."""
DEFAULT_MAX_PAYLOAD: Final = 256 * 1024
"""Receivers refuse payloads larger than this many bytes (256 KiB) before parsing."""

MESSAGE_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{8,64}$"
MAC_PATTERN: Final = r"^[0-9a-f]{64}$"
REASON_PATTERN: Final = r"^[a-z][a-z0-9_.:-]{0,63}$"
KEY_PATTERN: Final = r"^[a-z0-9_.-]{1,64}$"

_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

MessageId = Annotated[str, Field(pattern=MESSAGE_ID_PATTERN)]
Mac = Annotated[str, Field(pattern=MAC_PATTERN, description="HMAC-SHA256, 64 lowercase hex")]
ReasonCode = Annotated[str, Field(pattern=REASON_PATTERN)]
Timestamp = Annotated[float, Field(ge=0, description="UTC epoch seconds")]
CounterName = Annotated[str, Field(pattern=KEY_PATTERN)]

_MAC_RE: Final = re.compile(MAC_PATTERN)
_ALWAYS_ON_WIRE: Final = ("v", "type", "id", "ts")


@dataclass(frozen=True, slots=True)
class _FromWire:
    """Validation context of :func:`decode`: the message comes from a payload, and ``mac``
    (when not None) is the MAC of the sealed payload whose body is being decoded."""

    mac: str | None


def new_message_id() -> str:
    """A fresh 128-bit random message id (32 hex chars); also serves as the request nonce."""
    return secrets.token_hex(16)


def now_ts() -> float:
    """Current time as message ``ts``: UTC epoch seconds, millisecond resolution."""
    return round(time.time(), 3)


class Decision(StrEnum):
    """What the gate does with the item."""

    PASS = "PASS"
    REJECT = "REJECT"
    HOLD = "HOLD"


class GateKind(StrEnum):
    """What a gate does, which picks the business step of its PASS events."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INSPECTION = "inspection"


class ReadSource(StrEnum):
    """Which gate device saw the item."""

    BARCODE = "barcode"
    RFID = "rfid"
    CAMERA = "camera"


class VisionVerdict(StrEnum):
    """Outcome of the on-gate camera label check."""

    GENUINE = "genuine"
    SUSPECT = "suspect"
    UNREADABLE = "unreadable"


class ErrorCode(StrEnum):
    """Why the gateway could not answer a request with a verdict."""

    MALFORMED = "malformed"
    UNAUTHENTICATED = "unauthenticated"
    STALE = "stale"
    REPLAYED = "replayed"
    UNKNOWN_GATE = "unknown_gate"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"


class _Envelope(BaseModel):
    """Fields every message carries."""

    model_config = _CONFIG

    # v, id and ts have defaults for building messages in Python; decode() requires them.
    v: Literal[1] = Field(default=1, description="schema version; required on the wire")
    type: str = Field(description="message type, the union discriminator")
    id: MessageId = Field(
        default_factory=new_message_id,
        description="this message's id; for requests the correlation id, 128-bit random",
    )
    site: str = Field(pattern=ID_PATTERN, description="site id")
    gate: str = Field(pattern=ID_PATTERN, description="gate id (`gateway` for the gateway)")
    ts: Timestamp = Field(default_factory=now_ts, description="send time, UTC epoch seconds")
    mac: Mac | None = Field(
        default=None,
        validate_default=True,
        description="MAC of the sealed payload this message was opened from (gatewire.auth); "
        "never part of the body",
    )

    @field_validator("v", mode="before")
    @classmethod
    def _v_is_the_integer_1(cls, value: object) -> object:
        if type(value) is not int:  # Literal[1] alone would take true and 1.0
            raise ValueError("v must be the integer 1")
        return value

    @field_validator("mac", mode="after")
    @classmethod
    def _mac_of_the_sealed_payload(cls, value: str | None, info: ValidationInfo) -> str | None:
        context = info.context
        if isinstance(context, _FromWire) and context.mac is not None:
            if value is not None:
                raise ValueError("mac must be the last member of a sealed payload, once")
            return context.mac
        return value

    def model_post_init(self, context: Any, /) -> None:
        """A message built in Python puts its ``v``, ``type``, ``id`` and ``ts`` on the wire
        even when they are defaults; one read from the wire keeps what the payload had."""
        if not isinstance(context, _FromWire):
            self.__pydantic_fields_set__.update(_ALWAYS_ON_WIRE)


class _ItemFacts(BaseModel):
    """What the gate knows about one item when it asks."""

    model_config = _CONFIG

    item: CanonicalItemId = Field(description="canonical item id")
    sources: list[ReadSource] = Field(
        default_factory=list, max_length=3, description="devices that read the item"
    )
    vision_score: float | None = Field(
        default=None, ge=0, le=1, description="label model score, 1 = certainly genuine"
    )
    vision_verdict: VisionVerdict | None = Field(
        default=None, description="outcome of the camera label check"
    )
    seller: str | None = Field(
        default=None, min_length=1, max_length=128, description="seller the item is booked to"
    )
    also_read: list[CanonicalItemId] = Field(
        default_factory=list,
        max_length=MAX_ALSO_READ,
        description="ids the gate's other sources read for the same physical item, when they "
        "differ from `item` (a barcode and a tag that disagree)",
    )


class _Outcome(BaseModel):
    """The gateway's answer for one item."""

    model_config = _CONFIG

    decision: Decision = Field(description="PASS, REJECT or HOLD")
    reasons: list[ReasonCode] = Field(
        default_factory=list, max_length=32, description="reason codes, most important first"
    )
    inspect: bool = Field(default=False, description="pull the item for random/risk inspection")
    ledger_state: str | None = Field(
        default=None, max_length=64, description="item state in the provenance ledger"
    )


class _Reply(BaseModel):
    """Binding of a reply to the request it answers."""

    model_config = _CONFIG

    request_id: MessageId = Field(description="`id` of the request answered")
    request_mac: Mac = Field(description="`mac` of the request answered")


def _check_indices(indices: list[int], what: str) -> None:
    if indices != list(range(len(indices))):
        raise ValueError(f"{what} indices must be 0, 1, 2, … in order")


class VerifyRequest(_ItemFacts, _Envelope):
    """gate → gateway: is this one item genuine?"""

    type: Literal["verify_request"] = "verify_request"


class _Indexed(BaseModel):
    model_config = _CONFIG

    index: int = Field(ge=0, lt=MAX_BATCH, description="position in the batch, from 0")


class BatchItem(_ItemFacts, _Indexed):
    """One item of a batch request."""


class VerifyBatchRequest(_Envelope):
    """gate → gateway: are these items genuine? (a tote or pallet read at once)"""

    type: Literal["verify_batch_request"] = "verify_batch_request"
    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH, description="the items")

    @model_validator(mode="after")
    def _indices_in_order(self) -> Self:
        _check_indices([i.index for i in self.items], "item")
        return self


class Verdict(_Outcome, _Reply, _Envelope):
    """gateway → gate: the answer to one ``verify_request``."""

    type: Literal["verdict"] = "verdict"


class ItemResult(_Outcome, _Indexed):
    """The answer for one item of a batch; ``index`` is that of the request item."""


class BatchVerdict(_Reply, _Envelope):
    """gateway → gate: one result per request item, same order, same count."""

    type: Literal["batch_verdict"] = "batch_verdict"
    results: list[ItemResult] = Field(
        min_length=1, max_length=MAX_BATCH, description="results in request order"
    )

    @model_validator(mode="after")
    def _indices_in_order(self) -> Self:
        _check_indices([r.index for r in self.results], "result")
        return self


class ErrorReply(_Envelope):
    """gateway → gate: a request could not be answered (the gate holds the item)."""

    type: Literal["error"] = "error"
    code: ErrorCode = Field(description="error category")
    detail: str = Field(default="", max_length=256, description="one-line explanation")
    request_id: MessageId | None = Field(default=None, description="request id, if known")
    request_mac: Mac | None = Field(default=None, description="request mac, if known")


class GateEvent(_Envelope):
    """gate → gateway ledger: what happened to an item at the gate."""

    type: Literal["gate_event"] = "gate_event"
    event_id: MessageId = Field(
        description="unique per event, kept across resends; the ledger dedupes on it"
    )
    item: CanonicalItemId = Field(description="canonical item id")
    decision: Decision = Field(description="what the gate did")
    reasons: list[ReasonCode] = Field(default_factory=list, max_length=32, description="why")
    request_id: MessageId | None = Field(default=None, description="the verify request, if any")
    seller: str | None = Field(default=None, min_length=1, max_length=128, description="seller")
    scanned_at: Timestamp = Field(description="photo-eye trigger time")
    decided_at: Timestamp = Field(description="decision time")
    actuated_at: Timestamp | None = Field(default=None, description="diverter time, if fired")
    late: bool = Field(default=False, description="the decision came after the reject point")


class Heartbeat(_Envelope):
    """gate → gateway: liveness, counters and device health."""

    type: Literal["heartbeat"] = "heartbeat"
    uptime_s: float = Field(ge=0, description="seconds since the agent started")
    counters: dict[CounterName, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, max_length=64, description="monotonic counters"
    )
    health: dict[CounterName, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict, max_length=64, description="device name → state (ok, down, …)"
    )


class Availability(_Envelope):
    """Retained ``online`` flag of a gate or gateway; unauthenticated (see protocol.md)."""

    type: Literal["availability"] = "availability"
    online: bool = Field(description="false when published by the last will")
    who: Literal["gate", "gateway"] = Field(description="kind of client")


Message: TypeAlias = Annotated[
    VerifyRequest
    | VerifyBatchRequest
    | Verdict
    | BatchVerdict
    | ErrorReply
    | GateEvent
    | Heartbeat
    | Availability,
    Field(discriminator="type"),
]
"""Any provgate message; ``type`` picks the model."""

MESSAGE_ADAPTER: Final[TypeAdapter[Message]] = TypeAdapter(Message)
_VALIDATE_JSON: Final = MESSAGE_ADAPTER.validator.validate_json
"""The adapter's core validator, called directly (skips TypeAdapter's Python wrapper)."""


class DecodeErrorKind(StrEnum):
    """Category of a decode failure."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A payload that is not a valid message; ``message_id`` is its ``id`` when readable."""

    kind: DecodeErrorKind
    reason: str
    message_id: str | None = None


_NOT_ON_WIRE: Final[set[str]] = {"mac"}


def wire_object(msg: Message) -> dict[str, Any]:
    """The JSON object :func:`encode` writes for ``msg``: ``v``, ``type``, ``id``, ``ts`` and
    every field that was given explicitly (or read from the wire), never ``mac``. Defaults
    left unset stay off the wire."""
    return msg.model_dump(mode="json", exclude_unset=True, exclude=_NOT_ON_WIRE)


class PayloadTooLargeError(ValueError):
    """An encoded message exceeds the payload limit receivers enforce; split the batch."""


def encode(msg: Message, *, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Compact UTF-8 JSON of :func:`wire_object` (the body :func:`gatewire.auth.seal` MACs).

    Raises :class:`PayloadTooLargeError` above ``max_bytes``, since receivers would refuse
    it, and ``ValueError`` for a string that has no UTF-8 form (a lone surrogate).
    """
    payload = msg.model_dump_json(exclude_unset=True, exclude=_NOT_ON_WIRE).encode()
    if len(payload) > max_bytes:
        raise PayloadTooLargeError(f"{msg.type} is {len(payload)} B, limit {max_bytes} B")
    return payload


class OutcomeFields(Protocol):
    """What :func:`verdict_body` and :func:`batch_verdict_body` read of one item's outcome
    (an :class:`ItemResult` or :class:`Verdict` has these, so has a rules engine's result)."""

    @property
    def decision(self) -> Decision: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def inspect(self) -> bool: ...
    @property
    def ledger_state(self) -> str | None: ...


_JSON_STR: Final = json.encoder.encode_basestring  # the C encoder of json.dumps(ensure_ascii=False)
_DECISION_JSON: Final = {d: f'"{d.value}"' for d in Decision}


def _ts_json(ts: float) -> str:
    if not (isinstance(ts, float) and math.isfinite(ts) and ts >= 0):
        raise ValueError(f"ts must be a finite float >= 0, not {ts!r}")
    return float.__repr__(ts)


def _outcome_json(o: OutcomeFields) -> str:
    """``"decision":…,"reasons":[…],"inspect":…`` and ``,"ledger_state":…`` when set."""
    reasons = ",".join([_JSON_STR(r) for r in o.reasons])
    text = f'"decision":{_DECISION_JSON[o.decision]},"reasons":[{reasons}],"inspect":'
    text += "true" if o.inspect is True else "false"
    state = o.ledger_state
    return text if state is None else f'{text},"ledger_state":{_JSON_STR(state)}'


def _reply_head(
    kind: str, msg_id: str, site: str, gate: str, ts: float, request_id: str, request_mac: str
) -> str:
    return (
        f'{{"v":1,"type":"{kind}","id":{_JSON_STR(msg_id)},"site":{_JSON_STR(site)},'
        f'"gate":{_JSON_STR(gate)},"ts":{_ts_json(ts)},"request_id":{_JSON_STR(request_id)},'
        f'"request_mac":{_JSON_STR(request_mac)},'
    )


def verdict_body(
    *,
    msg_id: str,
    site: str,
    gate: str,
    ts: float,
    request_id: str,
    request_mac: str,
    outcome: OutcomeFields,
) -> bytes:
    """The body :func:`encode` writes for a :class:`Verdict` with these fields (``reasons``
    and ``inspect`` given, ``ledger_state`` given unless None), from a template instead of
    a model: the gateway's hot path. Strings are JSON-escaped but not validated (they come
    from a validated request and the rules); ``ts`` must be a finite float >= 0
    (``ValueError``; below 1e-4 it is spelt as Python does, ``1e-05``, the same number),
    ``decision`` a :class:`Decision` (``KeyError``)."""
    head = _reply_head("verdict", msg_id, site, gate, ts, request_id, request_mac)
    return f"{head}{_outcome_json(outcome)}}}".encode()


def batch_verdict_body(
    *,
    msg_id: str,
    site: str,
    gate: str,
    ts: float,
    request_id: str,
    request_mac: str,
    results: Sequence[OutcomeFields],
) -> bytes:
    """The body :func:`encode` writes for a :class:`BatchVerdict` whose ``results`` are the
    outcomes in order (``index`` 0, 1, …), built like :func:`verdict_body`. Does not check
    the size limit or the count (1 to :data:`MAX_BATCH`)."""
    head = _reply_head("batch_verdict", msg_id, site, gate, ts, request_id, request_mac)
    items = ",".join([f'{{"index":{i},{_outcome_json(o)}}}' for i, o in enumerate(results)])
    return f'{head}"results":[{items}]}}'.encode()


_REQUIRED_ON_WIRE: Final = frozenset({"v", "id", "ts"})


def decode(
    payload: bytes, *, max_bytes: int = DEFAULT_MAX_PAYLOAD, mac: str | None = None
) -> Message | DecodeError:
    """Parse and validate one message; never raises on bad input. Authenticates nothing.

    Strict validation: JSON types must match (no ``"5"`` for 5), unknown fields are refused.
    With ``mac`` (64 lowercase hex, else ``ValueError``), ``payload`` is the body of a sealed
    payload (see :mod:`gatewire.auth`): a ``mac`` member in it is refused, and the message
    returned carries ``mac``.
    """
    if mac is not None and _MAC_RE.fullmatch(mac) is None:
        raise ValueError("mac must be 64 lowercase hex characters")
    return decode_unchecked_mac(payload, max_bytes, mac)


def decode_unchecked_mac(payload: bytes, max_bytes: int, mac: str | None) -> Message | DecodeError:
    """:func:`decode` for a ``mac`` the caller has already checked is 64 lowercase hex (as
    :func:`gatewire.auth.split_sealed` does): the hot path of the verifiers."""
    if len(payload) > max_bytes:
        return DecodeError(DecodeErrorKind.TOO_LARGE, f"payload {len(payload)} B > {max_bytes} B")
    if not payload.isascii():  # ASCII is UTF-8; only other payloads need the full check
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return DecodeError(DecodeErrorKind.NOT_UTF8, f"not UTF-8 at byte {exc.start}")
    try:
        msg: Message = _VALIDATE_JSON(payload, strict=True, context=_FromWire(mac))
    except ValidationError as exc:
        return _explain(payload.decode("utf-8"), exc)
    except (ValueError, RecursionError) as exc:  # defensive: nothing may escape decode
        return DecodeError(DecodeErrorKind.INVALID, _one_line(f"{type(exc).__name__}: {exc}"))
    fields_set = msg.__pydantic_fields_set__
    if "v" in fields_set and "id" in fields_set and "ts" in fields_set:
        return msg
    missing = _REQUIRED_ON_WIRE - fields_set
    kind = DecodeErrorKind.UNSUPPORTED_VERSION if "v" in missing else DecodeErrorKind.INVALID
    reason = f"missing required field(s): {', '.join(sorted(missing))}"
    return DecodeError(kind, reason, msg.id if "id" not in missing else None)


def _explain(text: str, exc: ValidationError) -> DecodeError:
    """Turn a validation failure into a one-line reason (error path only: parses again)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return DecodeError(DecodeErrorKind.INVALID_JSON, _one_line(str(first["msg"])))
    raw: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        raw = json.loads(text)
    message_id = None
    if isinstance(raw, dict):
        if "v" in raw and raw["v"] != SCHEMA_VERSION:
            version = json.dumps(raw["v"])[:20]
            reason = f"unsupported version {version}; this receiver speaks v{SCHEMA_VERSION}"
            return DecodeError(DecodeErrorKind.UNSUPPORTED_VERSION, _one_line(reason), _id_of(raw))
        message_id = _id_of(raw)
    loc = ".".join(str(p) for p in first["loc"]) or "message"
    extra = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    reason = f"{loc}: {first['msg']}{extra}"
    return DecodeError(DecodeErrorKind.INVALID, _one_line(reason), message_id)


def _one_line(text: str) -> str:
    """At most 300 printable characters (keys from the payload can hold anything)."""
    return "".join(c if c.isprintable() else "?" for c in text[:300])


def _id_of(raw: dict[str, Any]) -> str | None:
    value = raw.get("id")
    if isinstance(value, str) and len(value) <= 64:
        return value
    return None
