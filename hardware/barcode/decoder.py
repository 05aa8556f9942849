"""From bytes to scans, without I/O: framing, repeat suppression, ID normalisation.

:class:`ScanDecoder` is what the serial driver runs on every chunk it reads; it is also
what the benchmark measures and what the property tests drive, so all three see the
same code path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from gatewire.identity import ParseOutcome, parse_item_id
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.dedup import RepeatFilter
from hardware.barcode.events import ScanEvent
from hardware.barcode.framer import DiscardHook, LineFramer

_AIM_RE: Final = re.compile(r"\][A-Za-z][0-9A-Za-z]")
MISSING_AIM_ERROR: Final = (
    "no AIM symbology identifier (require_aim is on: program the scanner to transmit "
    "AIM IDs, or turn require_aim off)"
)


def symbology_of(raw: str) -> str | None:
    """The AIM symbology identifier a read starts with (``]d2``), or None."""
    return raw[:3] if _AIM_RE.match(raw) else None


class ScanDecoder:
    """Turns chunks of bytes into :class:`ScanEvent` objects; one instance per stream.

    Not thread-safe: one reader feeds it. ``parse`` is :func:`gatewire.identity.parse_item_id`
    unless replaced (the benchmark times framing alone with a no-op).
    """

    def __init__(
        self,
        config: SerialScannerConfig,
        *,
        on_discard: DiscardHook | None = None,
        parse: Callable[[str], ParseOutcome] = parse_item_id,
    ) -> None:
        self.config = config
        self.framer = LineFramer(
            config.suffix_bytes, config.prefix_bytes, config.max_line_length, on_discard
        )
        self.repeats = RepeatFilter(config.dedup_window_s)
        self.valid_scans = 0
        self.invalid_scans = 0
        self.missing_aim = 0
        self._parse = parse
        self._partial_timeout = config.partial_line_timeout_s
        self._last_feed: float | None = None

    def feed(self, chunk: bytes, ts: float, wall_ts: float) -> list[ScanEvent]:
        """Decode one chunk that arrived at monotonic ``ts`` (wall clock ``wall_ts``)."""
        last, self._last_feed = self._last_feed, ts
        if (
            self._partial_timeout > 0
            and last is not None
            and ts - last > self._partial_timeout
            and self.framer.pending
        ):
            self.framer.drop_partial()
        lines = self.framer.feed(chunk)
        if not lines:
            return []
        events: list[ScanEvent] = []
        is_repeat = self.repeats.is_repeat
        parse = self._parse
        device = self.config.name
        require_aim = self.config.require_aim
        valid = 0
        for line in lines:
            raw = line.decode("latin-1")  # the framer let only ASCII through
            if is_repeat(raw, ts):
                continue
            symbology = raw[:3] if _AIM_RE.match(raw) else None
            if symbology is None and require_aim:
                self.missing_aim += 1
                outcome = ParseOutcome(None, MISSING_AIM_ERROR, raw)
            else:
                outcome = parse(raw)
                valid += outcome.item is not None
            events.append(ScanEvent(raw, outcome, symbology, ts, wall_ts, device))
        self.valid_scans += valid
        self.invalid_scans += len(events) - valid
        return events

    def reset_stream(self) -> bool:
        """Forget a partial line (the device reconnected); True if one was dropped."""
        self._last_feed = None
        return self.framer.drop_partial()

    def counters(self) -> dict[str, int]:
        """Every counter of framing, repeat suppression and normalisation."""
        counts = self.framer.stats.as_dict()
        counts.update(
            scans=self.valid_scans + self.invalid_scans,
            valid_scans=self.valid_scans,
            invalid_scans=self.invalid_scans,
            missing_aim=self.missing_aim,
            duplicates_suppressed=self.repeats.suppressed,
        )
        return counts
