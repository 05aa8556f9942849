"""CBV 2.0 event hash (GS1 CBV 2.0 §8.9, "Event Hash ID") of EPCIS 2.0 JSON-LD events.

An event's hash ID is ``ni:///sha-256;<hex>?ver=CBV2.0`` over a canonical *pre-hash
string*, computed the way the reference implementation (RalphTro/epcis-event-hash-generator)
computes it, so our IDs match what other EPCIS systems compute:

1. ``eventType=<type>``, then the properties in the canonical order of ``_PROP_ORDER`` as
   ``name=value`` (nested ones as ``name`` followed by their children); repeated
   elements (the EPCs of a list, the sensor reports of an element…) are sorted.
2. Then every other property (business transactions, sources, destinations, ``ilmd``,
   user extensions as ``{namespace}localName``), rendered the same way and sorted.
3. Values are normalised: timestamps to UTC with milliseconds, numbers without
   redundant zeros, CBV short names and URNs to ``https://ref.gs1.org/cbv/…`` web
   vocabulary, EPC URIs and GS1 Digital Link URIs to canonical
   ``https://id.gs1.org/…`` Digital Link URIs (see ``gs1_digital_link``).
4. ``eventID``, ``recordTime``, ``errorDeclaration``, comments and the fields a document
   lists in its ``ignoreFields`` take no part.

Pure functions without I/O. A malformed event raises ``EventHashError`` naming the fault.
The usual event shapes take a direct path (``_shape_prehash``: bounded caches and slicing
converters for event times and SGTIN/SSCC/SGLN EPCs), also under an @context that only
adds prefixes for extension names (the gateway's gate events); everything else, and every
malformed event, takes the general one, which defines the result.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

_sha256 = hashlib.sha256

__all__ = [
    "DEFAULT_NAMESPACES",
    "EventHashError",
    "document_event_hashes",
    "document_event_prehashes",
    "document_events",
    "document_ignore_fields",
    "event_hash",
    "event_prehash",
    "gs1_digital_link",
    "hash_prehash",
    "namespaces_from_context",
]


class EventHashError(ValueError):
    """The event (or document) cannot be hashed; the message says what is wrong."""


# A parsed property: (name, text value, children). Names of extensions are expanded to
# "{namespace}localName"; list properties ("epcList") hold one child per element ("epc").
_Node = tuple[str, str, list["_Node"]]
_Order = Sequence[tuple[str, "_Order | None"]]

#: Prefixes an event may use without declaring them: the EPCIS 2.0 context's own, and
#: provgate's ``pg`` (so that ``event_hash(event)`` of our events needs no context; a
#: document or caller that declares ``pg`` otherwise overrides it).
DEFAULT_NAMESPACES: Mapping[str, str] = {
    "gs1": "https://gs1.org/voc/",
    "cbv": "https://ref.gs1.org/cbv/",
    "epcis": "https://ref.gs1.org/epcis/",
    "cbvmda": "urn:epcglobal:cbv:mda",
    "pg": "https://provgate.dev/epcis/",
}

_CBV = "https://ref.gs1.org/cbv/"
#: Namespace IRIs whose CURIEs in values are expanded (_expand_value); others stay as written.
_GS1_DOMAINS = ("https://ref.gs1.org", "https://gs1.org")
_GS1_VOC = "https://gs1.org/voc/"
_MAX_DEPTH = 32

_QUANTITY: _Order = (("epcClass", None), ("quantity", None), ("uom", None))
_PROP_ORDER: _Order = (
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("certificationInfo", None),
    ("epcList", (("epc", None),)),
    ("parentID", None),
    ("inputEPCList", (("epc", None),)),
    ("childEPCs", (("epc", None),)),
    ("quantityList", (("quantityElement", _QUANTITY),)),
    ("childQuantityList", (("quantityElement", _QUANTITY),)),
    ("inputQuantityList", (("quantityElement", _QUANTITY),)),
    ("outputEPCList", (("epc", None),)),
    ("outputQuantityList", (("quantityElement", _QUANTITY),)),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", (("set", None), ("unset", None))),
    ("readPoint", (("id", None),)),
    ("bizLocation", (("id", None),)),
    (
        "sensorElementList",
        (
            (
                "sensorElement",
                (
                    (
                        "sensorMetadata",
                        tuple(
                            (name, None)
                            for name in (
                                "time",
                                "startTime",
                                "endTime",
                                "deviceID",
                                "deviceMetadata",
                                "rawData",
                                "dataProcessingMethod",
                                "bizRules",
                            )
                        ),
                    ),
                    (
                        "sensorReport",
                        tuple(
                            (name, None)
                            for name in (
                                "type",
                                "exception",
                                "deviceID",
                                "deviceMetadata",
                                "rawData",
                                "dataProcessingMethod",
                                "time",
                                "microorganism",
                                "chemicalSubstance",
                                "value",
                                "component",
                                "stringValue",
                                "booleanValue",
                                "hexBinaryValue",
                                "uriValue",
                                "minValue",
                                "maxValue",
                                "meanValue",
                                "sDev",
                                "percRank",
                                "percValue",
                                "uom",
                                "coordinateReferenceSystem",
                            )
                        ),
                    ),
                ),
            ),
        ),
    ),
)

#: Event properties that never take part in the hash.
_IGNORED_TOP = frozenset({"type", "eventID", "recordTime", "errorDeclaration"})
#: Keys dropped at every level (comments and JSON-LD text nodes).
_IGNORED_KEYS = frozenset({"#text", "rdfs:comment", "comment"})
#: Element names of list properties whose element name is not the list name minus "List".
_LIST_ITEM = {
    "childEPCs": "epc",
    "inputEPCList": "epc",
    "outputEPCList": "epc",
    "quantityList": "quantityElement",
    "childQuantityList": "quantityElement",
    "inputQuantityList": "quantityElement",
    "outputQuantityList": "quantityElement",
}
#: Lists of typed links, rendered as "type=…<kind>=…" per element.
_LINK_LISTS = {
    "bizTransactionList": "bizTransaction",
    "sourceList": "source",
    "destinationList": "destination",
}
#: Bare-string vocabulary per (parent element, property): "shipping" -> …/BizStep-shipping.
_VOCAB: Mapping[tuple[str, str], str] = {
    ("", "bizStep"): _CBV + "BizStep-",
    ("", "disposition"): _CBV + "Disp-",
    ("persistentDisposition", "set"): _CBV + "Disp-",
    ("persistentDisposition", "unset"): _CBV + "Disp-",
    ("bizTransaction", "type"): _CBV + "BTT-",
    ("source", "type"): _CBV + "SDT-",
    ("destination", "type"): _CBV + "SDT-",
    ("sensorReport", "type"): _GS1_VOC,
    ("sensorReport", "exception"): _GS1_VOC,
    ("sensorReport", "component"): _CBV + "Comp-",
    ("errorDeclaration", "reason"): _CBV + "ER-",
}
_CBV_URNS = (
    ("urn:epcglobal:cbv:bizstep:", _CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", _CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", _CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", _CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", _CBV + "ER-"),
)


# --------------------------------------------------------------------------- public API


def event_prehash(
    event: Mapping[str, Any],
    context: Mapping[str, str] | None = None,
    *,
    ignore: Collection[str] = (),
) -> str:
    """The canonical pre-hash string of one EPCIS 2.0 JSON-LD event.

    ``context`` maps namespace prefixes to IRIs (``{"pg": "https://provgate.dev/epcis/"}``)
    for the event's extension properties, as a document's ``@context`` would; the event's
    own ``@context``, if any, is read too. ``ignore`` names further properties to leave
    out (CURIEs or ``{namespace}localName``), as a document's ``ignoreFields`` does.
    """
    return _prehash(event, context, ignore, True)


def _general_prehash(
    event: Mapping[str, Any],
    context: Mapping[str, str] | None = None,
    *,
    ignore: Collection[str] = (),
) -> str:
    """event_prehash without the common-shape path (_shape_prehash): the per-property
    renderings and caches alone (the tests compare the two)."""
    return _prehash(event, context, ignore, False)


def _prehash(
    event: Mapping[str, Any],
    context: Mapping[str, str] | None,
    ignore: Collection[str],
    shape: bool,
) -> str:
    if type(event) is not dict and not isinstance(event, Mapping):
        raise EventHashError(f"an event must be a JSON object, not {type(event).__name__}")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventHashError("the event has no 'type' (ObjectEvent, AggregationEvent, …)")
    if context is None and "@context" not in event:
        namespaces: Mapping[str, str] = DEFAULT_NAMESPACES
    else:
        namespaces = _namespaces(context, event.get("@context"))
    if not ignore and namespaces is not DEFAULT_NAMESPACES and namespaces == DEFAULT_NAMESPACES:
        namespaces = DEFAULT_NAMESPACES  # the same namespaces: the cached renderings apply
    ignored = {_expand_key(name, namespaces) for name in ignore} if ignore else ()
    if shape and not ignored and type(event) is dict:
        plans = _plans_for(namespaces)
        if plans is not None:
            text = _shape_prehash(event, plans, namespaces)
            if text is not None:
                return text
    # Each top-level property renders on its own: the common shapes directly (fast), the
    # rest through the general tree walk of _tree_prehash, which defines the result.
    ordered = [""] * len(_PROP_ORDER)
    rest: list[str] = []
    if namespaces is DEFAULT_NAMESPACES and not ignored:
        for key, value in event.items():
            if type(value) is str:
                if key == "eventTime":
                    ordered[0] = _fast_event_time(key, value, namespaces)
                    continue
                rendered = _STR_RENDERED.get((key, value))
                if rendered is None:
                    rendered = _cached_str(key, value)
                position, text, extra = rendered
            elif type(value) in _CACHED_SCALARS and key != "eventTime":
                position, text, extra = _cached_scalar(key, value)
            else:
                rendered = _cached_render(key, value)
                if rendered is None:
                    rendered = _render_top(key, value, namespaces, ignored)
                position, text, extra = rendered
            if position >= 0:
                ordered[position] = text
            if extra:
                rest += extra
    else:
        for key, value in event.items():
            position, text, extra = _render_top(key, value, namespaces, ignored)
            if position >= 0:
                ordered[position] = text
            if extra:
                rest += extra
    rest.sort()
    return "eventType=" + event_type.strip() + "".join(ordered) + "".join(rest)


#: What one top-level property contributes: (its position in _PROP_ORDER or -1, its text
#: there, texts that join the sorted rest).
_Rendered = tuple[int, str, tuple[str, ...]]
_NOTHING: _Rendered = (-1, "", ())


def _render_top(
    key: Any, value: Any, namespaces: Mapping[str, str], ignored: Collection[str]
) -> _Rendered:
    """The contribution of one top-level property of an event to its pre-hash."""
    spec = _TOP_SPEC.get(key)
    if spec is not None:
        if spec is _SKIP:
            return _NOTHING
        position, fast = spec
        text = fast(key, value, namespaces)
        if text is None:
            nodes = _children({key: value}, "", namespaces, 0)
            text = _ordered(nodes, (_PROP_ORDER[position],), top=True)
            # what the order left over joins the rest, as in _tree_prehash
            return position, text, tuple(_generic_one(n) for n in nodes if n[0] not in ignored)
        return position, text, ()
    if not isinstance(key, str):
        raise EventHashError(f"event: property name {key!r} is not a string")
    if key.startswith("@"):
        return _NOTHING
    name = _expand_key(key, namespaces) if ":" in key else key
    if name in ignored:
        return _NOTHING
    if name.endswith("List"):
        if name in _LINK_LISTS and (links := _fast_links(name, value, namespaces)):
            return -1, "", (links,)
    elif type(value) is list:
        texts = [_value_text(v, namespaces) for v in value]
        if None not in texts:
            return -1, "", tuple(name + "=" + t if t else name for t in texts if t is not None)
    else:
        text = _value_text(value, namespaces)
        if text is not None:
            return -1, "", (name + "=" + text if text else name,)
    return -1, "", tuple(_generic_one(n) for n in _children({key: value}, "", namespaces, 0))


_NONE_TYPE = type(None)
_CACHED_SCALARS = frozenset({str, int, float, bool, _NONE_TYPE})
_PLACES = frozenset({"readPoint", "bizLocation"})


def _cached_render(key: Any, value: Any) -> _Rendered | None:
    """_render_top under DEFAULT_NAMESPACES without ignored names, from bounded caches for
    the shapes gate events repeat (None: render it directly)."""
    kind = type(value)
    if kind is str and key == "eventTime":
        return 0, _fast_event_time(key, value, DEFAULT_NAMESPACES), ()
    if kind in _CACHED_SCALARS:
        return _cached_scalar(key, value)
    if kind is list:
        if key in _EPC_LISTS:
            text = _fast_epcs(key, value, DEFAULT_NAMESPACES)
            return None if text is None else (_TOP_POSITION[key], text, ())
        if key in _LINK_LISTS:
            kind_name = _LINK_LISTS[key]
            pairs = []
            for link in value:
                if type(link) is not dict or len(link) != 2:
                    return None
                link_type = link.get("type")
                target = link.get(kind_name)
                if type(link_type) is not str or type(target) is not str:
                    return None
                pairs.append((link_type, target))
            return _cached_links(key, tuple(pairs))
        for element in value:
            if type(element) is not str:
                return None
        return _cached_strings(key, tuple(value))
    if kind is dict and key in _PLACES and len(value) == 1:
        place = value.get("id")
        if type(place) is str:
            return _cached_place(key, place)
    return None


#: (key, string value) -> _render_top of it under DEFAULT_NAMESPACES; emptied when full.
_STR_RENDERED: dict[tuple[Any, str], _Rendered] = {}
_STR_RENDERED_MAX = 4096


def _cached_str(key: Any, value: str) -> _Rendered:
    rendered = _render_top(key, value, DEFAULT_NAMESPACES, ())
    if len(_STR_RENDERED) >= _STR_RENDERED_MAX:
        _STR_RENDERED.clear()
    _STR_RENDERED[key, value] = rendered
    return rendered


@lru_cache(maxsize=4096, typed=True)
def _cached_scalar(key: Any, value: Any) -> _Rendered:
    return _render_top(key, value, DEFAULT_NAMESPACES, ())


@lru_cache(maxsize=1024)
def _cached_strings(key: Any, values: tuple[str, ...]) -> _Rendered:
    return _render_top(key, list(values), DEFAULT_NAMESPACES, ())


@lru_cache(maxsize=1024)
def _cached_place(key: Any, place: str) -> _Rendered:
    return _render_top(key, {"id": place}, DEFAULT_NAMESPACES, ())


@lru_cache(maxsize=1024)
def _cached_links(key: str, pairs: tuple[tuple[str, str], ...]) -> _Rendered:
    kind = _LINK_LISTS[key]
    links = [{"type": link_type, kind: target} for link_type, target in pairs]
    return _render_top(key, links, DEFAULT_NAMESPACES, ())


def _check_event(event: Any) -> str:
    if not isinstance(event, Mapping):
        raise EventHashError(f"an event must be a JSON object, not {type(event).__name__}")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventHashError("the event has no 'type' (ObjectEvent, AggregationEvent, …)")
    if "eventTime" in event:
        event_time = event["eventTime"]
        if not isinstance(event_time, str) or _parse_time(event_time.strip()) is None:
            raise EventHashError(f"eventTime {event_time!r} is not an ISO 8601 date-time")
    return event_type.strip()


def _tree_prehash(
    event: Mapping[str, Any],
    context: Mapping[str, str] | None = None,
    *,
    ignore: Collection[str] = (),
) -> str:
    """event_prehash by the general tree walk alone: the definition the fast paths of
    event_prehash must agree with (the tests compare the two)."""
    event_type = _check_event(event)
    namespaces = _namespaces(context, event.get("@context"))
    ignored = {_expand_key(name, namespaces) for name in ignore}
    children = _children(event, "", namespaces, 0)
    ordered = _ordered(children, _PROP_ORDER, top=True)
    rest = [c for c in children if c[0] not in _IGNORED_TOP and c[0] not in ignored]
    return "eventType=" + event_type + ordered + _generic(rest)


def event_hash(
    event: Mapping[str, Any],
    context: Mapping[str, str] | None = None,
    *,
    ignore: Collection[str] = (),
) -> str:
    """The CBV 2.0 event hash ID ``ni:///sha-256;<hex>?ver=CBV2.0`` of one event."""
    if context is None and not ignore and type(event) is dict:
        # the ledger's call: the common shape directly, else the general path
        if "@context" not in event:
            prehash = _shape_prehash(event, _PLANS, DEFAULT_NAMESPACES)
        else:  # (as gate events: the extensions' prefixes declared)
            found = _context_plans(event["@context"])
            prehash = None if found is None else _shape_prehash(event, *found)
        if prehash is None:
            prehash = _prehash(event, None, (), False)
    else:
        prehash = _prehash(event, context, ignore, True)
    try:
        data = prehash.encode()
    except UnicodeEncodeError as exc:
        raise EventHashError(_not_unicode(exc)) from None
    return f"ni:///sha-256;{_sha256(data).digest().hex()}?ver=CBV2.0"


def hash_prehash(prehash: str) -> str:
    """The ``ni:///sha-256;…?ver=CBV2.0`` ID of a pre-hash string."""
    try:
        data = prehash.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EventHashError(_not_unicode(exc)) from None
    return "ni:///sha-256;" + hashlib.sha256(data).hexdigest() + "?ver=CBV2.0"


def _not_unicode(exc: UnicodeEncodeError) -> str:
    """What is wrong with text UTF-8 cannot encode (a lone surrogate, as JSON's \\ud800)."""
    return f"its text holds a lone surrogate (U+{ord(exc.object[exc.start]):04X}): not Unicode"


def document_events(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The events of an EPCIS 2.0 document or query document, in document order."""
    if not isinstance(doc, Mapping):
        raise EventHashError(f"an EPCIS document must be a JSON object, not {type(doc).__name__}")
    body = doc.get("epcisBody")
    if not isinstance(body, Mapping):
        raise EventHashError("the document has no 'epcisBody' object")
    if "eventList" in body:
        events = body["eventList"]
    elif "queryResults" in body:
        results = body["queryResults"]
        rbody = results.get("resultsBody") if isinstance(results, Mapping) else None
        events = rbody.get("eventList", []) if isinstance(rbody, Mapping) else None
    elif "event" in body:
        events = [body["event"]]
    else:
        raise EventHashError("the epcisBody has no eventList, queryResults or event")
    if not isinstance(events, list):
        raise EventHashError("the document's eventList is not a list")
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise EventHashError(f"event {index} of the document is not a JSON object")
    return events


def document_ignore_fields(doc: Mapping[str, Any]) -> list[str]:
    """Properties the document asks hash generators to ignore (``…:ignoreFields``).

    Repositories list their own bookkeeping fields there (PR #114 of the reference
    implementation); they are looked for on the document and on its ``queryResults``.
    """
    found: list[str] = []
    places: list[Any] = [doc]
    body = doc.get("epcisBody")
    if isinstance(body, Mapping):
        places.append(body.get("queryResults"))
    for place in places:
        if not isinstance(place, Mapping):
            continue
        for key, value in place.items():
            if isinstance(key, str) and (key == "ignoreFields" or key.endswith(":ignoreFields")):
                values = value if isinstance(value, list) else [value]
                found.extend(v for v in values if isinstance(v, str))
    return found


def document_event_prehashes(doc: Mapping[str, Any]) -> list[str]:
    """The pre-hash string of every event of an EPCIS 2.0 document, in document order."""
    events = document_events(doc)
    context = namespaces_from_context(doc.get("@context"))
    ignore = document_ignore_fields(doc)
    result = []
    for index, event in enumerate(events):
        try:
            result.append(event_prehash(event, context, ignore=ignore))
        except EventHashError as exc:
            raise EventHashError(f"event {index}: {exc}") from None
    return result


def document_event_hashes(doc: Mapping[str, Any]) -> list[str]:
    """The CBV 2.0 hash ID of every event of an EPCIS 2.0 document, in document order."""
    hashes = []
    for index, prehash in enumerate(document_event_prehashes(doc)):
        try:
            hashes.append(hash_prehash(prehash))
        except EventHashError as exc:
            raise EventHashError(f"event {index}: {exc}") from None
    return hashes


def namespaces_from_context(context: Any) -> dict[str, str]:
    """Prefix → namespace IRI declared in a JSON-LD ``@context`` (string, object or list)."""
    found: dict[str, str] = {}
    items = context if isinstance(context, list) else [context]
    for item in items:
        if isinstance(item, Mapping):
            for prefix, iri in item.items():
                if isinstance(prefix, str) and isinstance(iri, str) and not prefix.startswith("@"):
                    found[prefix] = iri
    return found


# --------------------------------------------------------------------------- parsing


def _namespaces(context: Mapping[str, str] | None, event_context: Any) -> dict[str, str]:
    namespaces = dict(DEFAULT_NAMESPACES)
    if context:
        namespaces.update(context)
    if event_context is not None:
        namespaces.update(namespaces_from_context(event_context))
    return namespaces


def _expand_key(key: str, namespaces: Mapping[str, str]) -> str:
    prefix, sep, local = key.partition(":")
    if sep and prefix in namespaces:
        return "{" + namespaces[prefix] + "}" + local
    return key


def _expand_value(text: str, namespaces: Mapping[str, str]) -> str:
    """Expand CURIEs of GS1 vocabularies (``cbv:BizStep-x``, ``gs1:Angle``); others stay."""
    prefix, sep, local = text.partition(":")
    if sep and prefix in namespaces:
        iri = namespaces[prefix]
        if iri.startswith(_GS1_DOMAINS):
            return iri + local
    return text


def _scalar(value: Any, vocab: str | None, namespaces: Mapping[str, str], where: str) -> str:
    if isinstance(value, str):
        if vocab is not None and value and ":" not in value:
            return vocab + value.strip()
        return _expand_value(value, namespaces) if ":" in value else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    raise EventHashError(f"{where}: unsupported value of type {type(value).__name__}")


def _children(
    obj: Mapping[str, Any], parent: str, ns: Mapping[str, str], depth: int
) -> list[_Node]:
    if depth > _MAX_DEPTH:
        raise EventHashError(f"{parent}: nested deeper than {_MAX_DEPTH} levels")
    nodes: list[_Node] = []
    for raw_key, value in obj.items():
        if not isinstance(raw_key, str):
            raise EventHashError(f"{parent or 'event'}: property name {raw_key!r} is not a string")
        if raw_key in _IGNORED_KEYS or raw_key.startswith("@"):
            continue
        key = _expand_key(raw_key, ns) if ":" in raw_key else raw_key
        if key.endswith("List") or key == "childEPCs":
            item = _LIST_ITEM.get(key) or key[:-4]
            elements = value if isinstance(value, list) else [value]
            kids: list[_Node] = []
            for element in elements:
                kids.extend(_members(item, element, parent, ns, depth + 1))
            nodes.append((key, "", kids))
        else:
            nodes.extend(_members(key, value, parent, ns, depth + 1))
    return nodes


def _members(name: str, value: Any, parent: str, ns: Mapping[str, str], depth: int) -> list[_Node]:
    """The nodes of one property; a JSON array gives one node per element."""
    if isinstance(value, list):
        if depth > _MAX_DEPTH:
            raise EventHashError(f"{name}: nested deeper than {_MAX_DEPTH} levels")
        return [n for element in value for n in _members(name, element, parent, ns, depth + 1)]
    if isinstance(value, Mapping):
        text = value.get("#text", "")
        text = _scalar(text, None, ns, name) if text is not None else ""
        return [(name, text, _children(value, name, ns, depth))]
    return [(name, _scalar(value, _VOCAB.get((parent, name)), ns, name), [])]


# --------------------------------------------------------------------------- rendering


def _is_extension(name: str) -> bool:
    return "{" in name and "/}" in name


def _ordered(children: list[_Node], order: _Order, top: bool = False) -> str:
    """Render the children named in ``order`` (consuming them) plus, when nested, the
    user extensions of this element; unconsumed children stay in ``children``."""
    extensions: list[_Node] = []
    if (
        not top
        and len(children) > 1
        and not any("eventTime" in c[0] or "action" in c[0] for c in children)
    ):
        extensions = [c for c in children if _is_extension(c[0])]
        if extensions:
            children[:] = [c for c in children if not _is_extension(c[0])]
    parts: list[str] = []
    for name, sub_order in order:
        matching = [c for c in children if c[0] == name]
        if not matching:
            continue
        values = []
        for child in matching:
            text = _ordered_child(child, sub_order)
            if text:
                values.append(text)
        children[:] = [c for c in children if c[0] != name or c[2]]
        values.sort()
        parts.extend(values)
    if extensions:
        parts.append(_generic(extensions))
    return "".join(parts)


def _ordered_child(child: _Node, sub_order: _Order | None) -> str:
    name, value, grandchildren = child
    inner = _ordered(grandchildren, sub_order) if sub_order else ""
    text = value.strip()
    if text:
        lowered = name.lower()
        is_time = "time" in lowered and "offset" not in lowered
        text = _utc_millis(text) if is_time else _canon(text)
    if text:
        return name + "=" + text + inner
    return name + inner if inner else ""


def _generic(children: list[_Node]) -> str:
    values = [_generic_one(c) for c in children]
    values.sort()
    return "".join(values)


def _generic_one(node: _Node) -> str:
    name, value, children = node
    text = value.strip()
    head = name + "=" + _canon(text) if text else name
    kind = _LINK_LISTS.get(name)
    if kind is None:
        return head + _generic(children)
    links = []
    for link in children:
        ordered = [c for c in link[2] if c[0] == "type"] + [c for c in link[2] if c[0] == kind]
        others = [c for c in link[2] if c[0] not in ("type", kind)]
        links.append("".join(_generic_one(c) for c in ordered) + _generic(others))
    links.sort()
    return head + "".join(links)


# --------------------------------------------------------------------------- fast paths
# Direct renderings of the shapes gate events use; each returns None for any other shape,
# which then takes the general path. They must render exactly as _ordered/_generic do.

_FastRenderer = Callable[[str, Any, Mapping[str, str]], "str | None"]


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _str_text(value: str, vocab: str | None, ns: Mapping[str, str]) -> str:
    """The canonical text of a string value: _canon(_scalar(value).strip()), or ""."""
    if ":" in value and value.partition(":")[0] in ns:
        text = _expand_value(value, ns).strip()
        return _canon(text) if text else ""
    return _plain_text(value, vocab)


@lru_cache(maxsize=16384)
def _plain_text(value: str, vocab: str | None) -> str:
    """_str_text of a value without a CURIE prefix of the namespaces (cached)."""
    if vocab is not None and value and ":" not in value:
        value = vocab + value.strip()
    text = value.strip()
    return _canon(text) if text else ""


def _value_text(value: Any, ns: Mapping[str, str]) -> str | None:
    """The canonical text of a JSON scalar without vocabulary; None for other values."""
    kind = type(value)
    if kind is str:
        return _str_text(value, None, ns)
    if kind is float or kind is int:
        return _number_text(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return ""
    return None


@lru_cache(maxsize=4096, typed=True)
def _number_text(value: float) -> str:
    return _canon(str(value))


def _fast_scalar(key: str, value: Any, ns: Mapping[str, str]) -> str | None:
    if type(value) is str:
        text = _str_text(value, _TOP_VOCAB.get(key), ns)
    elif type(value) in _SCALARS:
        text = _scalar(value, None, ns, key).strip()
        text = _canon(text) if text else ""
    else:
        return None
    return key + "=" + text if text else ""


def _fast_event_time(key: str, value: Any, ns: Mapping[str, str]) -> str:
    """eventTime, which must be an ISO 8601 date-time: the hash rests on it."""
    if type(value) is str:
        utc = _fast_utc(value)
        if utc is not None:
            return key + "=" + utc
    if type(value) is str and len(value) == 32 and value[19] == ".":
        # the usual shape, microseconds and an offset ("…T20:26:37.176058+00:00"): UTC
        # up to the second from a cache, then the milliseconds as _utc_or_none rounds them
        micros = value[20:26]
        if micros.isascii() and micros.isdecimal():
            second = _utc_second(value[:19], value[26:])
            millis = round(int(micros), -3) // 1000
            if second is not None and millis < 1000:
                return f"{key}={second}.{millis:03d}Z"
    if isinstance(value, str):
        text = value.strip()
        utc = _utc_or_none(text)
        if utc is not None:
            return key + "=" + utc
    raise EventHashError(f"eventTime {value!r} is not an ISO 8601 date-time")


def _fast_epcs(key: str, value: Any, ns: Mapping[str, str]) -> str | None:
    if type(value) is not list:
        return None
    epcs = []
    # then an EPC (or Digital Link) URI is no CURIE: _fast_epc may convert it
    plain = "urn" not in ns and "https" not in ns
    for element in value:
        if type(element) is not str:
            return None
        text = _fast_epc(element) if plain else None
        if text is None:
            text = _str_text(element, None, ns)
        if text:
            epcs.append("epc=" + text)
    epcs.sort()
    return key + "".join(epcs) if epcs else ""


def _fast_place(key: str, value: Any, ns: Mapping[str, str]) -> str | None:
    if type(value) is not dict or len(value) != 1:
        return None
    place = value.get("id")
    if not isinstance(place, str):
        return None
    text = _str_text(place, None, ns)
    return key + "id=" + text if text else ""


def _slow(key: str, value: Any, ns: Mapping[str, str]) -> None:
    """No fast path: the general tree walk renders it."""


def _fast_links(name: str, value: Any, ns: Mapping[str, str]) -> str | None:
    """bizTransactionList / sourceList / destinationList of {type?, <kind>} objects."""
    if type(value) is not list:
        return None
    kind = _LINK_LISTS[name]
    vocab = _VOCAB[(kind, "type")]
    links = []
    for link in value:
        if type(link) is not dict:
            return None
        size = len(link)
        link_type = link.get("type")
        target = link.get(kind)
        if size != (link_type is not None) + (target is not None):
            return None  # other keys (or explicit nulls): the general path
        text = ""
        if link_type is not None:
            if type(link_type) is not str:
                return None
            canonical = _str_text(link_type, vocab, ns)
            text = "type=" + canonical if canonical else "type"
        if target is not None:
            if type(target) is not str:
                return None
            canonical = _str_text(target, None, ns)
            text += kind + "=" + canonical if canonical else kind
        links.append(text)
    links.sort()
    return name + "".join(links)


_TOP_VOCAB = {name: vocab for (parent, name), vocab in _VOCAB.items() if not parent}
_TOP_POSITION = {name: index for index, (name, _) in enumerate(_PROP_ORDER)}
_FAST_ORDERED: dict[str, _FastRenderer] = {
    **{name: _fast_scalar for name, sub_order in _PROP_ORDER if sub_order is None},
    "eventTime": _fast_event_time,
    "epcList": _fast_epcs,
    "childEPCs": _fast_epcs,
    "inputEPCList": _fast_epcs,
    "outputEPCList": _fast_epcs,
    "readPoint": _fast_place,
    "bizLocation": _fast_place,
}
_EPC_LISTS = frozenset(name for name, render in _FAST_ORDERED.items() if render is _fast_epcs)
_SKIP = (-1, _slow)
#: Top-level property -> (position in _PROP_ORDER, renderer), or _SKIP for ignored ones.
_TOP_SPEC: dict[Any, tuple[int, _FastRenderer]] = {
    **dict.fromkeys(_IGNORED_KEYS | _IGNORED_TOP, _SKIP),
    **{name: (index, _FAST_ORDERED.get(name, _slow)) for name, index in _TOP_POSITION.items()},
}


# --------------------------------------------------------------------------- values


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# The common shape, at most millisecond precision: only its minute changes in UTC.
_SIMPLE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d)(:[0-5]\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


@lru_cache(maxsize=4096)
def _utc_minute(minute: str, offset: str) -> str | None:
    moment = _parse_time(minute + offset)
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    return f"{date}T{moment.hour:02d}:{moment.minute:02d}"


@lru_cache(maxsize=4096)
def _utc_second(second: str, offset: str) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS`` and an offset -> that second in UTC, when _SIMPLE_TIME
    reads them (without a fraction); else None."""
    simple = _SIMPLE_TIME.fullmatch(second + offset)
    if simple is None or simple[3] is not None:
        return None
    minute = _utc_minute(simple[1], simple[4])
    return None if minute is None else minute + simple[2]


def _utc_millis(text: str) -> str:
    """ISO 8601 date-time -> UTC at millisecond precision (sub-ms rounded half to even, as
    the reference does); anything else is left as it is."""
    utc = _utc_or_none(text)
    return text if utc is None else utc


def _utc_or_none(text: str) -> str | None:
    simple = _SIMPLE_TIME.fullmatch(text)
    if simple is not None:
        minute = _utc_minute(simple[1], simple[4])
        fraction = simple[3] or ""
        if minute is not None and len(fraction) <= 3:
            return f"{minute}{simple[2]}.{fraction.ljust(3, '0')}Z"
        if minute is not None:  # datetime keeps 6 digits; round those to ms, half to even
            millis = round(int(fraction[:6].ljust(6, "0")), -3) // 1000
            if millis < 1000:  # (a carry into the next second takes the general path)
                return f"{minute}{simple[2]}.{millis:03d}Z"
    moment = _parse_time(text)
    if moment is None:
        return None
    if moment.tzinfo is None:  # no offset: read as UTC (the reference uses the host zone)
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    micros = round(moment.microsecond, -3)
    moment = moment.replace(microsecond=0) + timedelta(microseconds=micros)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


_NUMBER_START = frozenset("0123456789+-.")


def _numeric(text: str) -> str:
    """Numbers lose leading "+", leading zeros and a trailing ".0" (as Python's float
    formatting has it, which the reference uses); other text is unchanged."""
    if text[0] not in _NUMBER_START and text.isascii():
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    if number.is_integer():
        return str(int(number))
    return str(number)


@lru_cache(maxsize=8192)
def _canon(text: str) -> str:
    if text.startswith("urn:epcglobal:cbv:"):
        for urn, web in _CBV_URNS:
            text = text.replace(urn, web)
    text = _numeric(text)
    return gs1_digital_link(text) or text


# --------------------------------------------------------------------------- GS1 keys


def _check_digit(digits: str) -> str:
    total = 3 * sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2]))
    return str(-total % 10)


def _with_check(digits: str) -> str:
    return digits + _check_digit(digits)


def _encode(text: str) -> str:
    """Percent-encode what GS1 Digital Link needs encoded and EPC URIs leave bare."""
    for char, code in (
        ("!", "%21"),
        ("(", "%28"),
        (")", "%29"),
        ("*", "%2A"),
        ("+", "%2B"),
        (",", "%2C"),
        (":", "%3A"),
    ):
        text = text.replace(char, code)
    return text


# A character of a GS1 alphanumeric EPC component (TDS "GS3A3"), possibly %-escaped.
_C = (
    r"(?:%2[125-9A-Fa-f]|%3[0-9A-Fa-f]|%4[1-9A-Fa-f]|%5[0-9AaFf]|%6[1-9A-Fa-f]|%7[0-9Aa]"
    r"|[!')(*+,.0-9:;=A-Za-z_-])"
)
_CPI_C = r"(?:%2[3dfDF]|%3[0-9]|%4[1-9A-Fa-f]|%5[0-9Aa]|[0-9A-Z-])"
_EPC = re.compile(
    r"urn:epc:(?P<kind>id|class|idpat):(?P<scheme>[a-z]+):(?P<body>.+)",
    re.DOTALL,
)
_RE = {
    ("id", "sgtin"): re.compile(rf"(\d{{6,12}})\.(\d{{1,7}})\.({_C}{{1,20}})"),
    ("id", "sscc"): re.compile(r"(\d{6,12})\.(\d{5,11})"),
    ("id", "sgln"): re.compile(rf"(\d{{6,12}})\.(\d{{0,6}})\.({_C}{{1,20}})"),
    ("id", "grai"): re.compile(rf"(\d{{6,12}})\.(\d{{0,6}})\.({_C}{{1,16}})"),
    ("id", "giai"): re.compile(rf"(\d{{6,12}})\.({_C}{{1,24}})"),
    ("id", "gsrn"): re.compile(r"(\d{6,12})\.(\d{5,11})"),
    ("id", "gsrnp"): re.compile(r"(\d{6,12})\.(\d{5,11})"),
    ("id", "gdti"): re.compile(rf"(\d{{6,12}})\.(\d{{0,6}})\.({_C}{{1,17}})"),
    ("id", "cpi"): re.compile(rf"(\d{{6,12}})\.({_CPI_C}{{1,24}})\.(\d{{1,12}})"),
    ("id", "sgcn"): re.compile(r"(\d{6,12})\.(\d{0,6})\.(\d{1,12})"),
    ("id", "ginc"): re.compile(rf"(\d{{6,12}})\.({_C}{{1,24}})"),
    ("id", "gsin"): re.compile(r"(\d{6,12})\.(\d{4,10})"),
    ("id", "itip"): re.compile(rf"(\d{{6,12}})\.(\d{{1,7}})\.(\d\d)\.(\d\d)\.({_C}{{1,20}})"),
    ("id", "upui"): re.compile(rf"(\d{{6,12}})\.(\d{{1,7}})\.({_C}{{1,28}})"),
    ("id", "pgln"): re.compile(r"(\d{6,12})\.(\d{0,6})"),
    ("class", "lgtin"): re.compile(rf"(\d{{6,12}})\.(\d{{1,7}})\.({_C}{{1,20}})"),
    ("idpat", "sgtin"): re.compile(r"(\d{6,12})\.(\d{1,7})\.\*"),
    ("idpat", "grai"): re.compile(r"(\d{6,12})\.(\d{0,6})\.\*"),
    ("idpat", "gdti"): re.compile(r"(\d{6,12})\.(\d{0,6})\.\*"),
    ("idpat", "sgcn"): re.compile(r"(\d{6,12})\.(\d{0,6})\.\*"),
    ("idpat", "cpi"): re.compile(rf"(\d{{6,12}})\.({_CPI_C}{{1,24}})\.\*"),
    ("idpat", "itip"): re.compile(r"(\d{6,12})\.(\d{1,7})\.(\d\d)\.(\d\d)\.\*"),
    ("idpat", "upui"): re.compile(r"(\d{6,12})\.(\d{1,7})\.\*"),
}
# Total digits of company prefix + reference per scheme (the check digit excluded).
_DIGITS = {
    "sgtin": 13,
    "lgtin": 13,
    "itip": 13,
    "upui": 13,
    "sscc": 17,
    "sgln": 12,
    "grai": 12,
    "gdti": 12,
    "sgcn": 12,
    "pgln": 12,
    "gsrn": 17,
    "gsrnp": 17,
    "gsin": 16,
}
_DL = "https://id.gs1.org/"


@lru_cache(maxsize=4096)
def _gtin(prefix: str, item: str) -> str:
    return _with_check(item[:1] + prefix + item[1:])


# Plain SGTINs (alphanumeric serial, nothing to escape): the usual item ID, done directly.
_SIMPLE_SGTIN = re.compile(r"urn:epc:id:sgtin:(\d{6,12})\.(\d{1,7})\.([0-9A-Za-z]{1,20})")


def _epc_to_dl(uri: str) -> str | None:
    simple = _SIMPLE_SGTIN.fullmatch(uri)
    if simple is not None and len(simple[1]) + len(simple[2]) == 13:
        return f"{_DL}01/{_gtin(simple[1], simple[2])}/21/{simple[3]}"
    m = _EPC.fullmatch(uri)
    if m is None:
        return None
    kind, scheme = m["kind"], m["scheme"]
    pattern = _RE.get((kind, scheme))
    if pattern is None:
        return None
    p = pattern.fullmatch(m["body"])
    if p is None:
        return None
    g = p.groups()
    prefix = g[0]
    need = _DIGITS.get(scheme)
    if need is not None and len(prefix) + len(g[1]) != need:
        return None
    if scheme in ("giai", "ginc", "cpi") and len(prefix) + len(g[1]) > 30:
        return None
    if kind == "id":
        if scheme == "sgtin":
            return f"{_DL}01/{_gtin(prefix, g[1])}/21/{_encode(g[2])}"
        if scheme == "sscc":
            return f"{_DL}00/{_with_check(g[1][:1] + prefix + g[1][1:])}"
        if scheme == "sgln":
            gln = _with_check(prefix + g[1])
            return f"{_DL}414/{gln}" if g[2] == "0" else f"{_DL}414/{gln}/254/{_encode(g[2])}"
        if scheme == "grai":
            return f"{_DL}8003/{_with_check('0' + prefix + g[1])}{_encode(g[2])}"
        if scheme == "giai":
            return f"{_DL}8004/{prefix}{_encode(g[1])}"
        if scheme == "gsrn":
            return f"{_DL}8018/{_with_check(prefix + g[1])}"
        if scheme == "gsrnp":
            return f"{_DL}8017/{_with_check(prefix + g[1])}"
        if scheme == "gdti":
            return f"{_DL}253/{_with_check(prefix + g[1])}{_encode(g[2])}"
        if scheme == "cpi":
            return f"{_DL}8010/{_encode(prefix + g[1])}/8011/{g[2]}"
        if scheme == "sgcn":
            return f"{_DL}255/{_with_check(prefix + g[1])}{g[2]}"
        if scheme == "ginc":
            return f"{_DL}401/{prefix}{_encode(g[1])}"
        if scheme == "gsin":
            return f"{_DL}402/{_with_check(prefix + g[1])}"
        if scheme == "itip":
            return f"{_DL}8006/{_gtin(prefix, g[1])}{g[2]}{g[3]}/21/{_encode(g[4])}"
        if scheme == "upui":
            return f"{_DL}01/{_gtin(prefix, g[1])}/235/{_encode(g[2])}"
        if scheme == "pgln":
            return f"{_DL}417/{_with_check(prefix + g[1])}"
        return None
    if kind == "class":  # lgtin
        return f"{_DL}01/{_gtin(prefix, g[1])}/10/{_encode(g[2])}"
    if scheme in ("sgtin", "upui"):
        return f"{_DL}01/{_gtin(prefix, g[1])}"
    if scheme == "grai":
        return f"{_DL}8003/{_with_check('0' + prefix + g[1])}"
    if scheme == "gdti":
        return f"{_DL}253/{_with_check(prefix + g[1])}"
    if scheme == "sgcn":
        return f"{_DL}255/{_with_check(prefix + g[1])}"
    if scheme == "cpi":
        return f"{_DL}8010/{_encode(prefix + g[1])}"
    if scheme == "itip":
        return f"{_DL}8006/{_gtin(prefix, g[1])}{g[2]}{g[3]}"
    return None


_KEYS = "00|01|253|255|401|402|414|417|8003|8004|8006|8010|8017|8018"
_SHORT_NAMES = (
    ("/gtin/", "/01/"),
    ("/itip/", "/8006/"),
    ("/cpid/", "/8010/"),
    ("/gln/", "/414/"),
    ("/party/", "/417/"),
    ("/gsrnp/", "/8017/"),
    ("/gsrn/", "/8018/"),
    ("/gcn/", "/255/"),
    ("/sscc/", "/00/"),
    ("/gdti/", "/253/"),
    ("/ginc/", "/401/"),
    ("/gsin/", "/402/"),
    ("/grai/", "/8003/"),
    ("/giai/", "/8004/"),
    ("/cpv/", "/22/"),
    ("/lot/", "/10/"),
    ("/ser/", "/21/"),
)
_DL_LIKE = re.compile(
    r"https?://[^/?#]*[^?#]*/(?:"
    + _KEYS
    + r"|gtin|itip|cpid|gln|party|gsrnp|gsrn|gcn|sscc|gdti|ginc|gsin|grai|giai)/\d{4}[^/]"
)
_CANONICAL_HOST = re.compile(r"https://id\.gs1\.org/(?:" + _KEYS + r")/\d{4}")
# Characters allowed in GS1 Digital Link path values here (a subset of GS1 AI encodable set 82).
_V = r"[\"'\-.0-9;-?A-Z_a-z]"
_VALID_DL = re.compile(
    r"https://id\.gs1\.org/(?:"
    r"00/\d{18}"
    rf"|01/\d{{14}}(?:/21/{_V}{{0,20}}|/10/{_V}{{0,20}}|/235/{_V}{{0,28}})?"
    rf"|253/\d{{13}}{_V}{{0,17}}"
    r"|255/\d{13}\d{0,12}"
    rf"|401/{_V}{{0,30}}"
    r"|402/\d{17}"
    rf"|414/\d{{13}}(?:/254/{_V}{{0,20}})?"
    r"|417/\d{13}"
    rf"|8003/\d{{14}}{_V}{{0,16}}"
    rf"|8004/{_V}{{0,30}}"
    rf"|8006/\d{{18}}(?:/21/{_V}{{0,20}}|/10/{_V}{{0,20}})?"
    r"|8010/[#\-/0-9A-Z]{0,30}(?:/8011/\d{0,12})?"
    r"|8017/\d{18}"
    r"|8018/\d{18}"
    r")"
)
_CPV = re.compile(r"(https://id\.gs1\.org/(?:01/\d{14}|8006/\d{18}))/22/[^/]*")
_LOT_AND_SERIAL = re.compile(r"(https://id\.gs1\.org/(?:01/\d{14}|8006/\d{18}))/10/[^/]*(/21/)")


def _canonical_dl(uri: str) -> str | None:
    if _DL_LIKE.match(uri) is None:
        return None
    uri = uri.split("?", 1)[0]
    for short, ai in _SHORT_NAMES:
        uri = uri.replace(short, ai)
    if _CANONICAL_HOST.match(uri) is None:
        for key in _KEYS.split("|"):
            at = uri.find("/" + key + "/")
            if at >= 0:
                uri = _DL + uri[at + 1 :]
                break
    m = re.match(r"https://id\.gs1\.org/01/(\d+)", uri)
    if m is not None and len(m[1]) in (8, 12, 13):
        uri = uri.replace("/01/", "/01/" + "0" * (14 - len(m[1])), 1)
    uri = _CPV.sub(r"\1", uri)
    uri = _LOT_AND_SERIAL.sub(r"\1\2", uri)
    return uri if _VALID_DL.fullmatch(uri) else None


def gs1_digital_link(uri: str) -> str | None:
    """The canonical GS1 Digital Link URI (``https://id.gs1.org/…``, most specific key
    level, no query string or CPV) of an EPC URI, EPC class or pattern URI, or Digital
    Link URI; None when ``uri`` is none of those."""
    if uri.startswith("urn:epc:"):
        return _epc_to_dl(uri)
    if uri.startswith(("http://", "https://")):
        return _canonical_dl(uri)
    return None


# --------------------------------------------------------------------------- common shape
# The whole event in one pass when every property has a shape the ledger's events use
# (Z or ±HH:00 event times, SGTIN / SSCC / SGLN EPCs, scalar properties, places, one-link
# business transactions): per property a bounded cache of its rendering, and direct
# converters for what is unique per event (eventTime, the EPCs). Anything else returns
# None and the event takes the per-property path of _prehash, which defines the result.

_ORDER_SLOTS = len(_PROP_ORDER)
_CACHE_MAX = 4096


_Kept = TypeVar("_Kept")


def _remember(cache: dict[Any, _Kept], key: Any, value: _Kept, limit: int = _CACHE_MAX) -> _Kept:
    """cache[key] = value, emptying the cache first when it holds ``limit`` entries."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


#: (key, place id) / (key, link type, link target) / (key, value, type) -> _Rendered.
_PLACE_RENDERED: dict[tuple[str, str], _Rendered] = {}
_LINK_RENDERED: dict[tuple[str, str, str], _Rendered] = {}
_SCALAR_RENDERED: dict[tuple[Any, Any, type], _Rendered] = {}


def _shape_prehash(
    event: dict[Any, Any],
    plans: dict[tuple[Any, ...], Any] | None = None,
    namespaces: Mapping[str, str] = DEFAULT_NAMESPACES,
) -> str | None:
    """event_prehash under ``namespaces`` with nothing ignored, for the common shape; None
    for anything else (including every malformed event). ``plans`` are those of
    _plans_for(namespaces): DEFAULT_NAMESPACES, or others under which every value renders
    as under them, so that only the extensions' names differ (expanded in the plan).

    Events of one key tuple share a plan; of those, events whose ordered properties other
    than eventTime and epcList (and whose places and business transactions) are the same
    share their texts (_STATIC), so an event costs its eventTime, its EPCs and its
    extensions (each from a bounded cache). Other events render property by property."""
    if plans is None:
        plans = _PLANS
    keys = tuple(event)
    plan: Any = plans.get(keys)
    if plan is None:
        if len(plans) >= _PLANS_MAX:
            plans.clear()
        plan = plans[keys] = _plan(keys, namespaces)
    if not plan:
        if namespaces is not DEFAULT_NAMESPACES:
            return None  # (_shape_parts renders extensions under the default namespaces)
        parts = _shape_parts(event)
        if parts is None:
            return None
        event_type, ordered, rest = parts
        rest.sort()
        return "eventType=" + event_type + "".join(ordered) + "".join(rest)
    number, scalars, places, links, extensions, static_keys = plan
    # the static key: what the properties other than eventTime, epcList and the
    # extensions render from (see _STATIC)
    values = scalars(event)
    kinds = tuple(map(type, values))
    if not _SCALAR_KINDS.issuperset(kinds):
        return None
    static_key: tuple[Any, ...] = (number, values, kinds)
    for name in places:
        place = event[name]
        if type(place) is not dict or len(place) != 1:
            return None
        place_id = place.get("id")
        if type(place_id) is not str:
            return None
        static_key += (place_id,)
    for name in links:
        value = event[name]
        if type(value) is not list or len(value) != 1:
            return None
        link = value[0]
        if type(link) is not dict or len(link) != 2:
            return None
        link_type = link.get("type")
        target = link.get(_LINK_LISTS[name])
        if type(link_type) is not str or type(target) is not str:
            return None
        static_key += (link_type, target)
    static = _STATIC.get(static_key)
    if static is None:
        parts = _shape_parts({key: event[key] for key in static_keys})
        if parts is None:
            return None
        event_type, ordered, rest = parts
        rest.sort()
        static = (
            "eventType=" + event_type + "eventTime=",
            ordered[1] + ordered[2],
            "".join(ordered[4:]) + ("" if extensions else "".join(rest)),
            tuple(rest),
        )
        _remember(_STATIC, static_key, static, _STATIC_MAX)
    event_time = event["eventTime"]
    epcs = event["epcList"]
    if type(event_time) is not str or type(epcs) is not list:
        return None
    utc = _fast_utc(event_time)
    if utc is None:
        return None
    epc_text = _shape_epcs(epcs)
    if epc_text is None:
        return None
    text = f"{static[0]}{utc}{static[1]}{epc_text}{static[2]}"  # (one copy, not four)
    if not extensions:
        return text
    extras = list(static[3])
    # rendered by their expanded names under the default namespaces: as the general path
    # renders them under ``namespaces``
    for key, name, head in extensions:
        value = event[key]
        kind = type(value)
        if kind is str:
            if head and _renders_as_is(value):  # (unique values: no cache entry each)
                extras.append(head + value)
                continue
            rendered = _STR_RENDERED.get((name, value)) or _cached_str(name, value)
        elif kind in _SCALAR_KINDS:
            scalar_key = (name, value, kind)
            rendered = _SCALAR_RENDERED.get(scalar_key) or _remember(
                _SCALAR_RENDERED, scalar_key, _render_top(name, value, DEFAULT_NAMESPACES, ())
            )
        else:
            listed = _cached_render(name, value)
            if listed is None:
                return None
            rendered = listed
        if rendered[2]:
            extras += rendered[2]
    extras.sort()
    return text + "".join(extras)


#: A plan for the events of one key tuple: (its number, a getter of the values of type
#: and its other ordered scalar properties, its place properties, its link-list
#: properties, its extension (and other unordered) properties as (key, expanded name,
#: "name=" or "" when a string value may not render as "name=value"), the keys its static
#: texts render from); False: no plan.
_Plan = tuple[
    int,
    Callable[[Any], tuple[Any, ...]],
    tuple[str, ...],
    tuple[str, ...],
    tuple[tuple[str, str, str], ...],
    tuple[str, ...],
]
_PLANS: dict[tuple[Any, ...], Any] = {}  # key tuple -> its _Plan, or False
_PLANS_MAX = 256
#: namespaces (as their items) -> the plans of the common shape under them (as _PLANS is
#: under DEFAULT_NAMESPACES), or None when values may render otherwise under them.
_NS_PLANS: dict[tuple[tuple[str, str], ...], dict[tuple[Any, ...], Any] | None] = {}
_NS_PLANS_MAX = 64
_DEFAULT_GS1 = {p: iri for p, iri in DEFAULT_NAMESPACES.items() if iri.startswith(_GS1_DOMAINS)}
_PLAN_NUMBERS = itertools.count()
#: (plan number, scalar values, their types, place ids, link types and targets) -> the
#: texts before the eventTime value, between it and the EPCs, after the EPCs, and the
#: sorted texts that the extensions' texts join.
_STATIC: dict[tuple[Any, ...], tuple[str, str, str, tuple[str, ...]]] = {}
_STATIC_MAX = 1024  # (entries of about a kilobyte: their texts)
_SCALAR_KINDS = frozenset({str, int, float, bool, _NONE_TYPE})


def _plans_for(namespaces: Mapping[str, str]) -> dict[tuple[Any, ...], Any] | None:
    """The plans of the common shape under ``namespaces``; None unless every value renders
    under them as under DEFAULT_NAMESPACES: _expand_value expands only prefixes of GS1
    IRIs, so those must be the default ones (others, like a gate event's ``pgate``, change
    only the names of extensions). Prefixes and IRIs must be strings."""
    if namespaces is DEFAULT_NAMESPACES:
        return _PLANS
    items = tuple(namespaces.items())
    for prefix, iri in items:
        if type(prefix) is not str or type(iri) is not str:
            return None
    try:
        return _NS_PLANS[items]
    except KeyError:  # (a namespace set met for the first time)
        gs1 = {prefix: iri for prefix, iri in items if iri.startswith(_GS1_DOMAINS)}
        return _remember(_NS_PLANS, items, {} if gs1 == _DEFAULT_GS1 else None, _NS_PLANS_MAX)


#: An event's @context (as its strings and the items of its objects) -> (plans, namespaces)
#: for _shape_prehash, or None when _plans_for has none.
_CONTEXT_PLANS: dict[Any, tuple[dict[tuple[Any, ...], Any], Mapping[str, str]] | None] = {}


def _context_plans(
    event_context: Any,
) -> tuple[dict[tuple[Any, ...], Any], Mapping[str, str]] | None:
    """_plans_for the namespaces of an event's own @context (and the default ones), with
    those namespaces; None for a context of other than strings and objects of strings."""
    if type(event_context) is not list:
        event_context = [event_context]
    key: list[Any] = []
    for element in event_context:
        if type(element) is str:
            key.append(element)
        elif type(element) is dict:
            items = tuple(element.items())
            for prefix, iri in items:
                if type(prefix) is not str or type(iri) is not str:
                    return None
            key.append(items)
        else:
            return None
    context_key = tuple(key)
    try:
        return _CONTEXT_PLANS[context_key]
    except KeyError:  # (a context met for the first time)
        namespaces: Mapping[str, str] = _namespaces(None, event_context)
        if namespaces == DEFAULT_NAMESPACES:
            namespaces = DEFAULT_NAMESPACES  # (then events without an epcList too)
        plans = _plans_for(namespaces)
        found = None if plans is None else (plans, namespaces)
        return _remember(_CONTEXT_PLANS, context_key, found, _NS_PLANS_MAX)


_FLOAT_CHARS = "0123456789+-._eEiInNfFaAtTyY"  # all that float() reads in ASCII text
#: CURIE prefixes _str_text may expand, and the URI schemes _canon may rewrite.
_REWRITTEN_PREFIXES = tuple(
    f"{prefix}:" for prefix in (*DEFAULT_NAMESPACES, "urn", "http", "https")
)


def _renders_as_is(value: str) -> bool:
    """Whether _str_text(value, None, DEFAULT_NAMESPACES) is ``value`` itself: ASCII
    without white space at its ends, no number to float(), no EPC, CBV or web URI to
    _canon and no CURIE to expand. (False says only: render it.)"""
    if (
        not value.isascii()
        or value[:1] <= " "
        or value[-1] <= " "
        or value.startswith(_REWRITTEN_PREFIXES)
    ):
        return False
    return value[0] not in _NUMBER_START or value.strip(_FLOAT_CHARS) != ""  # (else maybe a number)


def _plan(keys: tuple[Any, ...], namespaces: Mapping[str, str]) -> _Plan | bool:
    """The plan of events with these keys under ``namespaces``; False when they have no
    type, eventTime or epcList, or a key that is not a string."""
    if "type" not in keys or "eventTime" not in keys or "epcList" not in keys:
        return False
    scalars: list[str] = ["type"]
    places: list[str] = []
    links: list[str] = []
    extensions: list[tuple[str, str, str]] = []
    for key in keys:
        if type(key) is not str:
            return False
        if key in ("type", "eventTime", "epcList") or key.startswith("@"):
            continue
        spec = _TOP_SPEC.get(key)
        if spec is _SKIP:
            continue  # eventID, recordTime…: whatever their value, no part of the hash
        if key in _PLACES:
            places.append(key)
        elif key in _LINK_LISTS:
            links.append(key)
        elif spec is not None:
            scalars.append(key)
        else:
            name = _expand_key(key, namespaces) if ":" in key else key
            # "…List" names render their string values as lists ("fooListfoo=x")
            extensions.append((key, name, "" if name.endswith("List") else name + "="))
    # (of one key, itemgetter would give the value, not a 1-tuple)
    getter = (
        operator.itemgetter(*scalars) if len(scalars) > 1 else operator.itemgetter("type", "type")
    )
    static_keys = (*scalars, *places, *links)
    return (
        next(_PLAN_NUMBERS),
        getter,
        tuple(places),
        tuple(links),
        tuple(extensions),
        static_keys,
    )


def _shape_parts(event: dict[Any, Any]) -> tuple[str, list[str], list[str]] | None:
    """The event type, the texts of the _PROP_ORDER positions and the rest (unsorted) of
    the event, property by property from the caches; None when a property is not of the
    common shape (or the event is malformed)."""
    event_type = event.get("type")
    if type(event_type) is not str:
        return None
    event_type = event_type.strip()
    if not event_type:
        return None
    ordered = [""] * _ORDER_SLOTS
    rest: list[str] = []
    for key, value in event.items():
        kind = type(value)
        if kind is str:
            if key == "eventTime":
                utc = _fast_utc(value)
                if utc is None:
                    return None
                ordered[0] = "eventTime=" + utc
                continue
            rendered = _STR_RENDERED.get((key, value))
            if rendered is None:
                rendered = _cached_str(key, value)
        elif key == "eventTime":
            return None
        elif kind is list:
            if key == "epcList":
                text = _shape_epcs(value)
                if text is None:
                    return None
                ordered[3] = text
                continue
            rendered = None
            if len(value) == 1 and key in _LINK_LISTS:
                link = value[0]
                if type(link) is dict and len(link) == 2:
                    link_type = link.get("type")
                    target = link.get(_LINK_LISTS[key])
                    if type(link_type) is str and type(target) is str:
                        link_key = (key, link_type, target)
                        rendered = _LINK_RENDERED.get(link_key)
                        if rendered is None:
                            rendered = _remember(
                                _LINK_RENDERED,
                                link_key,
                                _render_top(key, value, DEFAULT_NAMESPACES, ()),
                            )
            if rendered is None:
                rendered = _cached_render(key, value)
                if rendered is None:
                    return None
        elif kind is dict:
            rendered = None
            if len(value) == 1 and key in _PLACES:
                place = value.get("id")
                if type(place) is str:
                    place_key = (key, place)
                    rendered = _PLACE_RENDERED.get(place_key)
                    if rendered is None:
                        rendered = _remember(
                            _PLACE_RENDERED,
                            place_key,
                            _render_top(key, value, DEFAULT_NAMESPACES, ()),
                        )
            if rendered is None:
                return None
        elif kind in _CACHED_SCALARS:
            scalar_key = (key, value, kind)
            rendered = _SCALAR_RENDERED.get(scalar_key)
            if rendered is None:
                rendered = _remember(
                    _SCALAR_RENDERED,
                    scalar_key,
                    _render_top(key, value, DEFAULT_NAMESPACES, ()),
                )
        else:
            return None
        position, text, extra = rendered
        if position >= 0:
            ordered[position] = text
        if extra:
            rest += extra
    return event_type, ordered, rest


#: "urn:epc:id:sgtin:<company prefix>.<item reference>." -> "epcListepc=" and its Digital
#: Link up to the serial ("https://id.gs1.org/01/<GTIN>/21/").
_SGTIN_HEADS: dict[str, str] = {}


def _shape_epcs(value: list[Any]) -> str | None:
    """_fast_epcs("epcList", value) under DEFAULT_NAMESPACES."""
    if len(value) == 1:
        epc = value[0]
        if type(epc) is not str:
            return None
        # an SGTIN: its text up to the serial from a cache, a plain serial appended
        head = _SGTIN_HEADS.get(epc[:32])
        if head is not None:
            serial = epc[32:]
            if serial.isalnum() and serial.isascii() and len(serial) <= 20:
                return head + serial
        text = _fast_epc(epc)
        if text is not None and epc.startswith("urn:epc:id:sgtin:"):
            gtin = _GTINS.get(epc[17:31])  # (_fast_epc checked the "." after it)
            if gtin is not None:
                _remember(_SGTIN_HEADS, epc[:32], "epcListepc=" + _DL_GTIN + gtin + "/21/")
        if text is None:
            text = _str_text(epc, None, DEFAULT_NAMESPACES)
        return "epcListepc=" + text if text else ""
    return _fast_epcs("epcList", value, DEFAULT_NAMESPACES)


# ---- event times: "YYYY-MM-DDTHH:MM:SS(.f{1,9})?(Z|±HH:00)" by slicing

_MINUTES = frozenset(f":{minute:02d}" for minute in range(60))
#: "YYYY-MM-DDTHH" + zone -> that hour in UTC ("YYYY-MM-DDTHH"), for zones of whole hours.
_UTC_HOURS: dict[str, str] = {}
#: ":MM:SS" of every minute and second of an hour.
_MINUTE_SECONDS = frozenset(f"{minute}{second}" for minute in _MINUTES for second in _MINUTES)
_MILLIS = frozenset(f".{millis:03d}" for millis in range(1000))
_ASCII_DIGITS = frozenset("0123456789")


def _fast_utc(text: str) -> str | None:
    """_utc_or_none(text) for the common forms of an event time; None for any other text
    (then _utc_or_none decides)."""
    size = len(text)
    if text[-1:] == "Z":
        zone = "Z"
        end = size - 1
    elif size >= 25 and text[-3] == ":":
        zone = text[-6:]
        end = size - 6
    else:
        return None
    if end < 19:
        return None
    hour = _UTC_HOURS.get(text[:13] + zone)
    if hour is None:
        hour = _utc_hour(text[:13], zone)
        if hour is None:
            return None
    if text[13:19] not in _MINUTE_SECONDS:
        return None
    if end == 23 and text[19:23] in _MILLIS:  # the usual milliseconds
        return hour + text[13:23] + "Z"
    if end == 19:
        return hour + text[13:19] + ".000Z"
    if text[19] != ".":
        return None
    fraction = text[20:end]
    if not (fraction.isdigit() and fraction.isascii()):
        return None
    digits = end - 20
    if digits == 3:
        return hour + text[13:20] + fraction + "Z"
    if digits < 3:
        return hour + text[13:20] + fraction.ljust(3, "0") + "Z"
    if digits > 9:
        return None
    millis = round(int(fraction[:6].ljust(6, "0")), -3) // 1000
    if millis >= 1000:
        return None
    return hour + text[13:20] + f"{millis:03d}Z"


def _utc_hour(hour: str, zone: str) -> str | None:
    """ "YYYY-MM-DDTHH" with ASCII digits (years 1000-9998) and a zone "Z" or "±HH:00" ->
    that hour in UTC, as _utc_minute converts it (remembered); None for anything else."""
    if len(hour) != 13 or hour[4] != "-" or hour[7] != "-" or hour[10] != "T":
        return None
    digits = hour[:4] + hour[5:7] + hour[8:10] + hour[11:13]
    if not (digits.isdigit() and digits.isascii()) or not "1000" <= hour[:4] <= "9998":
        return None
    if zone != "Z" and (
        len(zone) != 6
        or zone[0] not in "+-"
        or zone[1] not in _ASCII_DIGITS
        or zone[2] not in _ASCII_DIGITS
        or zone[3:] != ":00"
    ):
        return None
    minute = _utc_minute(hour + ":00", zone)
    if minute is None:
        return None
    return _remember(_UTC_HOURS, hour + zone, minute[:13])


# ---- EPC pure identities: SGTIN, SSCC and SGLN by slicing

_DL_GTIN = _DL + "01/"
_DL_SSCC = _DL + "00/"
_DL_GLN = _DL + "414/"
#: Company prefix "." item reference (SGTIN) / location reference (SGLN) -> GTIN / GLN.
_GTINS: dict[str, str] = {}
_GLNS: dict[str, str] = {}


def _check(digits: str) -> str:
    """_check_digit of ASCII digits, from byte sums."""
    data = digits.encode()
    size = len(data)
    total = sum(data) + 2 * sum(data[::-2]) - 48 * (size + 2 * ((size + 1) // 2))
    return "0123456789"[-total % 10]


def _company_key(body: str, digits_needed: int, item_first: bool) -> str | None:
    """ "<company prefix>.<reference>" (6-12 prefix digits, ``digits_needed`` in all) ->
    the GS1 key with its check digit; None when it is not that."""
    prefix, dot, reference = body.partition(".")
    if not dot or not 6 <= len(prefix) <= 12:
        return None
    digits = reference[:1] + prefix + reference[1:] if item_first else prefix + reference
    if len(digits) != digits_needed or not (digits.isdigit() and digits.isascii()):
        return None
    return digits + _check(digits)


# A GS1 alphanumeric EPC component of 1-20 characters (SGTIN serial, SGLN extension).
_COMPONENT = re.compile(rf"{_C}{{1,20}}")


def _fast_epc(uri: str) -> str | None:
    """_str_text(uri) (the Digital Link) of a plain SGTIN, SSCC or SGLN pure-identity URI
    or of a canonical GTIN + serial Digital Link; None for any other text (then the
    general path decides)."""
    if uri.startswith("urn:epc:id:sgtin:"):
        body = uri[17:31]
        gtin = _GTINS.get(body)
        if gtin is None:
            gtin = _company_key(body, 13, True)
            if gtin is None:
                return None
            _remember(_GTINS, body, gtin)
        if uri[31:32] != ".":
            return None
        serial = uri[32:]
        if serial.isalnum() and serial.isascii() and len(serial) <= 20:
            return _DL_GTIN + gtin + "/21/" + serial
        if _COMPONENT.fullmatch(serial) is not None:
            return _DL_GTIN + gtin + "/21/" + _encode(serial)
        return None
    if uri.startswith("urn:epc:id:sgln:"):
        body = uri[16:29]
        gln = _GLNS.get(body)
        if gln is None:
            gln = _company_key(body, 12, False)
            if gln is None:
                return None
            _remember(_GLNS, body, gln)
        if uri[29:30] != ".":
            return None
        extension = uri[30:]
        if extension == "0":
            return _DL_GLN + gln
        if extension.isalnum() and extension.isascii() and len(extension) <= 20:
            return _DL_GLN + gln + "/254/" + extension
        if _COMPONENT.fullmatch(extension) is not None:
            return _DL_GLN + gln + "/254/" + _encode(extension)
        return None
    if uri.startswith("urn:epc:id:sscc:") and len(uri) == 34:
        sscc = _company_key(uri[16:], 17, True)
        return None if sscc is None else _DL_SSCC + sscc
    if uri.startswith(_DL_GTIN) and uri[36:40] == "/21/":
        # a canonical GTIN + serial Digital Link (items whose EPC URI is unknown): as it is
        gtin = uri[22:36]
        serial = uri[40:]
        if (
            gtin.isdigit()
            and gtin.isascii()
            and serial.isalnum()
            and serial.isascii()
            and len(serial) <= 20
        ):
            return uri
    return None
