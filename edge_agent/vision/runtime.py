"""Load the label model on whichever TFLite runtime is installed, and classify with it.

Two runtimes share one ``Interpreter`` API: ai-edge-litert (current, NumPy 2) and
tflite-runtime 2.14 (older Pi images, NumPy < 2). ``auto`` prefers the first and falls
back to the second; ``PROVGATE_TFLITE_RUNTIME`` overrides ``auto`` (the legacy test
environment sets it). The model takes one upright BGR label image, [1, H, W, 3], and
gives one value: the probability that the label is genuine. Its input size and both
quantisations are read from the model file.

A :class:`LoadedModel` wraps one interpreter, which is not thread-safe: use it from one
thread at a time (the vision worker owns one).
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.runtime_names import ModelLoadError, RuntimeName

__all__ = [
    "RUNTIME_ENV",
    "LoadedModel",
    "ModelLoadError",
    "Quantisation",
    "RuntimeName",
    "RuntimeUnavailableError",
    "interpreter_class",
    "load_interpreter",
]

RUNTIME_ENV: Final = "PROVGATE_TFLITE_RUNTIME"
_MODULES: Final = {
    "ai_edge_litert": ("ai_edge_litert.interpreter", "pip install ai-edge-litert"),
    "tflite_runtime": (
        "tflite_runtime.interpreter",
        "pip install 'tflite-runtime==2.14.0' 'numpy<2' (the tflite-legacy extra)",
    ),
}
_MAX_MODEL_BYTES: Final = 64 * 1024 * 1024
_SCORE_SLACK: Final = 0.01
"""How far past 0..1 an output may stray (rounding) and still be clamped to a probability."""
_MIN_INPUT_SIDE: Final = 8
_MAX_INPUT_SIDE: Final = 1024
"""A label warped bigger than this would cost every frame more than a Pi can give."""
_TOP_BIT: Final = np.uint8(128)
"""XOR with it takes a pixel x to int8 x - 128: the input's quantisation at scale 1/255."""


class RuntimeUnavailableError(RuntimeError):
    """No usable TFLite runtime is installed (or the one asked for is not)."""


@dataclass(frozen=True, slots=True)
class Quantisation:
    """Affine quantisation of a tensor: real = scale · (q - zero_point); scale 0 = float."""

    scale: float
    zero_point: int

    @property
    def is_float(self) -> bool:
        """Whether the tensor holds real values rather than quantised integers."""
        return self.scale == 0.0


def _requested(runtime: RuntimeName) -> RuntimeName:
    if runtime != "auto":
        return runtime
    override = os.environ.get(RUNTIME_ENV, "").strip()
    if not override:
        return "auto"
    if override not in get_args(RuntimeName):
        choices = ", ".join(get_args(RuntimeName))
        raise RuntimeUnavailableError(f"{RUNTIME_ENV}={override!r}: expected one of {choices}")
    return override  # type: ignore[return-value]  # checked against the Literal above


def interpreter_class(runtime: RuntimeName = "auto") -> tuple[str, Any]:
    """The runtime's name and its ``Interpreter`` class: the one asked for, or the first found."""
    requested = _requested(runtime)
    names = list(_MODULES) if requested == "auto" else [requested]
    failures = []
    for name in names:
        module_name, install = _MODULES[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            failures.append(f"{name} ({exc}; {install})")
            continue
        return name, module.Interpreter
    raise RuntimeUnavailableError("no TFLite runtime could be imported: " + "; ".join(failures))


def _quantisation(detail: dict[str, Any]) -> Quantisation:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return Quantisation(float(scale), int(zero_point))


class LoadedModel:
    """A label model ready to classify upright BGR label images of its input size."""

    def __init__(self, interpreter: Any, runtime: str) -> None:
        self.interpreter = interpreter
        self.runtime = runtime
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError("a label model has one input and one output tensor")
        shape = [int(n) for n in inputs[0]["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ModelLoadError(f"model input must be [1, H, W, 3] BGR; it is {shape}")
        if not _MIN_INPUT_SIDE <= min(shape[1:3]) <= max(shape[1:3]) <= _MAX_INPUT_SIDE:
            raise ModelLoadError(
                f"model input sides must be {_MIN_INPUT_SIDE} to {_MAX_INPUT_SIDE} pixels; "
                f"it is {shape}"
            )
        if int(np.prod(outputs[0]["shape"])) != 1:
            raise ModelLoadError(f"model output must be one value; it is {outputs[0]['shape']}")
        self.height, self.width = shape[1], shape[2]
        self.input_dtype: np.dtype[Any] = np.dtype(inputs[0]["dtype"])
        self.input_quantisation = _quantisation(inputs[0])
        self.output_quantisation = _quantisation(outputs[0])
        output_dtype = np.dtype(outputs[0]["dtype"])
        for role, dtype, q in (
            ("input", self.input_dtype, self.input_quantisation),
            ("output", output_dtype, self.output_quantisation),
        ):
            if dtype not in (np.int8, np.uint8, np.float32):
                raise ModelLoadError(f"unsupported model {role} type {dtype}")
            # an unscaled integer output would read as a score of 0 or 1: never guess
            if dtype != np.float32 and not (math.isfinite(q.scale) and q.scale > 0):
                raise ModelLoadError(f"integer model {role} without a positive quantisation scale")
        self._input_index = int(inputs[0]["index"])
        self._output_index = int(outputs[0]["index"])
        q = self.output_quantisation
        self._output_affine = (1.0, 0.0) if q.is_float else (q.scale, float(q.zero_point))
        """Output to probability: scale · (value - zero point), as plain floats."""
        self._input_shape = tuple(shape)
        self._quantise = self._quantiser()
        self._in_place = self._in_place_mapping()
        self._pixels = np.empty(shape[1:], np.uint8)
        """Where :meth:`classify_written` has the label written and quantises it (for an
        input it maps in place; any other gets an image of its own)."""
        self._pixels_as_input = (
            None if self._in_place is None else self._pixels.view(self.input_dtype).reshape(shape)
        )
        #: One inference at a time: the input array and the interpreter are shared state
        #: (two threads would mix their labels; uncontended, the lock costs nothing).
        self._lock = threading.Lock()

    def _quantiser(self) -> Callable[[NDArray[np.uint8]], NDArray[Any]]:
        """The cheapest exact mapping from uint8 pixels (real value x/255) to the input."""
        q = self.input_quantisation
        if self.input_dtype == np.float32:
            return lambda image: image.astype(np.float32) * np.float32(1 / 255)
        unit = math.isclose(q.scale * 255, 1.0, rel_tol=1e-3)
        if unit and self.input_dtype == np.int8 and q.zero_point == -128:
            return lambda image: np.bitwise_xor(image, np.uint8(128)).view(np.int8)
        if unit and self.input_dtype == np.uint8 and q.zero_point == 0:
            return lambda image: np.ascontiguousarray(image)
        info = np.iinfo(self.input_dtype)
        factor = np.float32(1 / (255 * q.scale))

        def general(image: NDArray[np.uint8]) -> NDArray[Any]:
            levels = np.rint(image.astype(np.float32) * factor) + q.zero_point
            clipped: NDArray[Any] = np.clip(levels, info.min, info.max)
            return clipped.astype(self.input_dtype)

        return general

    def _in_place_mapping(self) -> bool | None:
        """Whether the input takes pixels with their top bit flipped (True) or as they are
        (False), so a label image can be quantised where it is written, in place; None for
        any other input."""
        q = self.input_quantisation
        if q.is_float or not math.isclose(q.scale * 255, 1.0, rel_tol=1e-3):
            return None
        if self.input_dtype == np.int8 and q.zero_point == -128:
            return True
        if self.input_dtype == np.uint8 and q.zero_point == 0:
            return False
        return None

    def quantise(self, label_bgr: NDArray[np.uint8]) -> NDArray[Any]:
        """``label_bgr`` (H × W × 3, uint8) as the model's input tensor, [1, H, W, 3]."""
        if label_bgr.shape != self._input_shape[1:] or label_bgr.dtype != np.uint8:
            raise ValueError(
                f"label image must be uint8 {self._input_shape[1:]}; got "
                f"{label_bgr.dtype} {label_bgr.shape}"
            )
        tensor: NDArray[Any] = self._quantise(label_bgr).reshape(self._input_shape)
        return tensor

    def score_output(self, raw: NDArray[Any]) -> float:
        """The model's output tensor as a genuine-probability in 0..1; NaN if it is not one.

        A rounding step past 0 or 1 is clamped; a value farther out (a logit, a broken
        model) is NaN, never read as "certainly genuine".
        """
        scale, zero_point = self._output_affine
        value: float = scale * (raw.item(0) - zero_point)  # one call: the first value
        if not -_SCORE_SLACK <= value <= 1 + _SCORE_SLACK:  # also NaN
            return math.nan
        return min(1.0, max(0.0, value))

    def invoke(self, tensor: NDArray[Any]) -> float:
        """Run the model on an already quantised input tensor; the genuine score."""
        with self._lock:
            self.interpreter.set_tensor(self._input_index, tensor)
            self.interpreter.invoke()
            return self.score_output(self.interpreter.get_tensor(self._output_index))

    def classify(self, label_bgr: NDArray[np.uint8]) -> float:
        """Genuine score (0..1) of an upright BGR label image at the model's input size."""
        return self.invoke(self.quantise(label_bgr))

    @property
    def input_flip(self) -> bool:
        """Whether this model takes label pixels with the top bit of every byte flipped
        (int8 input at scale 1/255, zero point -128): a writer that flips them as it writes
        (:func:`~edge_agent.vision.preprocess.warp_label`'s ``flip_top_bit``) saves
        :meth:`classify_written` a pass over the image."""
        return self._in_place is True

    def classify_written(
        self, write: Callable[[NDArray[np.uint8]], object], *, flipped: bool = False
    ) -> float:
        """Genuine score of the label image ``write`` puts into the H × W × 3 uint8 array
        it is handed (every pixel of it).

        For an input that takes pixels as they are or with the top bit flipped (int8,
        scale 1/255, zero point -128), the array is this model's own, quantised where it
        lies and handed to the interpreter as the input tensor: no image of its own, no
        conversion. (Setting the tensor from it measured cheaper than writing into the
        interpreter's buffer through a view, which the interpreter needs let go of before
        it runs.) ``flipped``: ``write`` has already flipped the top bits where
        :attr:`input_flip` says the input takes them so.
        """
        flip = self._in_place
        if flip is None:
            image = np.empty(self._input_shape[1:], np.uint8)
            write(image)
            return self.classify(image)
        with self._lock:
            pixels = self._pixels
            write(pixels)
            if flip and not flipped:
                np.bitwise_xor(pixels, _TOP_BIT, out=pixels)
            self.interpreter.set_tensor(self._input_index, self._pixels_as_input)
            self.interpreter.invoke()
            return self.score_output(self.interpreter.get_tensor(self._output_index))


def load_interpreter(
    model_path: Path,
    *,
    runtime: RuntimeName = "auto",
    num_threads: int = 1,
) -> LoadedModel:
    """Build an interpreter for ``model_path`` on the chosen runtime, ready to classify."""
    if num_threads < 1:
        raise ValueError("num_threads must be at least 1")
    name, interpreter_type = interpreter_class(runtime)
    path = Path(model_path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelLoadError(f"cannot read model {path}: {exc}") from exc
    if not path.is_file() or not 0 < size <= _MAX_MODEL_BYTES:
        raise ModelLoadError(f"model {path} is not a file of 1 byte to 64 MiB")
    try:
        interpreter = interpreter_type(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{name} cannot build an interpreter for {path}: {exc}") from exc
    return LoadedModel(interpreter, name)
