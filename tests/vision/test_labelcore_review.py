"""Review of the compiled locate and warp (edge_agent.vision._labelcore) and its glue: each
test pins a behaviour the review found broken (every one failed on the build of d7dd496;
the docstrings say how) against OpenCV's path, the reference.

Found by differential fuzzing against locate_quad_opencv under OpenCV 5.0 and 4.11 (27 of
75,000 random light-shape frames locate differently, every one an outline whose border
passes twice through a hull vertex; 0 of 4,200 rendered gate frames; no AddressSanitizer
or UBSan report on 7,700 frames of every odd shape), and by reading the C and the glue.
"""

from __future__ import annotations

import ast
import importlib.util
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_agent.vision import preprocess
from edge_agent.vision.preprocess import locate_quad, locate_quad_opencv, warp_label
from edge_agent.vision.runtime import LoadedModel

native = preprocess._native
pytestmark = pytest.mark.skipif(native is None, reason="needs the compiled module")
ROOT = Path(__file__).resolve().parents[2]


def _frame(work: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A grey BGR frame whose work image (every 2nd pixel of every 2nd row) is ``work``."""
    big = np.repeat(np.repeat(work, 2, 0), 2, 1)
    return np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2))


def _label_with_spur(spur: list[tuple[int, int]]) -> NDArray[np.uint8]:
    """A light label-shaped rectangle on a dark belt, with light work pixels ``spur``."""
    work = np.full((60, 80), 40, np.uint8)
    work[20:41, 20:55] = 225
    for x, y in spur:
        work[y, x] = 225
    return _frame(work)


def test_a_two_pixel_spur_at_a_label_corner_locates_as_opencv() -> None:
    """Two light pixels touching a label's corner diagonally (a speck of glare, a fibre):
    the border passes twice through a hull vertex, cv2.convexHull then starts its hull
    elsewhere than "just after the raster-first point" (_labelcore.c hull()), and
    approxPolyDP, which depends on that start, keeps other corners. The compiled locate
    answered corners up to ~2 px (4 frame px) off OpenCV's instead of handing over."""
    frame = _label_with_spur([(19, 41), (18, 40)])
    assert locate_quad(frame) == locate_quad_opencv(frame)


def test_labels_with_small_diagonal_specks_locate_as_opencv() -> None:
    """The same on a family of frames: up to two short one-pixel lines near a label's
    corners (about 1 frame in 300 here differed; each must match or be handed over)."""
    differing = []
    for seed in range(1500):
        rng = np.random.default_rng(seed)
        spur = []
        for _ in range(int(rng.integers(1, 3))):
            x = int(rng.choice([19, 55])) + int(rng.integers(-3, 4))
            y = int(rng.choice([19, 41])) + int(rng.integers(-3, 4))
            dx, dy = int(rng.choice([-1, 0, 1])), int(rng.choice([-1, 0, 1]))
            spur += [(x + dx * i, y + dy * i) for i in range(int(rng.integers(1, 8)))]
        frame = _label_with_spur([(x, y) for x, y in spur if 0 <= x < 80 and 0 <= y < 60])
        if locate_quad(frame) != locate_quad_opencv(frame):
            differing.append(seed)
    assert differing == []


def test_two_labels_of_equal_area_locate_the_label_opencv_does() -> None:
    """Two labels whose outlines have the same area (two identical items side by side):
    findContours lists outlines last-found first, so OpenCV's path checks the lower one;
    the compiled locate kept scan order for equal areas and checked the upper one: a
    counterfeit below a genuine label, held by OpenCV's path, was scored on the genuine
    label."""
    work = np.full((120, 160), 40, np.uint8)
    work[10:31, 10:45] = 225
    work[70:91, 100:135] = 225
    frame = _frame(work)
    assert locate_quad(frame) == locate_quad_opencv(frame)


RING = """
......................................
.....................##...............
.......................###............
........................###...........
..........................###.........
..........................####........
................########....###.......
...........#####......######.###......
.........######........#########......
........######..........#########.....
.....########............#########....
.....#######..............#########...
....########..............#########...
...########...............##########..
..#########................#########..
.##########................#########..
.##########................##########.
.##########................##########.
.##########................#########..
.##########................#########..
.##########...............##########..
..#########...............#########...
..#########...............########....
...#########.............########.....
....########............########......
....#########..........########.......
.....#########.........######.........
......###.######.....#####............
......####....########................
.......####...........................
.........###..........................
..........####........................
............##........................
..............##......................
......................................
"""
"""A light ring (a lid, a roll of tape) whose border passes twice through a hull vertex."""


def test_a_ring_opencv_does_not_take_for_a_label_is_not_located() -> None:
    """Fail-open: OpenCV's path finds no label here (its hull simplifies to five corners,
    and the minimum-area rectangle is not label-shaped), so the check says unreadable and
    the gate holds the item; the compiled locate's hull, started at another point,
    simplified to four label-shaped corners and the item got a verdict."""
    rows = RING.strip().splitlines()
    work = np.array([[225 if c == "#" else 40 for c in row] for row in rows], np.uint8)
    frame = _frame(work)
    expected = locate_quad_opencv(frame)
    assert expected[0] is None
    assert locate_quad(frame) == expected


def test_warp_into_its_own_frame_matches_opencv() -> None:
    """``out`` that is the frame itself: cv2.warpPerspective clones a source its output
    overwrites; the compiled warp read pixels it had already overwritten."""
    rng = np.random.default_rng(3)
    frame = rng.integers(30, 90, (96, 160, 3), dtype=np.uint8)
    label = np.array([(40, 20), (120, 24), (118, 70), (38, 66)], np.int32)
    cv2.fillPoly(frame, [label], (225, 230, 220))
    quad = [39.5, 19.5, 120.5, 23.5, 118.5, 70.5, 37.5, 66.5]
    expected = preprocess.warp_label_opencv(frame.copy(), quad, 160, 96)
    warped = warp_label(frame, quad, 160, 96, out=frame)
    assert np.count_nonzero(np.any(warped != expected, axis=-1)) == 0


def test_warp_of_corners_far_outside_the_frame_matches_opencv() -> None:
    """Finite corners some 10^10 px away (warp_label is public; locate never gives such):
    every pixel differed from OpenCV 5's (which the main venv runs; 4.11 agreed with the
    compiled warp), not a rounding tie one pixel in 80,000 as docs/vision.md said."""
    frame = np.random.default_rng(0).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    far = 1e10
    quad = [far, far, far + 1, far, far + 1, far + 1, far, far + 1]
    expected = preprocess.warp_label_opencv(frame, quad, 160, 96)
    warped = warp_label(frame, quad, 160, 96)
    assert np.count_nonzero(np.any(warped != expected, axis=-1)) == 0


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status")


def test_a_tall_narrow_frame_leaves_no_oversized_arena() -> None:
    """locate_quad takes any array: a 4,000,000 × 1 frame (12 MB) sizes the static arena by
    its height (~300 bytes a work row), which was never given back: the process kept
    ~80 MB, more than the frame itself, after the call (OpenCV's path: a 2 MB work image,
    freed)."""
    assert native is not None
    native.locate(np.zeros((96, 96, 3), np.uint8))
    before = _rss_kib()
    frame = np.zeros((4_000_000, 1, 3), np.uint8)
    frame[::2] = 255
    assert locate_quad(frame) == locate_quad_opencv(frame)
    del frame
    assert _rss_kib() - before < 12_000


DIAMOND = """
.....................#####.....................
......#.............#####......................
....#####...........####.......................
...#######.........####........................
...#######........#####........................
..#########......######........................
...#######.......######........................
...#######......######.........................
....#####....#...######........................
......#.....###.#.#####........................
.............#.#....###........................
...............#.....##........................
..............#.......#........................
...............................................
...............................................
...............................................
...............................................
...............................................
"""
"""A square label seen corner-up: its two pairs of sides tie exactly in canonical_order."""


def _setup_compile_args() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extra_compile_args":
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError("setup.py has no extra_compile_args")


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("edge_agent.vision._labelcore", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    preprocess._configure(module)
    return module


def test_build_keeps_floating_point_contraction_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Corners equal OpenCV's only if ``a*b - c*d`` is rounded as Python rounds it. GCC
    keeps contraction off only because of -std=c99; a compiler that contracts by default
    (clang: -ffp-contract=on; GCC in GNU mode; FMA is baseline on the Pi's aarch64)
    fuses them, and this frame then gets other corners (a tie in canonical_order broken
    the other way: the label turned 90°). So setup.py must say -ffp-contract=off."""
    gcc = shutil.which("gcc")
    machine = platform.machine()
    fma = machine == "aarch64" or " fma " in Path("/proc/cpuinfo").read_text()
    if gcc is None or not fma or machine not in ("x86_64", "aarch64"):
        pytest.skip("needs gcc and a CPU with FMA")
    so = tmp_path / "_labelcore.so"
    defaults = ["-ffp-contract=fast"] + (["-mfma"] if machine == "x86_64" else [])
    command = [
        gcc,
        *defaults,
        *_setup_compile_args(),
        "-shared",
        "-fPIC",
        f"-I{sysconfig.get_paths()['include']}",
        str(ROOT / "edge_agent/vision/_labelcore.c"),
        "-o",
        str(so),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    monkeypatch.setattr(preprocess, "_native", _load(so))
    rows = DIAMOND.strip().splitlines()
    work = np.array([[225 if c == "#" else 40 for c in row] for row in rows], np.uint8)
    frame = _frame(work)
    assert locate_quad(frame) == locate_quad_opencv(frame)


class _FloatInputInterpreter:
    """The tensor details of a model whose input is float32 (real values 0..1)."""

    def __init__(self) -> None:
        self.given: NDArray[np.float32] | None = None

    def get_input_details(self) -> list[dict[str, object]]:
        shape = np.array([1, 96, 160, 3])
        return [{"shape": shape, "dtype": np.float32, "quantization": (0.0, 0), "index": 0}]

    def get_output_details(self) -> list[dict[str, object]]:
        shape = np.array([1, 1])
        return [{"shape": shape, "dtype": np.float32, "quantization": (0.0, 0), "index": 1}]

    def set_tensor(self, index: int, tensor: NDArray[np.float32]) -> None:
        self.given = np.array(tensor)

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> NDArray[np.float32]:
        return np.array([[0.75]], np.float32)


def test_a_float32_input_model_loads_and_gets_the_label_as_real_values() -> None:
    """runtime.py takes float32 inputs (its quantiser has their case), but LoadedModel
    views its uint8 H × W × 3 pixel array as the input dtype, which for float32 (4 bytes
    against a last axis of 3) raised ValueError: such a model could not be loaded at all,
    and not with ModelLoadError. (From 6304e84; the stubs in test_runtime are all int8.)"""
    interpreter = _FloatInputInterpreter()
    model = LoadedModel(interpreter, "stub")
    frame = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    quad = [100.5, 80.5, 500.5, 90.5, 490.5, 380.5, 95.5, 370.5]
    flip = model.input_flip

    def write(out: NDArray[np.uint8]) -> None:
        warp_label(frame, quad, 160, 96, out, flip_top_bit=flip)

    assert model.classify_written(write, flipped=flip) == 0.75
    expected = preprocess.warp_label_opencv(frame, quad, 160, 96) * np.float32(1 / 255)
    assert interpreter.given is not None
    assert np.array_equal(interpreter.given[0], expected)
