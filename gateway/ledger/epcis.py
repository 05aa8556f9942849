"""EPCIS 2.0 events provgate writes: ObjectEvent and AggregationEvent, with our extensions.

The models build events; ``to_jsonld`` turns one into the EPCIS 2.0 JSON-LD event object
that ``gateway.ledger.event_hash`` hashes and other EPCIS systems read, ``from_jsonld``
reads one back (for imports), ``epcis_document`` wraps events in an EPCIS document.

Our own data travels as user extensions in the provgate namespace (prefix ``pg``):
``pg:visionScore``, ``pg:modelVersion``, ``pg:inspector``, ``pg:reasonCodes``,
``pg:verdict``. Anything else an imported event carries (sensor data, ILMD, sources and
destinations, foreign extensions…) is kept verbatim in ``other`` so that it round-trips
and hashes as it was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.ledger.event_hash import DEFAULT_NAMESPACES, event_hash, namespaces_from_context

__all__ = [
    "CBV_BIZ_STEPS",
    "CBV_DISPOSITIONS",
    "EPCIS_CONTEXT",
    "PG_NAMESPACE",
    "PG_PREFIX",
    "SELLER_BTT",
    "Action",
    "AggregationEvent",
    "BizStep",
    "BizTransaction",
    "Disposition",
    "EpcisError",
    "EpcisEvent",
    "GateExtensions",
    "ObjectEvent",
    "aggregation_event",
    "epcis_document",
    "event_id",
    "from_jsonld",
    "object_event",
    "to_jsonld",
]

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
PG_PREFIX = "pg"
PG_NAMESPACE = "https://provgate.dev/epcis/"
#: Business transaction type naming the seller an item was received from or shipped for.
SELLER_BTT = PG_NAMESPACE + "BTT-seller"
_CBV = "https://ref.gs1.org/cbv/"
_OFFSET = re.compile(r"[+-](?:[01]\d|2[0-3]):[0-5]\d")


class EpcisError(ValueError):
    """An event that is not valid EPCIS 2.0 as provgate writes it; the message says why."""


class Action(StrEnum):
    """What an event does to the identities it names (EPCIS 2.0 §7.3.2)."""

    ADD = "ADD"
    OBSERVE = "OBSERVE"
    DELETE = "DELETE"


class BizStep(StrEnum):
    """CBV 2.0 business steps a warehouse gate uses (``https://ref.gs1.org/cbv/BizStep-…``)."""

    ACCEPTING = "accepting"
    ARRIVING = "arriving"
    COMMISSIONING = "commissioning"
    DECOMMISSIONING = "decommissioning"
    DEPARTING = "departing"
    DESTROYING = "destroying"
    HOLDING = "holding"
    INSPECTING = "inspecting"
    LOADING = "loading"
    PACKING = "packing"
    RECEIVING = "receiving"
    SHIPPING = "shipping"
    STAGING_OUTBOUND = "staging_outbound"
    STORING = "storing"
    UNLOADING = "unloading"
    UNPACKING = "unpacking"
    VOID_SHIPPING = "void_shipping"


class Disposition(StrEnum):
    """CBV 2.0 dispositions a warehouse gate uses (``https://ref.gs1.org/cbv/Disp-…``)."""

    ACTIVE = "active"
    CONFORMANT = "conformant"
    CONTAINER_CLOSED = "container_closed"
    DAMAGED = "damaged"
    DESTROYED = "destroyed"
    EXPIRED = "expired"
    IN_PROGRESS = "in_progress"
    IN_TRANSIT = "in_transit"
    INACTIVE = "inactive"
    NON_CONFORMANT = "non_conformant"
    NON_SELLABLE_OTHER = "non_sellable_other"
    RECALLED = "recalled"
    RESERVED = "reserved"
    RETURNED = "returned"
    SELLABLE_ACCESSIBLE = "sellable_accessible"
    SELLABLE_NOT_ACCESSIBLE = "sellable_not_accessible"
    STOLEN = "stolen"
    UNKNOWN = "unknown"


#: Every CBV 2.0 business step and disposition (imports may use any of them).
CBV_BIZ_STEPS = frozenset(
    [
        "accepting",
        "arriving",
        "assembling",
        "collecting",
        "commissioning",
        "consigning",
        "creating_class_instance",
        "cycle_counting",
        "decommissioning",
        "departing",
        "destroying",
        "disassembling",
        "dispensing",
        "encoding",
        "entering_exiting",
        "holding",
        "inspecting",
        "installing",
        "killing",
        "loading",
        "other",
        "packing",
        "picking",
        "receiving",
        "removing",
        "repackaging",
        "repairing",
        "replacing",
        "reserving",
        "retail_selling",
        "sampling",
        "sensor_reporting",
        "shipping",
        "staging_outbound",
        "stock_taking",
        "stocking",
        "storing",
        "transporting",
        "unloading",
        "unpacking",
        "void_shipping",
    ]
)
CBV_DISPOSITIONS = frozenset(
    [
        "active",
        "available",
        "completeness_inferred",
        "completeness_verified",
        "conformant",
        "container_closed",
        "container_open",
        "damaged",
        "destroyed",
        "dispensed",
        "disposed",
        "encoded",
        "expired",
        "in_progress",
        "in_transit",
        "inactive",
        "mismatch_class",
        "mismatch_instance",
        "mismatch_quantity",
        "needs_replacement",
        "no_pedigree_match",
        "non_conformant",
        "non_sellable_other",
        "partially_dispensed",
        "recalled",
        "reserved",
        "retail_sold",
        "returned",
        "sellable_accessible",
        "sellable_not_accessible",
        "stolen",
        "unavailable",
        "unknown",
    ]
)


def _vocabulary(value: str, known: frozenset[str], web_prefix: str, what: str) -> str:
    """A CBV short name (``shipping``), its web URI (…/BizStep-shipping) -> the short name;
    any other URI is kept (user vocabularies are allowed); any other bare word is refused."""
    if value.startswith(web_prefix):
        value = value[len(web_prefix) :]
    if value in known or ":" in value:
        return value
    raise ValueError(f"{value!r} is neither a CBV 2.0 {what} nor a URI")


class BizTransaction(BaseModel):
    """A business transaction the event belongs to: an order, a dispatch advice, a seller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str | None = Field(
        default=None,
        title="Transaction type",
        description="CBV short name (po, desadv, inv…), a URI such as SELLER_BTT, or none",
    )
    id: str = Field(
        title="Transaction ID",
        description="URI of the transaction, e.g. urn:epcglobal:cbv:bt:<GLN>:<order number>",
        min_length=1,
    )


class GateExtensions(BaseModel):
    """provgate's own data about a gate decision, written as ``pg:`` user extensions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vision_score: float | None = Field(
        default=None,
        title="Vision score",
        description="Label check score of the camera model, 0 (counterfeit) … 1 (genuine)",
        ge=0.0,
        le=1.0,
    )
    model_version: str | None = Field(
        default=None, title="Model version", description="Version of the vision model used"
    )
    inspector: str | None = Field(
        default=None, title="Inspector", description="Who inspected the item by hand, if anyone"
    )
    reason_codes: tuple[str, ...] = Field(
        default=(), title="Reason codes", description="Why the gate decided as it did"
    )
    verdict: Literal["PASS", "REJECT", "HOLD"] | None = Field(
        default=None, title="Verdict", description="The gate's decision for the item"
    )

    def to_jsonld(self) -> dict[str, Any]:
        """The ``pg:`` properties that are set."""
        out: dict[str, Any] = {}
        for field, key in _PG_KEYS.items():
            value = getattr(self, field)
            if value is None or value == ():
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


_PG_KEYS = {
    "vision_score": "pg:visionScore",
    "model_version": "pg:modelVersion",
    "inspector": "pg:inspector",
    "reason_codes": "pg:reasonCodes",
    "verdict": "pg:verdict",
}
_PG_FIELDS = {key: field for field, key in _PG_KEYS.items()}


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_time: datetime = Field(
        title="Event time", description="When the event happened; must carry a UTC offset"
    )
    event_time_zone_offset: str = Field(
        default="",
        title="Event time zone offset",
        description="Local offset at the place of the event (+HH:MM); default: event_time's",
    )
    action: Action = Field(title="Action", description="ADD, OBSERVE or DELETE")
    biz_step: str | None = Field(
        default=None, title="Business step", description="CBV business step or a URI"
    )
    disposition: str | None = Field(
        default=None, title="Disposition", description="CBV disposition or a URI"
    )
    read_point: str | None = Field(
        default=None, title="Read point", description="Where it was seen: the gate (SGLN URI)"
    )
    biz_location: str | None = Field(
        default=None, title="Business location", description="Where it is now: the site (SGLN)"
    )
    biz_transactions: tuple[BizTransaction, ...] = Field(
        default=(), title="Business transactions", description="Orders, sellers, dispatches"
    )
    gate: GateExtensions = Field(
        default_factory=GateExtensions,
        title="provgate extensions",
        description="Our own data, written as pg: user extensions",
    )
    event_id: str | None = Field(
        default=None, title="Event ID", description="eventID to write, usually the event hash"
    )
    other: dict[str, Any] = Field(
        default_factory=dict,
        title="Other properties",
        description="Further EPCIS properties and foreign extensions, kept verbatim",
    )
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        title="Namespaces",
        description="Prefix -> IRI of foreign extension properties in `other`",
    )

    @field_validator("event_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("event_time needs a UTC offset (a timezone-aware datetime)")
        return value

    @field_validator("biz_step")
    @classmethod
    def _biz_step(cls, value: str | None) -> str | None:
        return (
            None
            if value is None
            else _vocabulary(value, CBV_BIZ_STEPS, _CBV + "BizStep-", "business step")
        )

    @field_validator("disposition")
    @classmethod
    def _disposition(cls, value: str | None) -> str | None:
        return (
            None
            if value is None
            else _vocabulary(value, CBV_DISPOSITIONS, _CBV + "Disp-", "disposition")
        )

    @field_validator("event_time_zone_offset")
    @classmethod
    def _offset(cls, value: str, info: ValidationInfo) -> str:
        moment = info.data.get("event_time")
        if not value and isinstance(moment, datetime):
            offset = moment.utcoffset()
            minutes = 0 if offset is None else int(offset.total_seconds()) // 60
            sign = "-" if minutes < 0 else "+"
            return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        if not _OFFSET.fullmatch(value):
            raise ValueError(f"{value!r} is not ±HH:MM")
        return value

    @model_validator(mode="after")
    def _no_shadowing(self) -> _EventBase:
        clash = {
            key
            for key in self.other
            if key in _KNOWN_KEYS and (key not in _OPTIONAL or getattr(self, _OPTIONAL[key]))
        }
        if clash:
            raise ValueError(f"`other` must not hold modelled properties: {sorted(clash)}")
        return self


class ObjectEvent(_EventBase):
    """An ObjectEvent: something happened to the items named in ``epc_list``."""

    type: Literal["ObjectEvent"] = Field(default="ObjectEvent", title="Event type")
    epc_list: tuple[str, ...] = Field(
        default=(), title="EPC list", description="The items: EPC URIs or GS1 Digital Link URIs"
    )


class AggregationEvent(_EventBase):
    """An AggregationEvent: items packed into (ADD) or taken out of (DELETE) a parent."""

    type: Literal["AggregationEvent"] = Field(default="AggregationEvent", title="Event type")
    parent_id: str | None = Field(
        default=None, title="Parent ID", description="The case or pallet (SSCC, …)"
    )
    child_epcs: tuple[str, ...] = Field(
        default=(), title="Child EPCs", description="The items packed in or taken out"
    )


EpcisEvent = ObjectEvent | AggregationEvent
#: Modelled properties that may sit in `other` (in a form the model does not cover) when
#: the model's own field is unset, e.g. a readPoint carrying extensions.
_OPTIONAL = {
    "readPoint": "read_point",
    "bizLocation": "biz_location",
    "bizTransactionList": "biz_transactions",
}
_E = TypeVar("_E", ObjectEvent, AggregationEvent)

_KNOWN_KEYS = frozenset(
    {
        "type",
        "eventTime",
        "eventTimeZoneOffset",
        "action",
        "bizStep",
        "disposition",
        "readPoint",
        "bizLocation",
        "bizTransactionList",
        "eventID",
        "epcList",
        "parentID",
        "childEPCs",
        "@context",
        *_PG_FIELDS,
    }
)


# --------------------------------------------------------------------------- building


def object_event(
    epcs: Iterable[str],
    *,
    action: Action | str = Action.OBSERVE,
    biz_step: BizStep | str | None = None,
    disposition: Disposition | str | None = None,
    read_point: str | None = None,
    biz_location: str | None = None,
    transactions: Iterable[BizTransaction | tuple[str | None, str]] = (),
    event_time: datetime | None = None,
    event_time_zone_offset: str = "",
    vision_score: float | None = None,
    model_version: str | None = None,
    inspector: str | None = None,
    reason_codes: Iterable[str] = (),
    verdict: Literal["PASS", "REJECT", "HOLD"] | None = None,
) -> ObjectEvent:
    """An ObjectEvent about ``epcs``; ``event_time`` defaults to now (UTC).

    Raises EpcisError when a value is not valid.
    """
    return _build(
        ObjectEvent,
        {"epc_list": tuple(epcs)},
        action=action,
        biz_step=biz_step,
        disposition=disposition,
        read_point=read_point,
        biz_location=biz_location,
        transactions=transactions,
        event_time=event_time,
        event_time_zone_offset=event_time_zone_offset,
        gate={
            "vision_score": vision_score,
            "model_version": model_version,
            "inspector": inspector,
            "reason_codes": tuple(reason_codes),
            "verdict": verdict,
        },
    )


def aggregation_event(
    parent_id: str,
    child_epcs: Iterable[str],
    *,
    action: Action | str = Action.ADD,
    biz_step: BizStep | str | None = BizStep.PACKING,
    disposition: Disposition | str | None = None,
    read_point: str | None = None,
    biz_location: str | None = None,
    transactions: Iterable[BizTransaction | tuple[str | None, str]] = (),
    event_time: datetime | None = None,
    event_time_zone_offset: str = "",
) -> AggregationEvent:
    """An AggregationEvent packing ``child_epcs`` into ``parent_id`` (or unpacking: DELETE)."""
    return _build(
        AggregationEvent,
        {"parent_id": parent_id, "child_epcs": tuple(child_epcs)},
        action=action,
        biz_step=biz_step,
        disposition=disposition,
        read_point=read_point,
        biz_location=biz_location,
        transactions=transactions,
        event_time=event_time,
        event_time_zone_offset=event_time_zone_offset,
        gate={},
    )


def _build(
    model: type[_E],
    fields: dict[str, Any],
    *,
    action: Action | str,
    biz_step: BizStep | str | None,
    disposition: Disposition | str | None,
    read_point: str | None,
    biz_location: str | None,
    transactions: Iterable[BizTransaction | tuple[str | None, str]],
    event_time: datetime | None,
    event_time_zone_offset: str,
    gate: dict[str, Any],
) -> _E:
    links = [
        t if isinstance(t, BizTransaction) else BizTransaction(type=t[0], id=t[1])
        for t in transactions
    ]
    try:
        return model.model_validate(
            {
                **fields,
                "event_time": event_time or datetime.now(UTC),
                "event_time_zone_offset": event_time_zone_offset,
                "action": action,
                "biz_step": None if biz_step is None else str(biz_step),
                "disposition": None if disposition is None else str(disposition),
                "read_point": read_point,
                "biz_location": biz_location,
                "biz_transactions": links,
                "gate": gate,
            }
        )
    except ValidationError as exc:
        raise EpcisError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'event'}: {error['msg']}"
        for error in exc.errors()
    )


# --------------------------------------------------------------------------- JSON-LD


def _time_text(moment: datetime) -> str:
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec)


def to_jsonld(event: EpcisEvent) -> dict[str, Any]:
    """The EPCIS 2.0 JSON-LD object of ``event`` (``pg:`` keys need ``{"pg": PG_NAMESPACE}``
    in the document's @context, which epcis_document writes)."""
    out: dict[str, Any] = {"type": event.type}
    if event.event_id is not None:
        out["eventID"] = event.event_id
    out["eventTime"] = _time_text(event.event_time)
    out["eventTimeZoneOffset"] = event.event_time_zone_offset
    if isinstance(event, ObjectEvent):
        out["epcList"] = list(event.epc_list)
    else:
        if event.parent_id is not None:
            out["parentID"] = event.parent_id
        if event.child_epcs:
            out["childEPCs"] = list(event.child_epcs)
    out["action"] = event.action.value
    if event.biz_step is not None:
        out["bizStep"] = event.biz_step
    if event.disposition is not None:
        out["disposition"] = event.disposition
    if event.read_point is not None:
        out["readPoint"] = {"id": event.read_point}
    if event.biz_location is not None:
        out["bizLocation"] = {"id": event.biz_location}
    if event.biz_transactions:
        out["bizTransactionList"] = [
            {"bizTransaction": t.id} if t.type is None else {"type": t.type, "bizTransaction": t.id}
            for t in event.biz_transactions
        ]
    out.update(event.gate.to_jsonld())
    out.update(event.other)
    return out


def from_jsonld(data: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> EpcisEvent:
    """The model of an EPCIS 2.0 JSON-LD ObjectEvent or AggregationEvent.

    ``namespaces`` are the prefixes of the document it came from (for foreign extensions).
    Properties the model does not name are kept in ``other``; ``pg:`` keys must be ours.
    Raises EpcisError naming what is wrong.
    """
    if not isinstance(data, Mapping):
        raise EpcisError(f"an event must be a JSON object, not {type(data).__name__}")
    kind = data.get("type")
    if kind not in ("ObjectEvent", "AggregationEvent"):
        raise EpcisError(f"provgate reads ObjectEvent and AggregationEvent, not {kind!r}")
    fields: dict[str, Any] = {"type": kind, "other": {}, "gate": {}}
    prefixes = dict(namespaces or {})
    prefixes.update(namespaces_from_context(data.get("@context")))
    for key, value in data.items():
        if key in ("type", "@context"):
            continue
        if key in _PG_FIELDS:
            fields["gate"][_PG_FIELDS[key]] = value
        elif key.startswith(PG_PREFIX + ":"):
            raise EpcisError(f"unknown provgate extension {key!r}")
        elif not _take(fields, kind, key, value):
            fields["other"][key] = value
    used = _prefixes_in(fields["other"])
    fields["namespaces"] = {
        p: iri for p, iri in prefixes.items() if p in used and DEFAULT_NAMESPACES.get(p) != iri
    }
    model: type[EpcisEvent] = ObjectEvent if kind == "ObjectEvent" else AggregationEvent
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise EpcisError(_explain(exc)) from None


def _prefixes_in(value: Any) -> set[str]:
    """Prefixes of the CURIE property names anywhere in ``value``."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if isinstance(key, str) and ":" in key:
                found.add(key.partition(":")[0])
            found |= _prefixes_in(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _prefixes_in(inner)
    return found


def _take(fields: dict[str, Any], kind: str, key: str, value: Any) -> bool:
    """Move a modelled property into ``fields`` if it has the simple form we model."""
    simple = {
        "eventTime": "event_time",
        "eventTimeZoneOffset": "event_time_zone_offset",
        "action": "action",
        "bizStep": "biz_step",
        "disposition": "disposition",
        "eventID": "event_id",
    }
    if key in simple:
        fields[simple[key]] = value
        return True
    if key in ("readPoint", "bizLocation"):
        if isinstance(value, Mapping) and set(value) == {"id"} and isinstance(value["id"], str):
            fields["read_point" if key == "readPoint" else "biz_location"] = value["id"]
            return True
        return False
    if key == "bizTransactionList":
        if isinstance(value, list) and all(
            isinstance(t, Mapping) and set(t) <= {"type", "bizTransaction"} for t in value
        ):
            fields["biz_transactions"] = [
                {"type": t.get("type"), "id": t.get("bizTransaction")} for t in value
            ]
            return True
        return False
    lists = {
        "ObjectEvent": {"epcList": "epc_list"},
        "AggregationEvent": {"childEPCs": "child_epcs"},
    }
    if key in lists[kind]:
        fields[lists[kind][key]] = value
        return True
    if kind == "AggregationEvent" and key == "parentID":
        fields["parent_id"] = value
        return True
    return False


def context_of(events: Iterable[EpcisEvent]) -> dict[str, str]:
    """Prefix -> IRI for the extension properties of ``events`` (ours and foreign ones)."""
    merged = {PG_PREFIX: PG_NAMESPACE}
    for event in events:
        for prefix, iri in event.namespaces.items():
            if merged.setdefault(prefix, iri) != iri:
                raise EpcisError(f"prefix {prefix!r} means both {merged[prefix]} and {iri}")
    return merged


def event_id(event: EpcisEvent) -> str:
    """The CBV 2.0 event hash ID of ``event``, as any EPCIS system computes it."""
    return event_hash(to_jsonld(event), context_of([event]))


def epcis_document(
    events: Sequence[EpcisEvent], *, creation_date: datetime | None = None
) -> dict[str, Any]:
    """An EPCIS 2.0 JSON-LD document holding ``events`` in order."""
    created = creation_date or datetime.now(UTC)
    return {
        "@context": [EPCIS_CONTEXT, context_of(events)],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _time_text(created),
        "epcisBody": {"eventList": [to_jsonld(e) for e in events]},
    }
