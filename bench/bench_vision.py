"""Vision label check per 640×480 frame on one core, beside the bare Interpreter.invoke().

The pipeline is :meth:`LabelChecker.check` on one frame (validate, locate the label,
warp it to the model's input, quantise, infer, decide), timed whole; its baseline is
``Interpreter.invoke()`` of the same model measured in the same run, interleaved frame
by frame so both see the same machine load. Both run on this thread (one interpreter
thread, one OpenCV thread), so their CPU time is the cost on one core whatever else
the machine is doing; wall-clock figures are given beside it. Target: pipeline ≤ 1.5×
invoke and ≤ 5 ms median. The DataMatrix read, outside that path, is timed on its own.
Frames are rendered labels (:func:`simulators.labels.render_dataset`), a mix of
genuine and counterfeit. The ratio is given again for OpenCV's path alone (the compiled
locate and warp, edge_agent/vision/_labelcore.c, switched off). Every TFLite runtime
importable here is measured; the other one too when the legacy environment
(``.venv-legacy``, tflite-runtime 2.14) exists beside this one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import cv2
import numpy as np
from numpy.typing import NDArray

from bench.report import Figure, median, percentile, print_figures
from edge_agent.vision import preprocess
from edge_agent.vision.checker import LabelChecker
from edge_agent.vision.config import DEFAULT_MODEL_PATH, VisionConfig
from edge_agent.vision.datamatrix import read_item_id
from edge_agent.vision.preprocess import locate_label
from edge_agent.vision.runtime import (
    ModelLoadError,
    RuntimeName,
    RuntimeUnavailableError,
    interpreter_class,
)
from gatewire.messages import VisionVerdict

T = TypeVar("T")
FRAMES: Final = 40
ROUNDS: Final = 8
SEED: Final = 9_001
MODEL_ENV: Final = "PROVGATE_BENCH_MODEL"
_CHILD_ENV: Final = "PROVGATE_BENCH_VISION_CHILD"
_REPO: Final = Path(__file__).resolve().parents[1]
_LEGACY_PYTHON: Final = _REPO / ".venv-legacy" / "bin" / "python"
TARGET_PIPELINE: Final = "≤ 1.5× invoke (ratio ≥ 0.67), ≤ 5 ms"


def _frames() -> list[NDArray[np.uint8]]:
    from simulators.labels import render_dataset

    return [sample.frames[0] for sample in render_dataset(SEED, FRAMES, frames=1)]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def measure_runtime(
    runtime: RuntimeName, model_path: Path, frames: list[NDArray[np.uint8]]
) -> list[Figure]:
    """Pipeline and bare-invoke times on ``runtime``, single-threaded."""
    config = VisionConfig(
        model_path=model_path, runtime=runtime, num_threads=1, decode_datamatrix=False
    )
    checker = LabelChecker(config)
    interpreter = checker.model.interpreter
    for frame in frames[:5]:  # warm-up: caches, XNNPACK packing
        checker.check([frame])
        interpreter.invoke()
    wall: dict[str, list[float]] = {"invoke": [], "pipeline": []}
    cpu: dict[str, list[float]] = {"invoke": [], "pipeline": []}
    locate_warp_ms: list[float] = []
    unreadable = 0

    def timed(stage: str, work: Callable[[], T]) -> T:
        started, started_cpu = time.perf_counter(), time.thread_time()
        value = work()
        cpu[stage].append((time.thread_time() - started_cpu) * 1000)
        wall[stage].append(_ms(started))
        return value

    for _ in range(ROUNDS):
        for frame in frames:
            timed("invoke", interpreter.invoke)
            result = timed("pipeline", partial(checker.check, [frame]))
            unreadable += result.verdict is VisionVerdict.UNREADABLE
            locate_warp_ms.append(result.timings.get("locate", 0) + result.timings.get("warp", 0))
    name = f"{runtime} ({checker.model.width}×{checker.model.height} input)"
    invoke_p50, pipeline_p50 = median(cpu["invoke"]), median(cpu["pipeline"])
    return [
        Figure(f"{name}: bare Interpreter.invoke() p50, CPU time", invoke_p50, "ms"),
        Figure(
            f"{name}: pipeline p50, CPU time",
            pipeline_p50,
            "ms",
            "invoke p50",
            invoke_p50,
            higher_is_better=False,
            target=TARGET_PIPELINE,
        ),
        Figure(
            f"{name}: pipeline p99, CPU time",
            percentile(cpu["pipeline"], 99),
            "ms",
            "invoke p99",
            percentile(cpu["invoke"], 99),
            higher_is_better=False,
        ),
        Figure(f"{name}: pipeline ÷ invoke (p50)", pipeline_p50 / invoke_p50, "×", target="≤ 1.5×"),
        Figure(
            f"{name}: pipeline beyond invoke (p50 minus p50), CPU time",
            pipeline_p50 - invoke_p50,
            "ms",
            "half the invoke p50",
            invoke_p50 / 2,
            higher_is_better=False,
            target="≤ 0.5 × invoke",
        ),
        Figure(
            f"{name}: pipeline p50, wall clock",
            median(wall["pipeline"]),
            "ms",
            "invoke p50",
            median(wall["invoke"]),
            higher_is_better=False,
            target="≤ 5 ms",
        ),
        Figure(
            f"{name}: pipeline p99, wall clock",
            percentile(wall["pipeline"], 99),
            "ms",
            "invoke p99",
            percentile(wall["invoke"], 99),
            higher_is_better=False,
        ),
        Figure(f"{name}: locate + warp p50, wall clock", median(locate_warp_ms), "ms"),
        Figure(
            f"{name}: frames without a verdict",
            unreadable / len(wall["pipeline"]) * 100,
            "%",
            target="0 %",
        ),
    ]


def measure_opencv_path(
    runtime: RuntimeName, model_path: Path, frames: list[NDArray[np.uint8]]
) -> list[Figure]:
    """The pipeline ÷ invoke ratio again with the compiled locate and warp switched off
    (OpenCV's path alone, as an install without a C compiler runs): what they buy."""
    if preprocess._native is None:
        return []
    saved, preprocess._native = preprocess._native, None  # type: ignore[assignment]
    try:
        figures = measure_runtime(runtime, model_path, frames)
    finally:
        preprocess._native = saved
    ratio = next(figure for figure in figures if "÷" in figure.name)
    name = ratio.name.replace("pipeline ÷", "OpenCV path alone (no _labelcore) ÷")
    return [dataclasses.replace(ratio, name=name, target="")]


def measure_datamatrix(frames: list[NDArray[np.uint8]]) -> list[Figure]:
    """DataMatrix decode time per frame (label already located), and how many read."""
    located = [(frame, locate_label(frame)) for frame in frames]
    times: list[float] = []
    read = 0
    for _ in range(2):
        for frame, corners in located:
            if corners is None:
                continue
            started = time.perf_counter()
            read += read_item_id(frame, corners) is not None
            times.append(_ms(started))
    if not times:
        return []
    return [
        Figure("DataMatrix decode (zxing-cpp) p50, outside the verdict path", median(times), "ms"),
        Figure("DataMatrix decode p99", percentile(times, 99), "ms"),
        Figure("DataMatrix codes read", read / len(times) * 100, "%", target="100 %"),
    ]


def _legacy_figures() -> list[Figure]:
    """This benchmark's figures from the legacy environment, if there is one."""
    if os.environ.get(_CHILD_ENV) or not _LEGACY_PYTHON.exists():
        return []
    if Path(sys.prefix).resolve() == _LEGACY_PYTHON.parents[1].resolve():
        return []
    env = {**os.environ, _CHILD_ENV: "1"}
    try:
        done = subprocess.run(
            [str(_LEGACY_PYTHON), "-m", "bench.bench_vision", "--json"],
            cwd=_REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        rows = json.loads(done.stdout.strip().splitlines()[-1])
        return [Figure(**row) for row in rows]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, TypeError) as exc:
        print(f"bench_vision: legacy environment not measured: {exc}", file=sys.stderr)
        return []


def run() -> list[Figure]:
    """All figures of this benchmark."""
    model_path = Path(os.environ.get(MODEL_ENV) or DEFAULT_MODEL_PATH)
    if not model_path.is_file():
        print(f"bench_vision: no model at {model_path} (set {MODEL_ENV})", file=sys.stderr)
        return []
    cv2.setNumThreads(1)  # one core, like the interpreter
    frames = _frames()
    figures: list[Figure] = []
    runtimes: tuple[RuntimeName, ...] = ("ai_edge_litert", "tflite_runtime")
    for runtime in runtimes:
        try:
            interpreter_class(runtime)
            figures += measure_runtime(runtime, model_path, frames)
            figures += measure_opencv_path(runtime, model_path, frames)
        except (RuntimeUnavailableError, ModelLoadError) as exc:
            print(f"bench_vision: {runtime} not measured here: {exc}", file=sys.stderr)
    if not os.environ.get(_CHILD_ENV):
        figures += measure_datamatrix(frames)
    return figures + _legacy_figures()


if __name__ == "__main__":
    if "--json" in sys.argv[1:]:
        print(json.dumps([dataclasses.asdict(figure) for figure in run()]))
    else:
        print_figures(__doc__.splitlines()[0] if __doc__ else "vision", run())
