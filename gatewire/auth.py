"""Message authentication: per-gate HMAC-SHA256 keys, sealed payloads, and reply binding.

Each gate holds one key, derived from the site secret the gateway holds. Every message
except ``availability`` travels *sealed*. The payload is the message's JSON object,
serialised any way the sender likes, whose last member is ``mac``, written exactly as the
final 74 bytes ``,"mac":"<64 lowercase hex>"}`` (nothing after them, no whitespace in
them); the payload starts with ``{``. With ``body`` the payload whose suffix is replaced by
``}`` (the bytes of the object before ``mac`` was appended):

    mac = hex(HMAC-SHA256(gate_key, b"provgate/v1/mac\\0" + body))

There is no canonical form: the receiver MACs the bytes it received and parses those same
bytes, so what it acts on is exactly what was MACed. The tag does not name the message
type; ``type`` is a required member of the MACed body, so a MAC made for one type still
never verifies as another. The body must not contain ``mac`` itself.

:func:`seal` makes a payload, :func:`open_sealed` opens one (size limit, suffix, MAC,
strict decoding; never raises). A reply (``verdict``, ``batch_verdict``, ``error``) carries
``request_id`` and ``request_mac`` inside its body, which binds it to one request:
:class:`VerdictVerifier` on the gate accepts each reply once, only for a request it is
waiting for. :class:`RequestVerifier` on the gateway refuses forged, misrouted, stale and
replayed requests. Verifiers never raise on bad input.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Generic, TypeAlias, TypeVar

from gatewire.messages import (
    DEFAULT_MAX_PAYLOAD,
    BatchVerdict,
    DecodeError,
    DecodeErrorKind,
    ErrorReply,
    Message,
    PayloadTooLargeError,
    Verdict,
    VerifyBatchRequest,
    VerifyRequest,
    decode_unchecked_mac,
    encode,
)
from gatewire.topics import GATEWAY, is_valid_id

if TYPE_CHECKING:
    from hashlib import _Hash

KEY_SIZE: Final = 32
MIN_SITE_SECRET: Final = 16
_KEY_LABEL: Final = b"provgate/v1/gate-key\0"

MAC_TAG: Final = b"provgate/v1/mac\0"
"""Prefix of every MAC input, before the body."""
SEAL_PREFIX: Final = b',"mac":"'
SEAL_SIZE: Final = len(SEAL_PREFIX) + 64 + 2
"""Bytes of the suffix ``,"mac":"<64 hex>"}`` that ends every sealed payload (74)."""
_SEAL_RE: Final = re.compile(rb',"mac":"[0-9a-f]{64}"\}')
_MAC_HEX: Final = re.compile(r"[0-9a-f]{64}")

M = TypeVar("M", bound=Message)
Reply: TypeAlias = Verdict | BatchVerdict | ErrorReply
"""Messages the gateway sends in answer to a request."""
Request: TypeAlias = VerifyRequest | VerifyBatchRequest
"""Messages a gate sends to get a verdict."""
_REQUEST_TYPES: Final = (VerifyRequest, VerifyBatchRequest)
KeyLookup: TypeAlias = Callable[[Message], bytes | None]
"""The key a decoded (not yet authenticated) message must be MACed with, or None."""


def derive_gate_key(site_secret: bytes, site: str, gate: str) -> bytes:
    """``HMAC-SHA256(site_secret, "provgate/v1/gate-key\\0" + site + "\\0" + gate)``."""
    if len(site_secret) < MIN_SITE_SECRET:
        raise ValueError(f"site secret must be at least {MIN_SITE_SECRET} bytes")
    if not (is_valid_id(site) and is_valid_id(gate)):
        raise ValueError(f"invalid site/gate id {site!r}/{gate!r}")
    label = _KEY_LABEL + site.encode() + b"\0" + gate.encode()
    return hmac.digest(site_secret, label, "sha256")


# --- sealing and opening -----------------------------------------------------------------


def compute_mac(body: bytes, key: bytes) -> str:
    """``hex(HMAC-SHA256(key, MAC_TAG + body))``: the MAC of a body, 64 lowercase hex.

    Computed from SHA-256 states precomputed per key (RFC 2104's inner and outer pads,
    the inner one past ``MAC_TAG`` too): the same value as :func:`hmac.digest`, at less
    than half its cost here (OpenSSL 3 sets up a whole MAC context per one-shot call).
    """
    states = _MAC_STATES.get(key)
    if states is None:
        states = _mac_states(key)
    inner = states[0].copy()
    inner.update(body)
    outer = states[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()


_MAC_STATES: dict[bytes, tuple[_Hash, _Hash]] = {}
"""Per key: SHA-256 states after ``key ^ ipad`` + ``MAC_TAG``, and after ``key ^ opad``."""
_MAC_STATES_MAX: Final = 4096
_BLOCK: Final = 64  # SHA-256's block size


def _mac_states(key: bytes) -> tuple[_Hash, _Hash]:
    padded = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(padded.translate(_IPAD))
    inner.update(MAC_TAG)
    states = inner, hashlib.sha256(padded.translate(_OPAD))
    if len(_MAC_STATES) >= _MAC_STATES_MAX:
        _MAC_STATES.clear()
    _MAC_STATES[bytes(key)] = states
    return states


_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))


def seal_body(body: bytes, key: bytes) -> bytes:
    """Seal a body serialised elsewhere: a JSON object ending in ``}`` (e.g. a third-party
    message in tests). Does not check that the body is a valid message."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"gate key must be {KEY_SIZE} bytes")
    if not body.endswith(b"}"):
        raise ValueError("a body is a JSON object ending in '}'")
    return b"".join((body[:-1], SEAL_PREFIX, compute_mac(body, key).encode(), b'"}'))


def seal(msg: Message, key: bytes, *, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """The sealed payload of ``msg``: :func:`gatewire.messages.encode` with the MAC appended
    as its last member. Any ``msg.mac`` is ignored (it belongs to another payload).

    Raises ``ValueError`` on a bad key or a message without a UTF-8 form, and
    :class:`PayloadTooLargeError` when the payload would exceed ``max_bytes``.
    """
    if len(key) != KEY_SIZE:
        raise ValueError(f"gate key must be {KEY_SIZE} bytes")
    body = encode(msg, max_bytes=max_bytes)
    if len(body) - 1 + SEAL_SIZE > max_bytes:
        size = len(body) - 1 + SEAL_SIZE
        raise PayloadTooLargeError(f"sealed {msg.type} is {size} B, limit {max_bytes} B")
    return seal_body(body, key)


def split_sealed(payload: bytes) -> tuple[bytes, str] | None:
    """``(body, mac)`` of a payload of the sealed shape, else None. Checks the shape only
    (starts with ``{``, ends with the exact suffix), not the MAC."""
    start = len(payload) - SEAL_SIZE
    if start < 1 or payload[0] != 0x7B or _SEAL_RE.fullmatch(payload, start) is None:
        return None
    return payload[:start] + b"}", payload[-66:-2].decode("ascii")


def _mac_ok(key: bytes, body: bytes, mac: str) -> bool:
    return hmac.compare_digest(compute_mac(body, key), mac)


# --- verification results --------------------------------------------------------------


class RefusalReason(StrEnum):
    """Why a payload was not accepted."""

    BAD_MAC = "bad_mac"
    UNKNOWN_REQUEST = "unknown_request"
    REPLAYED = "replayed"
    REQUEST_MISMATCH = "request_mismatch"
    WRONG_GATE = "wrong_gate"
    STALE = "stale"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"


@dataclass(frozen=True, slots=True)
class Accepted(Generic[M]):
    """The payload passed every check: its message and the MAC it was sealed with (which
    ``message.mac`` carries too)."""

    message: M
    mac: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The payload was refused; ``detail`` is one line for the log. ``message_id`` and
    ``mac`` are the payload's when they could be read: unauthenticated, for logs and error
    replies only."""

    reason: RefusalReason
    detail: str
    message_id: str | None = None
    mac: str | None = None


_DECODE_REFUSAL: Final = {
    DecodeErrorKind.TOO_LARGE: RefusalReason.TOO_LARGE,
    DecodeErrorKind.UNSUPPORTED_VERSION: RefusalReason.UNSUPPORTED_VERSION,
}


@dataclass(frozen=True, slots=True)
class _Opened:
    """A sealed payload split and decoded, MAC not yet checked."""

    message: Message
    body: bytes
    mac: str

    def refuse(self, reason: RefusalReason, detail: str) -> Refused:
        return Refused(reason, detail, self.message.id, self.mac)


def _split(payload: bytes, max_bytes: int) -> tuple[bytes, str] | Refused:
    if len(payload) > max_bytes:
        return Refused(RefusalReason.TOO_LARGE, f"payload {len(payload)} B > {max_bytes} B")
    split = split_sealed(payload)
    if split is None:
        return Refused(RefusalReason.MALFORMED, 'not sealed: must end with ,"mac":"<hex>"}')
    return split


def _decode(body: bytes, mac: str) -> _Opened | Refused:
    msg = decode_unchecked_mac(body, len(body), mac)  # split_sealed checked the mac's form
    if isinstance(msg, DecodeError):
        reason = _DECODE_REFUSAL.get(msg.kind, RefusalReason.MALFORMED)
        return Refused(reason, msg.reason, msg.message_id, mac)
    return _Opened(msg, body, mac)


def _open(payload: bytes, max_bytes: int) -> _Opened | Refused:
    split = _split(payload, max_bytes)
    return split if isinstance(split, Refused) else _decode(*split)


def open_sealed(
    payload: bytes, key: bytes | KeyLookup, *, max_bytes: int = DEFAULT_MAX_PAYLOAD
) -> Accepted[Message] | Refused:
    """Open a sealed payload; never raises.

    Checks, in order: size (``too_large``), sealed shape (``malformed``), then with a
    ``key`` the MAC (``bad_mac``) before decoding (``malformed``, ``unsupported_version``);
    with a :data:`KeyLookup` (e.g. :meth:`SiteKeyring.key_of`), decoding first, then the key
    of the message's own site and gate (``wrong_gate`` if there is none), then the MAC.
    Freshness, replay and reply binding are the verifiers' business.
    """
    split = _split(payload, max_bytes)
    if isinstance(split, Refused):
        return split
    body, mac = split
    if isinstance(key, bytes):
        if len(key) != KEY_SIZE or not _mac_ok(key, body, mac):
            return Refused(RefusalReason.BAD_MAC, "mac does not verify", None, mac)
        opened = _decode(body, mac)
        return opened if isinstance(opened, Refused) else Accepted(opened.message, mac)
    opened = _decode(body, mac)
    if isinstance(opened, Refused):
        return opened
    msg = opened.message
    msg_key = key(msg)
    if msg_key is None:
        return opened.refuse(RefusalReason.WRONG_GATE, f"no key for {msg.site}/{msg.gate}")
    if not _mac_ok(msg_key, body, mac):
        return opened.refuse(RefusalReason.BAD_MAC, f"{msg.type} {msg.id}")
    return Accepted(msg, mac)


class SiteKeyring:
    """Gateway side: the gate keys of one site, from the site secret or an explicit table."""

    _CACHE_SIZE: Final = 4096

    def __init__(
        self,
        site: str,
        *,
        site_secret: bytes | None = None,
        gate_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        if (site_secret is None) == (gate_keys is None):
            raise ValueError("give exactly one of site_secret and gate_keys")
        if not is_valid_id(site):
            raise ValueError(f"invalid site id {site!r}")
        if site_secret is not None and len(site_secret) < MIN_SITE_SECRET:
            raise ValueError(f"site secret must be at least {MIN_SITE_SECRET} bytes")
        if gate_keys is not None and any(len(k) != KEY_SIZE for k in gate_keys.values()):
            raise ValueError(f"gate keys must be {KEY_SIZE} bytes")
        self.site = site
        self._secret = site_secret
        self._keys: dict[str, bytes] = dict(gate_keys or {})

    def key_for(self, gate: str) -> bytes | None:
        """This gate's key, or None for an unknown or invalid gate id."""
        key = self._keys.get(gate)
        if key is not None or self._secret is None or gate == GATEWAY or not is_valid_id(gate):
            return key
        if len(self._keys) >= self._CACHE_SIZE:
            self._keys.clear()
        key = self._keys[gate] = derive_gate_key(self._secret, self.site, gate)
        return key

    def key_of(self, msg: Message) -> bytes | None:
        """The key of the gate ``msg`` names, if it is of this site (a :data:`KeyLookup`)."""
        return self.key_for(msg.gate) if msg.site == self.site else None

    def seal(self, msg: Message) -> bytes:
        """Seal ``msg`` with the key of ``msg.gate``; ``ValueError`` if there is none."""
        key = self.key_of(msg)
        if key is None:
            raise ValueError(f"no key for gate {msg.site}/{msg.gate}")
        return seal(msg, key)

    def open(
        self, payload: bytes, *, max_bytes: int = DEFAULT_MAX_PAYLOAD
    ) -> Accepted[Message] | Refused:
        """Open a payload sealed with the key of the gate it names (events, heartbeats)."""
        return open_sealed(payload, self.key_of, max_bytes=max_bytes)


@dataclass(slots=True)
class _Pending:
    request_mac: str
    deadline: float
    batch_size: int | None  # None for a single-item request


class VerdictVerifier:
    """Gate side: accepts each reply once, and only for a request this gate is waiting for.

    Seal each request with :meth:`seal_request` (or :func:`seal` then :meth:`expect`)
    before publishing it, then feed every payload from the verdict topic to
    :meth:`accept_payload`. The pending table is bounded and entries expire. Thread-safe:
    ``expect`` may run on the agent's thread and ``accept_payload`` on the MQTT client's.
    """

    def __init__(
        self,
        site: str,
        gate: str,
        key: bytes,
        *,
        timeout_s: float = 2.0,
        freshness_s: float = 30.0,
        max_pending: int = 1024,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"gate key must be {KEY_SIZE} bytes")
        self.site, self.gate, self._key = site, gate, key
        self.timeout_s, self.freshness_s, self.max_pending = timeout_s, freshness_s, max_pending
        self.max_payload = max_payload
        self._wall, self._mono = wall_clock, monotonic
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        """Pending requests dropped because the table was full (their replies are refused)."""

    @property
    def pending_count(self) -> int:
        """Requests currently awaiting a reply."""
        return len(self._pending)

    def seal_request(self, request: Request, timeout_s: float | None = None) -> bytes:
        """Seal ``request`` with this gate's key and :meth:`expect` its reply; returns the
        payload to publish."""
        if (request.site, request.gate) != (self.site, self.gate):
            raise ValueError("request is not from this gate")
        payload = seal(request, self._key, max_bytes=self.max_payload)
        self.expect(request, payload[-66:-2].decode("ascii"), timeout_s)
        return payload

    def expect(self, request: Request, request_mac: str, timeout_s: float | None = None) -> None:
        """Register a request, sealed with MAC ``request_mac``, as awaiting one reply until
        its deadline."""
        if _MAC_HEX.fullmatch(request_mac) is None:
            raise ValueError("request_mac must be the MAC the request was sealed with")
        if (request.site, request.gate) != (self.site, self.gate):
            raise ValueError("request is not from this gate")
        size = len(request.items) if isinstance(request, VerifyBatchRequest) else None
        with self._lock:
            now = self._mono()
            self._purge(now)
            while len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
                self.evicted += 1
            deadline = now + (self.timeout_s if timeout_s is None else timeout_s)
            self._pending[request.id] = _Pending(request_mac, deadline, size)

    def forget(self, request_id: str) -> None:
        """Stop waiting for a request (e.g. the agent gave up and held the item)."""
        with self._lock:
            self._pending.pop(request_id, None)

    def accept_payload(self, payload: bytes) -> Accepted[Reply] | Refused:
        """Check a payload from the verdict topic; on acceptance its pending request is
        consumed. Never raises."""
        opened = _open(payload, self.max_payload)
        if isinstance(opened, Refused):
            return opened
        reply = opened.message
        if not isinstance(reply, Verdict | BatchVerdict | ErrorReply):
            return opened.refuse(RefusalReason.MALFORMED, f"{reply.type} is not a reply")
        if reply.request_id is None or reply.request_mac is None:
            return opened.refuse(RefusalReason.MALFORMED, "reply is not bound to a request")
        if (reply.site, reply.gate) != (self.site, self.gate):
            return opened.refuse(RefusalReason.WRONG_GATE, f"for {reply.site}/{reply.gate}")
        if not _mac_ok(self._key, opened.body, opened.mac):
            return opened.refuse(RefusalReason.BAD_MAC, f"{reply.type} {reply.id}")
        with self._lock:
            return self._bind(opened, reply, reply.request_id, reply.request_mac)

    def _bind(
        self, opened: _Opened, reply: Reply, request_id: str, request_mac: str
    ) -> Accepted[Reply] | Refused:
        pending = self._pending.get(request_id)
        if pending is None:
            if request_id in self._answered:
                return opened.refuse(RefusalReason.REPLAYED, f"request {request_id} answered")
            return opened.refuse(RefusalReason.UNKNOWN_REQUEST, f"request {request_id}")
        if not hmac.compare_digest(pending.request_mac, request_mac):
            return opened.refuse(RefusalReason.REQUEST_MISMATCH, "request_mac differs")
        if not _fits(reply, pending.batch_size):
            return opened.refuse(RefusalReason.REQUEST_MISMATCH, f"{reply.type} does not fit")
        if self._mono() > pending.deadline:
            self._consume(request_id)
            return opened.refuse(RefusalReason.STALE, "reply after the request deadline")
        skew = self._wall() - reply.ts
        if abs(skew) > self.freshness_s:
            return opened.refuse(RefusalReason.STALE, f"ts off by {skew:.1f} s")
        self._consume(request_id)
        return Accepted(reply, opened.mac)

    def _consume(self, request_id: str) -> None:
        del self._pending[request_id]
        self._answered[request_id] = None
        while len(self._answered) > self.max_pending:
            self._answered.popitem(last=False)

    def _purge(self, now: float) -> None:
        while self._pending:
            request_id, oldest = next(iter(self._pending.items()))
            if oldest.deadline >= now:
                return
            del self._pending[request_id]


def _fits(reply: Reply, batch_size: int | None) -> bool:
    """A verdict answers a single request, a batch verdict a batch of the same size."""
    if isinstance(reply, Verdict):
        return batch_size is None
    if isinstance(reply, BatchVerdict):
        return batch_size == len(reply.results)
    return True


class RequestVerifier:
    """Gateway side: refuses forged, misrouted, stale and replayed requests.

    A request id is remembered for twice the freshness window after acceptance, which
    covers every ``ts`` a replay could carry and still pass the freshness check.
    Thread-safe.
    """

    def __init__(
        self,
        keyring: SiteKeyring,
        *,
        freshness_s: float = 30.0,
        max_remembered: int = 262_144,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keyring = keyring
        self.freshness_s, self.max_remembered = freshness_s, max_remembered
        self.max_payload = max_payload
        self._wall, self._mono = wall_clock, monotonic
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        """Ids forgotten early because the table was full (a replay of them is not caught)."""

    def check_payload(self, payload: bytes, *, topic_gate: str) -> Accepted[Request] | Refused:
        """Accept a genuine, fresh, first-seen request sealed by the gate it names, which
        must be ``topic_gate``, the gate id of the topic it arrived on. Never raises."""
        if len(payload) > self.max_payload:
            size = f"payload {len(payload)} B > {self.max_payload} B"
            return Refused(RefusalReason.TOO_LARGE, size)
        split = split_sealed(payload)
        if split is None:
            return Refused(RefusalReason.MALFORMED, 'not sealed: must end with ,"mac":"<hex>"}')
        body, mac = split
        request = decode_unchecked_mac(body, len(body), mac)
        if isinstance(request, DecodeError):
            reason = _DECODE_REFUSAL.get(request.kind, RefusalReason.MALFORMED)
            return Refused(reason, request.reason, request.message_id, mac)
        if not isinstance(request, _REQUEST_TYPES):
            return Refused(
                RefusalReason.MALFORMED, f"{request.type} is not a request", request.id, mac
            )
        if request.site != self.keyring.site or request.gate != topic_gate:
            detail = f"{request.site}/{request.gate}"
            return Refused(RefusalReason.WRONG_GATE, detail, request.id, mac)
        key = self.keyring.key_for(request.gate)
        if key is None:
            detail = f"no key for gate {request.gate}"
            return Refused(RefusalReason.WRONG_GATE, detail, request.id, mac)
        if not _mac_ok(key, body, mac):
            return Refused(RefusalReason.BAD_MAC, f"request {request.id}", request.id, mac)
        skew = self._wall() - request.ts
        if abs(skew) > self.freshness_s:
            return Refused(RefusalReason.STALE, f"ts off by {skew:.1f} s", request.id, mac)
        request_id = request.id
        with self._lock:
            now = self._mono()
            self._purge(now)
            if request_id in self._seen:
                return Refused(RefusalReason.REPLAYED, f"request {request_id}", request_id, mac)
            if len(self._seen) >= self.max_remembered:
                self._seen.popitem(last=False)
                self.evicted += 1
            self._seen[request_id] = now + 2 * self.freshness_s
        return Accepted(request, mac)

    def _purge(self, now: float) -> None:
        while self._seen:
            request_id, expiry = next(iter(self._seen.items()))
            if expiry >= now:
                return
            del self._seen[request_id]
