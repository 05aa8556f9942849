"""Mercury serial framing: build frames, and parse a byte stream into frames with resync.

Command ``FF LEN OP DATA… CRC16``; response ``FF LEN OP STATUS(2) DATA… CRC16``. LEN
counts DATA only; the CRC (:mod:`hardware.rfid.crc`) covers LEN through DATA, MSB first.

:class:`FrameParser` is incremental: feed it chunks as they arrive, however the line chopped
them. A candidate frame starts at an ``FF``; a frame whose CRC fails is dropped by
restarting the search at the byte after *its* ``FF`` (not after its claimed length, which
may be garbage and would swallow the valid frames that follow). Bytes outside valid frames
are counted, never delivered. Decisions depend only on the bytes, never on where the chunks
were cut, so any chopping of a stream yields the same frames.
"""

from __future__ import annotations

import binascii
from typing import Final, NamedTuple

from hardware.rfid.crc import HQX_SEED as _HQX_SEED
from hardware.rfid.crc import crc16

__all__ = [
    "HEADER",
    "MAX_DATA",
    "Frame",
    "FrameParser",
    "build_command",
    "build_response",
]

HEADER: Final = 0xFF
MAX_DATA: Final = 255


class Frame(NamedTuple):
    """One frame with a good CRC. ``status`` is 0 for commands (they carry none)."""

    opcode: int
    status: int
    data: bytes


def build_command(opcode: int, data: bytes = b"") -> bytes:
    """A command frame ``FF LEN OP DATA CRC``."""
    if len(data) > MAX_DATA:
        raise ValueError(f"command data is {len(data)} bytes; at most {MAX_DATA} fit a frame")
    body = bytes((len(data), opcode)) + data
    return b"\xff" + body + crc16(body).to_bytes(2, "big")


def build_response(opcode: int, data: bytes = b"", status: int = 0) -> bytes:
    """A response frame ``FF LEN OP STATUS DATA CRC`` (what a reader sends)."""
    if len(data) > MAX_DATA:
        raise ValueError(f"response data is {len(data)} bytes; at most {MAX_DATA} fit a frame")
    body = bytes((len(data), opcode)) + status.to_bytes(2, "big") + data
    return b"\xff" + body + crc16(body).to_bytes(2, "big")


class FrameParser:
    """Turns a chopped byte stream into frames; counts and skips everything else.

    ``responses=True`` parses what a reader sends (with STATUS), False what a host sends.
    Counters (plain attributes, read them with :meth:`counters`): ``frames``,
    ``crc_errors`` (frames whose CRC failed; an ``FF`` inside a rejected frame's claimed
    span is not counted again), ``discarded_bytes`` (bytes outside valid frames) and
    ``truncated_frames`` (partial frames given up on by :meth:`flush`).
    """

    def __init__(self, *, responses: bool = True) -> None:
        self._head = 5 if responses else 3  # FF LEN OP [STATUS STATUS]
        self._responses = responses
        self._buf = b""
        self._bad_until = 0
        self.frames = 0
        self.crc_errors = 0
        self.discarded_bytes = 0
        self.truncated_frames = 0

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Frame]:
        """Add ``chunk``; return the frames it completed, in stream order."""
        self._buf = self._buf + chunk if self._buf else bytes(chunk)
        return self._parse(final=False)

    def flush(self) -> list[Frame]:
        """Give up on partial frames (the line went quiet or closed).

        Valid frames hidden behind a partial candidate (a garbage ``FF`` whose length
        reaches past the buffered bytes) are still found and returned.
        """
        return self._parse(final=True)

    def reset(self) -> None:
        """Drop buffered bytes (after a reconnect), counting them as discarded."""
        self.discarded_bytes += len(self._buf)
        self._buf = b""
        self._bad_until = 0

    def counters(self) -> dict[str, int]:
        """A copy of the counters."""
        return {
            "frames": self.frames,
            "crc_errors": self.crc_errors,
            "discarded_bytes": self.discarded_bytes,
            "truncated_frames": self.truncated_frames,
        }

    def _parse(self, *, final: bool) -> list[Frame]:
        buf = self._buf
        n = len(buf)
        head = self._head
        has_status = self._responses
        crc_hqx = binascii.crc_hqx
        seed = _HQX_SEED
        out: list[Frame] = []
        pos = 0
        discarded = 0
        # Candidates starting inside a rejected candidate's claimed span are not counted
        # again, so one corrupt frame with FF bytes inside counts once.
        bad_until = self._bad_until
        while True:
            start = buf.find(0xFF, pos)
            if start < 0:
                discarded += n - pos
                pos = n
                break
            discarded += start - pos
            end = start + head + 2 + (buf[start + 1] if start + 1 < n else 0)
            if end > n:
                if not final:
                    pos = start
                    break
                if start >= bad_until:
                    self.truncated_frames += 1
                    bad_until = end
            # CRC over LEN..DATA: crc_hqx over all but its last two bytes, XOR those two.
            elif crc_hqx(buf[start + 1 : end - 4], seed) ^ (buf[end - 4] << 8 | buf[end - 3]) == (
                buf[end - 2] << 8 | buf[end - 1]
            ):
                status = (buf[start + 3] << 8 | buf[start + 4]) if has_status else 0
                out.append(Frame(buf[start + 2], status, buf[start + head : end - 2]))
                pos = end
                continue
            elif start >= bad_until:
                self.crc_errors += 1
                bad_until = end
            discarded += 1
            pos = start + 1
        self._buf = buf[pos:]
        self._bad_until = max(0, bad_until - pos)
        self.discarded_bytes += discarded
        self.frames += len(out)
        return out
