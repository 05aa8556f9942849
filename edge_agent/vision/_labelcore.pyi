"""Types of the compiled module (edge_agent/vision/_labelcore.c)."""

from collections.abc import Sequence

def configure(
    *,
    work_width: int,
    min_contrast: int,
    min_area_fraction: float,
    max_area_fraction: float,
    min_fill: float,
    aspect: float,
    aspect_slack: float,
    polygon_tolerance: float,
    edge_offset: float,
) -> None: ...
def locate(frame: object, /) -> list[float] | int: ...
def warp(frame: object, corners: Sequence[float], out: object, flip: bool, /) -> bool: ...
