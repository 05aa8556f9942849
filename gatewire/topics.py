"""MQTT topic layout: ``provgate/v1/{site}/{gate}/{channel}``.

Builders for the topics a gate and the gateway publish and subscribe to, and a parser that
turns a concrete topic back into (site, gate, channel). The parser never raises: a topic
that is not ours comes back as a :class:`TopicError` value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "provgate/v1"
"""Root of every provgate topic; the version changes only with an incompatible topic layout."""

GATEWAY = "gateway"
"""Reserved name in the gate position: ``provgate/v1/{site}/gateway/status``."""

ID_PATTERN = r"^[a-z0-9_-]{1,64}$"
"""Site and gate ids: lowercase letters, digits, ``-`` and ``_``; 1 to 64 characters."""

_ID_RE = re.compile(ID_PATTERN)
_SHARE_GROUP_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Channel(StrEnum):
    """What a topic carries; the value is the topic suffix after ``{site}/{gate}/``."""

    VERIFY_REQUEST = "verify/request"
    """gate → gateway: ``verify_request`` and ``verify_batch_request``."""
    VERDICT = "verify/verdict"
    """gateway → gate: ``verdict``, ``batch_verdict`` and ``error``."""
    EVENT = "event"
    """gate → gateway ledger: ``gate_event``."""
    HEARTBEAT = "heartbeat"
    """gate → gateway: ``heartbeat``."""
    STATUS = "status"
    """Retained ``availability``; set offline by the client's last will."""


_CHANNEL_BY_SUFFIX = {c.value: c for c in Channel}


def is_valid_id(value: str) -> bool:
    """True when ``value`` may be used as a site or gate id in topics and messages."""
    return _ID_RE.fullmatch(value) is not None


def _check_id(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"invalid {what} id {value!r}: need 1-64 chars of [a-z0-9_-]")
    return value


def _check_gate(gate: str) -> str:
    _check_id(gate, "gate")
    if gate == GATEWAY:
        raise ValueError(f"{GATEWAY!r} is reserved and cannot be a gate id")
    return gate


def shared_subscription(group: str, topic_filter: str) -> str:
    """MQTT 5 shared subscription ``$share/{group}/{filter}``: the broker load-balances
    matching messages across the group's subscribers (several gateway workers)."""
    if _SHARE_GROUP_RE.fullmatch(group) is None:
        raise ValueError(f"invalid share group {group!r}: need 1-64 chars of [A-Za-z0-9_-]")
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True, slots=True)
class GateTopics:
    """The topics of one gate. Raises ``ValueError`` on an invalid site or gate id."""

    site: str
    gate: str

    def __post_init__(self) -> None:
        _check_id(self.site, "site")
        _check_gate(self.gate)

    def topic(self, channel: Channel) -> str:
        """The concrete topic of ``channel`` for this gate."""
        return f"{PREFIX}/{self.site}/{self.gate}/{channel.value}"

    @property
    def verify_request(self) -> str:
        """gate publishes verification requests (single and batch) here."""
        return self.topic(Channel.VERIFY_REQUEST)

    @property
    def verdict(self) -> str:
        """gate subscribes here for verdicts and error replies."""
        return self.topic(Channel.VERDICT)

    @property
    def event(self) -> str:
        """gate publishes ledger events here (QoS 1)."""
        return self.topic(Channel.EVENT)

    @property
    def heartbeat(self) -> str:
        """gate publishes periodic heartbeats here."""
        return self.topic(Channel.HEARTBEAT)

    @property
    def status(self) -> str:
        """Retained availability of this gate; its last will publishes ``online: false``."""
        return self.topic(Channel.STATUS)

    @property
    def gateway_status(self) -> str:
        """Retained availability of this site's gateway (the gate subscribes to it)."""
        return SiteTopics(self.site).gateway_status


@dataclass(frozen=True, slots=True)
class SiteTopics:
    """Gateway-side topics and subscription filters of one site."""

    site: str

    def __post_init__(self) -> None:
        _check_id(self.site, "site")

    def gate(self, gate: str) -> GateTopics:
        """The topics of one gate of this site."""
        return GateTopics(self.site, gate)

    def all_gates(self, channel: Channel) -> str:
        """Subscription filter for ``channel`` of every gate: ``provgate/v1/{site}/+/…``."""
        return f"{PREFIX}/{self.site}/+/{channel.value}"

    @property
    def gateway_status(self) -> str:
        """Retained availability of the gateway; its last will publishes ``online: false``."""
        return f"{PREFIX}/{self.site}/{GATEWAY}/{Channel.STATUS.value}"

    @property
    def verify_requests(self) -> str:
        """Filter for every gate's verification requests."""
        return self.all_gates(Channel.VERIFY_REQUEST)

    def shared_verify_requests(self, group: str = "gateway") -> str:
        """MQTT 5 shared subscription to every gate's requests, spread over ``group``."""
        return shared_subscription(group, self.verify_requests)

    @property
    def events(self) -> str:
        """Filter for every gate's ledger events."""
        return self.all_gates(Channel.EVENT)

    @property
    def heartbeats(self) -> str:
        """Filter for every gate's heartbeats."""
        return self.all_gates(Channel.HEARTBEAT)

    @property
    def statuses(self) -> str:
        """Filter for every gate's (and the gateway's own) availability."""
        return self.all_gates(Channel.STATUS)


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A concrete provgate topic taken apart."""

    site: str
    gate: str
    channel: Channel

    @property
    def is_gateway(self) -> bool:
        """True for the gateway's own status topic."""
        return self.gate == GATEWAY


@dataclass(frozen=True, slots=True)
class TopicError:
    """Why a topic is not a valid concrete provgate topic."""

    reason: str


def parse_topic(topic: str) -> ParsedTopic | TopicError:
    """Split ``provgate/v1/{site}/{gate}/{channel}``; never raises.

    Wildcards, shared-subscription prefixes, unknown channels and invalid ids give a
    :class:`TopicError`. The ``gateway`` pseudo-gate is valid only with ``status``.
    """
    prefix = PREFIX + "/"
    if not topic.startswith(prefix):
        return TopicError(f"not under {PREFIX}/")
    parts = topic[len(prefix) :].split("/", 2)
    if len(parts) != 3:
        return TopicError("expected {site}/{gate}/{channel} after the prefix")
    site, gate, suffix = parts
    if not is_valid_id(site):
        return TopicError(f"invalid site id {site!r}")
    if not is_valid_id(gate):
        return TopicError(f"invalid gate id {gate!r}")
    channel = _CHANNEL_BY_SUFFIX.get(suffix)
    if channel is None:
        return TopicError(f"unknown channel {suffix!r}")
    if gate == GATEWAY and channel is not Channel.STATUS:
        return TopicError(f"{GATEWAY!r} has only a status topic")
    return ParsedTopic(site, gate, channel)
