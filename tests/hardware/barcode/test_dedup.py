"""RepeatFilter: repeated reads of one code within the window are one scan."""

from __future__ import annotations

import pytest

from hardware.barcode.dedup import RepeatFilter


def test_same_code_within_the_window_is_a_repeat() -> None:
    f = RepeatFilter(1.0)
    assert f.is_repeat("A", 10.0) is False
    assert f.is_repeat("A", 10.5) is True
    assert f.is_repeat("B", 10.5) is False
    assert f.suppressed == 1


def test_same_code_after_the_window_is_a_new_scan() -> None:
    f = RepeatFilter(1.0)
    f.is_repeat("A", 10.0)
    assert f.is_repeat("A", 11.01) is False


def test_window_slides_with_every_repeat_so_a_held_item_stays_one_scan() -> None:
    f = RepeatFilter(1.0)
    assert [f.is_repeat("A", t / 2) for t in range(10)] == [False] + [True] * 9


def test_zero_window_turns_suppression_off() -> None:
    f = RepeatFilter(0)
    assert [f.is_repeat("A", 1.0) for _ in range(3)] == [False, False, False]
    assert f.suppressed == 0


def test_expired_codes_are_forgotten_so_memory_stays_bounded() -> None:
    f = RepeatFilter(1.0)
    for i in range(1000):
        f.is_repeat(str(i), i * 0.01)
    assert len(f) <= 126  # at most 1.25 windows' worth: expiry runs in batches


def test_one_code_read_very_often_keeps_memory_bounded() -> None:
    f = RepeatFilter(60.0, max_entries=10)
    for _ in range(1000):
        f.is_repeat("A", 1.0)
    assert len(f) == 1
    assert f.suppressed == 999


def test_entry_cap_forgets_the_oldest_codes() -> None:
    f = RepeatFilter(60.0, max_entries=3)
    for code in "ABCD":
        f.is_repeat(code, 1.0)
    assert len(f) == 3
    assert f.is_repeat("A", 1.0) is False  # forgotten: a new scan, never a lost one
    assert f.is_repeat("D", 1.0) is True


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_s"):
        RepeatFilter(-1)
