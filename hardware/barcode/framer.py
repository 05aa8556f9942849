"""Line framing: turn a scanner's byte stream, cut anywhere, into candidate reads.

Works on whole chunks with ``bytes.split``/``rfind``/``translate`` (no per-byte Python).
What it does with each terminated line, in order:

1. longer than ``max_line_length`` → discarded, counted ``overlong_discarded``; an
   unterminated run longer than that is dropped at once and the stream resynchronises
   on the next suffix;
2. stray CR/LF at either end are stripped (a scanner sending CRLF to a CR config still
   works); nothing left → ``empty_lines``;
3. with a prefix configured, the read starts after the *last* prefix in the line (what
   came before is a partial read, ``partial_discarded``); no prefix → ``missing_prefix``;
4. an AIM symbology identifier (``]`` letter alnum) after the start marks where the read
   really begins: what precedes it is the remains of a read that lost its terminator or
   line noise (``partial_discarded``). GS1 data never contains ``]``, so this cannot cut
   a valid read;
5. any byte other than printable ASCII and GS (0x1D) → the line is noise, not a read:
   discarded and counted ``garbage_lines`` (scanners send printable ASCII plus GS).

Only what survives is returned; everything else is counted and passed to ``on_discard``
(for logging once per burst).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final

GS: Final = 0x1D
ALLOWED_BYTES: Final = bytes([GS, *range(0x20, 0x7F)])
"""Bytes a read may contain once prefix and suffix are removed."""
STRAY_TERMINATORS: Final = b"\r\n"


@dataclass(slots=True)
class FramerStats:
    """What the framer saw and threw away (plain ints: only the reader thread writes)."""

    lines: int = 0
    overlong_discarded: int = 0
    garbage_lines: int = 0
    partial_discarded: int = 0
    missing_prefix: int = 0
    empty_lines: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)


DiscardHook = Callable[[str, bytes], None]
"""Called with (counter name, offending bytes) for every discarded line or fragment."""


def aim_at(data: bytes, index: int) -> bool:
    """True if an AIM symbology identifier (``]`` + letter + letter/digit) starts at index."""
    return (
        data[index : index + 1] == b"]"
        and data[index + 1 : index + 2].isalpha()
        and data[index + 2 : index + 3].isalnum()
    )


class LineFramer:
    """Splits bytes on the suffix and keeps only what can be a read (see module doc)."""

    def __init__(
        self,
        suffix: bytes,
        prefix: bytes = b"",
        max_line_length: int = 512,
        on_discard: DiscardHook | None = None,
    ) -> None:
        if not suffix:
            raise ValueError("suffix must not be empty")
        self.stats = FramerStats()
        self._suffix = suffix
        self._prefix = prefix
        self._max = max_line_length
        # A pending tail may end with the first bytes of a multi-byte suffix.
        self._max_tail = max_line_length + len(suffix) - 1
        self._on_discard = on_discard
        self._buf = b""
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held of an unterminated line."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add a chunk; return the reads it completed (prefix and suffix removed)."""
        data = self._buf + chunk if self._buf else chunk
        parts = data.split(self._suffix)
        tail = parts.pop()
        if self._discarding:
            if not parts:
                self._buf = self._suffix_start(tail)
                return []
            del parts[0]  # the end of an overlong line, already counted
            self._discarding = False
            self.stats.lines += 1
        if len(tail) > self._max_tail:
            self._discard("overlong_discarded", tail)
            self.stats.overlong_discarded += 1
            tail = self._suffix_start(tail)
            self._discarding = True
        self._buf = tail
        if not parts:
            return []
        self.stats.lines += len(parts)
        return self._clean(parts)

    def _suffix_start(self, tail: bytes) -> bytes:
        # While discarding, keep what may be the first bytes of a CRLF split by a chunk.
        keep = len(self._suffix) - 1
        return tail[-keep:] if keep else b""

    def drop_partial(self) -> bool:
        """Forget an unterminated line (stale, or from before a reconnect); True if counted."""
        buf, self._buf = self._buf, b""
        self._discarding = False
        if not buf.strip(STRAY_TERMINATORS):
            return False
        self.stats.partial_discarded += 1
        self._discard("partial_discarded", buf)
        return True

    def _clean(self, parts: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        stats = self.stats
        prefix = self._prefix
        for raw in parts:
            if len(raw) > self._max:
                stats.overlong_discarded += 1
                self._discard("overlong_discarded", raw)
                continue
            line = raw.strip(STRAY_TERMINATORS)
            if prefix:
                start = line.rfind(prefix)
                if start < 0:
                    if line:
                        stats.missing_prefix += 1
                        self._discard("missing_prefix", line)
                    else:
                        stats.empty_lines += 1
                    continue
                if start > 0:
                    stats.partial_discarded += 1
                    self._discard("partial_discarded", line[:start])
                line = line[start + len(prefix) :]
            if not line:
                stats.empty_lines += 1
                continue
            cut = line.rfind(b"]", 1)
            while cut > 0 and not aim_at(line, cut):
                cut = line.rfind(b"]", 1, cut)
            if cut > 0:
                stats.partial_discarded += 1
                self._discard("partial_discarded", line[:cut])
                line = line[cut:]
            if line.translate(None, ALLOWED_BYTES):
                stats.garbage_lines += 1
                self._discard("garbage_lines", line)
                continue
            out.append(line)
        return out

    def _discard(self, kind: str, data: bytes) -> None:
        if self._on_discard is not None:
            self._on_discard(kind, data)
