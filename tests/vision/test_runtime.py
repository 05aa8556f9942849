"""The TFLite runtime: which one is chosen, and that a real interpreter classifies."""

from __future__ import annotations

import importlib
import math
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent.vision.preprocess import locate_quad, warp_label
from edge_agent.vision.runtime import (
    RUNTIME_ENV,
    LoadedModel,
    ModelLoadError,
    RuntimeUnavailableError,
    interpreter_class,
    load_interpreter,
)
from simulators.labels import render_dataset
from tests.vision.vision_model import model_under_test


def _installed(name: str) -> bool:
    try:
        importlib.import_module(f"{name}.interpreter")
    except ImportError:
        return False
    return True


REQUESTED = os.environ.get(RUNTIME_ENV) or None
"""The runtime this test run was asked to use (the legacy environment sets it)."""


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_interpreter(model_under_test())


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)


def _block(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``import package`` (and its submodules) fail, as if it were not installed."""
    for name in list(sys.modules):
        if name == package or name.startswith(package + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


def _standin_tflite_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where tflite-runtime is not installed, stand it in with ai-edge-litert's Interpreter
    (the same API: tflite-runtime is its predecessor), so the fallback path is exercised."""
    if _installed("tflite_runtime"):
        return
    litert = importlib.import_module("ai_edge_litert.interpreter")
    package = types.ModuleType("tflite_runtime")
    module = types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = litert.Interpreter  # type: ignore[attr-defined]
    package.interpreter = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", module)


def test_interpreter_is_built_and_classifies_into_zero_to_one(model: LoadedModel) -> None:
    assert model.runtime == (REQUESTED or interpreter_class("auto")[0])
    assert model.height >= 8
    assert model.width >= 8
    rng = np.random.default_rng(0)
    for _ in range(3):
        label = rng.integers(0, 256, (model.height, model.width, 3), dtype=np.uint8)
        score = model.classify(label)
        assert 0.0 <= score <= 1.0


def test_input_size_and_quantisation_come_from_the_model(model: LoadedModel) -> None:
    detail = model.interpreter.get_input_details()[0]
    assert [1, model.height, model.width, 3] == [int(n) for n in detail["shape"]]
    scale, zero_point = detail["quantization"]
    assert model.input_quantisation.scale == pytest.approx(scale)
    assert model.input_quantisation.zero_point == zero_point


def test_quantised_input_matches_the_affine_formula(model: LoadedModel) -> None:
    label = np.random.default_rng(1).integers(0, 256, (model.height, model.width, 3), np.uint8)
    tensor = model.quantise(label)
    assert tensor.shape == (1, model.height, model.width, 3)
    q = model.input_quantisation
    if q.is_float:
        expected = label.astype(np.float32) / 255
        assert np.allclose(tensor[0], expected)
    else:
        info = np.iinfo(tensor.dtype)
        expected = np.clip(np.rint(label / 255 / q.scale) + q.zero_point, info.min, info.max)
        assert np.array_equal(tensor[0].astype(np.int32), expected.astype(np.int32))


def test_a_label_written_into_the_input_scores_as_the_same_image_classified(
    model: LoadedModel,
) -> None:
    rng = np.random.default_rng(2)
    seen: list[tuple[tuple[int, ...], np.dtype[np.uint8]]] = []
    for _ in range(3):
        label = rng.integers(0, 256, (model.height, model.width, 3), dtype=np.uint8)

        def write(out: np.ndarray, label: np.ndarray = label) -> None:
            seen.append((out.shape, out.dtype))
            out[...] = label

        assert model.classify_written(write) == model.classify(label)
    assert seen == [((model.height, model.width, 3), np.dtype(np.uint8))] * 3


def test_a_failing_write_leaves_the_interpreter_usable(model: LoadedModel) -> None:
    """The interpreter refuses to run while a view of its buffers lives; none may linger."""

    def failing(out: np.ndarray) -> None:
        raise ValueError("warp failed")

    with pytest.raises(ValueError, match="warp failed"):
        model.classify_written(failing)
    label = np.full((model.height, model.width, 3), 200, np.uint8)
    assert model.classify_written(lambda out: np.copyto(out, label)) == model.classify(label)


def test_an_input_quantised_otherwise_is_written_to_an_image_then_quantised() -> None:
    stub = _StubInterpreter(np.int8, (1 / 256, -128), 0, input_quantization=(1 / 127.5, 0))
    model = LoadedModel(stub, "stub")
    assert model.classify_written(lambda out: out.fill(255)) == 0.5
    assert stub.last_input is not None
    assert np.all(stub.last_input == 127)  # 1.0 at scale 1/127.5, not the raw pixel
    assert not stub.buffer.any()  # the interpreter's buffer was not written


def test_a_label_of_the_wrong_size_is_refused(model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="label image must be"):
        model.classify(np.zeros((model.height + 1, model.width, 3), np.uint8))


@pytest.mark.usefixtures("no_override")
def test_auto_prefers_ai_edge_litert_when_installed() -> None:
    if not _installed("ai_edge_litert"):
        pytest.skip("ai-edge-litert is not installed in this environment")
    assert interpreter_class("auto")[0] == "ai_edge_litert"


@pytest.mark.usefixtures("no_override")
def test_auto_falls_back_to_tflite_runtime_and_classifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _standin_tflite_runtime(monkeypatch)
    _block(monkeypatch, "ai_edge_litert")
    name, _ = interpreter_class("auto")
    assert name == "tflite_runtime"
    fallback = load_interpreter(model_under_test())
    assert fallback.runtime == "tflite_runtime"
    label = np.full((fallback.height, fallback.width, 3), 200, np.uint8)
    assert 0.0 <= fallback.classify(label) <= 1.0


def test_environment_variable_overrides_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    _standin_tflite_runtime(monkeypatch)
    monkeypatch.setenv(RUNTIME_ENV, "tflite_runtime")
    assert interpreter_class("auto")[0] == "tflite_runtime"
    monkeypatch.setenv(RUNTIME_ENV, "onnx")
    with pytest.raises(RuntimeUnavailableError, match=RUNTIME_ENV):
        interpreter_class("auto")


@pytest.mark.usefixtures("no_override")
def test_no_runtime_at_all_names_both_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "ai_edge_litert")
    _block(monkeypatch, "tflite_runtime")
    with pytest.raises(RuntimeUnavailableError) as raised:
        load_interpreter(model_under_test())
    assert "ai_edge_litert" in str(raised.value)
    assert "tflite_runtime" in str(raised.value)


@pytest.mark.usefixtures("no_override")
def test_an_explicit_runtime_that_is_missing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "tflite_runtime")
    with pytest.raises(RuntimeUnavailableError, match="tflite_runtime"):
        interpreter_class("tflite_runtime")


def test_missing_or_invalid_model_files_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_interpreter(tmp_path / "absent.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelLoadError):
        load_interpreter(garbage)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError):
        load_interpreter(empty)
    with pytest.raises(ModelLoadError):
        load_interpreter(tmp_path)


def test_num_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_threads"):
        load_interpreter(model_under_test(), num_threads=0)


def test_output_dequantisation_is_clamped_to_a_probability(model: LoadedModel) -> None:
    q = model.output_quantisation
    if q.is_float:
        assert model.score_output(np.array([[1.005]], np.float32)) == 1.0
        assert model.score_output(np.array([[-0.005]], np.float32)) == 0.0
    else:
        assert 0.0 <= model.score_output(np.array([[127]], np.int8)) <= 1.0
        assert model.score_output(np.array([[q.zero_point]], np.int32)) == 0.0


class _StubInterpreter:
    """Tensor details of a model under test; its output is ``raw``."""

    def __init__(
        self,
        dtype: type,
        quantization: tuple[float, int],
        raw: int,
        input_shape: tuple[int, ...] = (1, 32, 64, 3),
        input_quantization: tuple[float, int] = (1 / 255, -128),
    ) -> None:
        self.dtype, self.quantization, self.raw = dtype, quantization, raw
        self.input_shape, self.input_quantization = input_shape, input_quantization
        self.buffer = np.zeros(input_shape, np.int8)
        self.last_input: np.ndarray | None = None

    def get_input_details(self) -> list[dict[str, object]]:
        shape = np.array(self.input_shape)
        quantization = self.input_quantization
        return [{"shape": shape, "dtype": np.int8, "quantization": quantization, "index": 0}]

    def get_output_details(self) -> list[dict[str, object]]:
        shape = np.array([1, 1])
        return [
            {"shape": shape, "dtype": self.dtype, "quantization": self.quantization, "index": 1}
        ]

    def set_tensor(self, index: int, tensor: np.ndarray) -> None:
        self.last_input = np.array(tensor)

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> np.ndarray:
        return np.array([[self.raw]], dtype=self.dtype)

    def tensor(self, index: int) -> Callable[[], np.ndarray]:
        return lambda: self.buffer


@pytest.mark.parametrize(
    ("dtype", "quantization"),
    [
        (np.int8, (0.0, 0)),  # raw 3 would read as a score of 1.0: certainly genuine
        (np.uint8, (0.0, 0)),
        (np.int8, (-1 / 256, -128)),
        (np.int8, (float("nan"), 0)),
        (np.int32, (0.0, 0)),
        (np.bool_, (0.0, 0)),
    ],
)
def test_an_output_that_cannot_be_read_as_a_probability_is_refused(
    dtype: type, quantization: tuple[float, int]
) -> None:
    with pytest.raises(ModelLoadError, match="output"):
        LoadedModel(_StubInterpreter(dtype, quantization, 3), "stub")


def test_a_quantised_output_reads_as_its_dequantised_probability() -> None:
    model = LoadedModel(_StubInterpreter(np.int8, (1 / 256, -128), 0), "stub")
    assert model.classify(np.zeros((32, 64, 3), np.uint8)) == 0.5


@pytest.mark.parametrize(
    "shape", [(1, 4, 64, 3), (1, 32, 20000, 3), (2, 32, 64, 3), (1, 32, 64, 1), (1, 32, 64)]
)
def test_an_input_that_is_not_a_label_image_of_sane_size_is_refused(
    shape: tuple[int, ...],
) -> None:
    with pytest.raises(ModelLoadError, match="model input"):
        LoadedModel(_StubInterpreter(np.int8, (1 / 256, -128), 0, shape), "stub")


@pytest.mark.parametrize("raw", [2.5, -0.5, float("inf"), float("nan")])
def test_an_output_that_is_no_probability_is_nan_not_certainly_genuine(raw: float) -> None:
    model = LoadedModel(_StubInterpreter(np.float32, (0.0, 0), 0), "stub")
    assert math.isnan(model.score_output(np.array([[raw]], np.float32)))
    logits = LoadedModel(_StubInterpreter(np.int8, (0.1, 0), 100), "stub")  # reads 10.0
    assert math.isnan(logits.classify(np.zeros((32, 64, 3), np.uint8)))


def test_two_threads_on_one_model_each_get_their_own_labels_score(model: LoadedModel) -> None:
    """The model's input array and interpreter are shared: one inference at a time, or a
    label written by one thread would be scored for the other."""

    labels = []
    for sample in render_dataset(5, 12, frames=1):
        quad, _ = locate_quad(sample.frames[0])
        if quad is not None:
            labels.append(warp_label(sample.frames[0], quad, model.width, model.height))
    scores = [model.classify(label) for label in labels]
    low, high = labels[int(np.argmin(scores))], labels[int(np.argmax(scores))]
    alone = {id(low): model.classify(low), id(high): model.classify(high)}
    assert alone[id(high)] - alone[id(low)] > 0.5  # labels the model tells apart
    mixed: list[int] = []

    def work(label: np.ndarray) -> None:
        def write(out: np.ndarray) -> None:
            out[...] = label
            time.sleep(0)  # let the other thread run between the write and the inference

        for _ in range(60):
            if model.classify_written(write) != alone[id(label)]:
                mixed.append(1)

    threads = [threading.Thread(target=work, args=(label,)) for label in (low, high)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mixed == []
