"""MQTT 3.1.1 packets and topic rules for the embedded broker (:mod:`simulators.embedded_broker`).

Decoders take the body of one packet (after the fixed header) and raise
:class:`MalformedPacketError` on anything the specification forbids; encoders return the
whole packet. Only what a broker receives is decoded and only what it sends is encoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Control packet types (the high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# CONNACK return codes (3.1.1) and the MQTT 5 reason code for an unsupported version.
ACCEPTED, REFUSED_PROTOCOL_VERSION, REFUSED_IDENTIFIER = 0x00, 0x01, 0x02
V5_UNSUPPORTED_PROTOCOL_VERSION = 0x84
SUBACK_FAILURE = 0x80

# Fixed-header flags every packet type but PUBLISH must carry exactly.
REQUIRED_FLAGS = {SUBSCRIBE: 0b0010, UNSUBSCRIBE: 0b0010, PUBREL: 0b0010}

MAX_REMAINING_LENGTH = 268_435_455
SHARE_PREFIX = "$share/"

PINGRESP_PACKET = bytes((PINGRESP << 4, 0))


class MalformedPacketError(ValueError):
    """The bytes break the MQTT 3.1.1 rules; the connection that sent them must close."""


@dataclass(frozen=True, slots=True)
class Will:
    """A last will: published by the broker when its connection ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Connect:
    """A decoded CONNECT (protocol level 3 or 4; other levels stop at ``level``)."""

    level: int
    clean_session: bool = True
    keepalive: int = 0
    client_id: str = ""
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """A decoded PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int = 0


# ---- framing ---------------------------------------------------------------------------


def frame_header(buf: bytes | bytearray, max_packet: int) -> tuple[int, int] | None:
    """``(header_len, remaining_len)`` of the packet at the start of ``buf``, or None while
    its length bytes are incomplete; raises MalformedPacketError on a bad or oversized length."""
    remaining, multiplier = 0, 1
    for i in range(1, min(len(buf), 5)):
        byte = buf[i]
        remaining += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            if remaining + i + 1 > max_packet:
                raise MalformedPacketError(
                    f"packet of {remaining + i + 1} bytes exceeds {max_packet}"
                )
            return i + 1, remaining
        multiplier *= 128
    if len(buf) >= 5:
        raise MalformedPacketError("remaining length longer than 4 bytes")
    return None


def encode_length(n: int) -> bytes:
    """The variable-length encoding of a remaining length."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length out of range: {n}")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


class _Reader:
    """Reads the fields of one packet body, raising MalformedPacketError past its end."""

    __slots__ = ("body", "pos")

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def u8(self) -> int:
        if self.pos >= len(self.body):
            raise MalformedPacketError("packet ends early")
        self.pos += 1
        return self.body[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > len(self.body):
            raise MalformedPacketError("packet ends early")
        (value,) = struct.unpack_from("!H", self.body, self.pos)
        self.pos += 2
        return int(value)

    def binary(self) -> bytes:
        n = self.u16()
        if self.pos + n > len(self.body):
            raise MalformedPacketError("field longer than the packet")
        self.pos += n
        return self.body[self.pos - n : self.pos]

    def text(self) -> str:
        try:
            value = self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacketError("string is not UTF-8") from exc
        if "\x00" in value:
            raise MalformedPacketError("string contains U+0000")
        return value

    def rest(self) -> bytes:
        value, self.pos = self.body[self.pos :], len(self.body)
        return value

    def at_end(self) -> bool:
        return self.pos >= len(self.body)

    def packet_id(self) -> int:
        pid = self.u16()
        if pid == 0:
            raise MalformedPacketError("packet identifier 0")
        return pid


# ---- decoders (client → broker) --------------------------------------------------------


def decode_connect(body: bytes) -> Connect:
    """Decode a CONNECT; a protocol level other than 3 or 4 returns early with only ``level``."""
    r = _Reader(body)
    name, level = r.binary(), r.u8()
    if name not in (b"MQTT", b"MQIsdp"):
        raise MalformedPacketError(f"unknown protocol name {name!r}")
    if level not in (3, 4):
        return Connect(level=level)
    flags, keepalive = r.u8(), r.u16()
    if flags & 0x01:
        raise MalformedPacketError("reserved CONNECT flag set")
    client_id = r.text()
    will = None
    will_qos, will_retain = (flags >> 3) & 0x03, bool(flags & 0x20)
    if flags & 0x04:
        if will_qos > 2:
            raise MalformedPacketError("will QoS 3")
        topic = r.text()
        if not valid_topic_name(topic):
            raise MalformedPacketError(f"bad will topic {topic!r}")
        will = Will(topic, r.binary(), will_qos, will_retain)
    elif will_qos or will_retain:
        raise MalformedPacketError("will QoS or retain without a will")
    if flags & 0x80:
        r.text()  # username: anonymous access, not checked
    if flags & 0x40:
        if not flags & 0x80:
            raise MalformedPacketError("password without username")
        r.binary()
    return Connect(level, bool(flags & 0x02), keepalive, client_id, will)


def decode_publish(flags: int, body: bytes) -> Publish:
    """Decode a PUBLISH whose fixed-header flags were ``flags``."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacketError("PUBLISH with QoS 3")
    r = _Reader(body)
    topic = r.text()
    if not valid_topic_name(topic):
        raise MalformedPacketError(f"bad topic name {topic!r}")
    packet_id = r.packet_id() if qos else 0
    return Publish(topic, r.rest(), qos, bool(flags & 0x01), packet_id)


def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    """``(packet_id, [(filter, requested_qos), …])`` of a SUBSCRIBE."""
    r = _Reader(body)
    pid, entries = r.packet_id(), []
    while not r.at_end():
        topic_filter, qos = r.text(), r.u8()
        if qos > 2:
            raise MalformedPacketError(f"requested QoS byte {qos:#x}")
        entries.append((topic_filter, qos))
    if not entries:
        raise MalformedPacketError("SUBSCRIBE without a topic filter")
    return pid, entries


def decode_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    """``(packet_id, [filter, …])`` of an UNSUBSCRIBE."""
    r = _Reader(body)
    pid, filters = r.packet_id(), []
    while not r.at_end():
        filters.append(r.text())
    if not filters:
        raise MalformedPacketError("UNSUBSCRIBE without a topic filter")
    return pid, filters


def decode_packet_id(body: bytes) -> int:
    """The packet identifier of a PUBACK, PUBREC, PUBREL or PUBCOMP."""
    if len(body) != 2:
        raise MalformedPacketError(f"acknowledgement of {len(body)} bytes")
    return _Reader(body).packet_id()


# ---- encoders (broker → client) --------------------------------------------------------


def connack(return_code: int, *, session_present: bool = False) -> bytes:
    """A 3.1.1 CONNACK."""
    return bytes((CONNACK << 4, 2, int(session_present), return_code))


def connack_v5_refusal(reason: int = V5_UNSUPPORTED_PROTOCOL_VERSION) -> bytes:
    """An MQTT 5 CONNACK refusing the connection (no properties), readable by v5 clients."""
    return bytes((CONNACK << 4, 3, 0, reason, 0))


def publish_packet(topic: bytes, payload: bytes, qos: int, retain: bool, packet_id: int) -> bytes:
    """A PUBLISH to a client; ``topic`` is the UTF-8 topic name."""
    pid = struct.pack("!H", packet_id) if qos else b""
    length = 2 + len(topic) + len(pid) + len(payload)
    first = PUBLISH << 4 | qos << 1 | int(retain)
    return b"".join(
        (bytes((first,)), encode_length(length), struct.pack("!H", len(topic)), topic, pid, payload)
    )


def ack_packet(kind: int, packet_id: int) -> bytes:
    """A PUBACK, PUBREC, PUBCOMP or UNSUBACK."""
    return struct.pack("!BBH", kind << 4, 2, packet_id)


def suback(packet_id: int, codes: list[int]) -> bytes:
    """A SUBACK with one granted QoS (or 0x80) per requested filter."""
    body = struct.pack("!H", packet_id) + bytes(codes)
    return bytes((SUBACK << 4,)) + encode_length(len(body)) + body


# ---- topics ----------------------------------------------------------------------------


def valid_topic_name(topic: str) -> bool:
    """A topic a client may publish to: non-empty, without wildcards."""
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    """A subscription filter: ``+`` only as a whole level, ``#`` only as the whole last one."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "+" in level and level != "+":
            return False
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
    return True


def split_shared(topic_filter: str) -> tuple[str, str] | None:
    """``(group, filter)`` of ``$share/{group}/{filter}``; None for an ordinary filter.

    Raises MalformedPacketError for a ``$share/`` filter with a bad group or no filter."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, sep, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not sep or not group or any(c in group for c in "+#") or not valid_topic_filter(rest):
        raise MalformedPacketError(f"bad shared subscription {topic_filter!r}")
    return group, rest


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` matches ``topic_filter`` (wildcards skip ``$`` topics at level 1)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)
