"""Train the label-check model: small CNN, int8 TFLite conversion, held-out threshold, card.

:func:`train` takes an image folder (``genuine/`` and ``counterfeit/``) or a
:class:`~edge_agent.vision.dataset.SyntheticSpec`, prepares every frame with the gate's own
preprocessing (and from jittered copies of its located corners, drawn from the training
seed: the gate's locate is coarse, see :mod:`edge_agent.vision.dataset`), trains a small
CNN with light augmentation, class
balancing and early stopping on a validation split, converts it to a full-integer int8
``.tflite`` (a representative sample of training images sets the quantisation), runs the
*converted* model on a held-out split, picks the threshold there (a counterfeit accepted
costs :data:`COUNTERFEIT_COST` genuine rejections) and writes the model and its card.

TensorFlow is an optional extra (``pip install 'provgate[train]'``) imported only inside
:func:`train`; the runtime never needs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.dataset import (
    LabelSet,
    Progress,
    SyntheticSpec,
    load_folder,
    render_synthetic,
)
from edge_agent.vision.model_card import (
    HeldOutMetrics,
    ModelCard,
    ModelInput,
    ModelOutput,
    TrainingData,
    TrainingRun,
)
from edge_agent.vision.runtime import LoadedModel, RuntimeUnavailableError, load_interpreter

__all__ = [
    "COUNTERFEIT_COST",
    "INPUT_HEIGHT",
    "INPUT_WIDTH",
    "TF_MISSING",
    "TrainingUnavailableError",
    "held_out_metrics",
    "pick_threshold",
    "train",
]

INPUT_HEIGHT: Final = 96
INPUT_WIDTH: Final = 160
"""The model sees the label warped to half the canonical layout's size."""
COUNTERFEIT_COST: Final = 3.0
"""Threshold choice: one counterfeit accepted weighs as much as this many genuine rejected."""
TF_MISSING: Final = (
    "training needs TensorFlow, which is not installed: pip install 'provgate[train]'"
)
_BATCH: Final = 64
_REPRESENTATIVE: Final = 300
_PATIENCE: Final = 6
_SHIFT: Final = 2
"""Augmentation: the label may sit this many pixels off, as after a slightly-off locate."""


class TrainingUnavailableError(RuntimeError):
    """The training stack (TensorFlow) is not installed."""


@contextlib.contextmanager
def _tf_warnings_quiet() -> Iterator[None]:
    """Hide TensorFlow's and Keras's own deprecation warnings (nothing a caller can fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, module=r"(keras|tensorflow)(\.|$)"
        )
        yield


def _import_tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module("tensorflow")
    except ImportError as exc:
        raise TrainingUnavailableError(TF_MISSING) from exc


def pick_threshold(
    p_genuine: NDArray[np.floating[Any]],
    genuine: NDArray[np.bool_],
    counterfeit_cost: float = COUNTERFEIT_COST,
) -> float:
    """The threshold with the least weighted error on these scores; the middle of the
    best range, so labels slightly off the held-out ones still land on the right side."""
    if genuine.all() or not genuine.any():  # one class alone: 0 or 1 would look best
        raise ValueError("picking a threshold needs genuine and counterfeit held-out labels")
    scores = np.unique(np.asarray(p_genuine, dtype=np.float64))
    candidates = np.concatenate(([0.0], (scores[:-1] + scores[1:]) / 2, [1.0]))
    n_genuine = max(int(genuine.sum()), 1)
    n_counterfeit = max(int((~genuine).sum()), 1)
    accepted = np.asarray(p_genuine)[None, :] >= candidates[:, None]
    counterfeit_accepted = (accepted & ~genuine).sum(axis=1) / n_counterfeit
    genuine_rejected = (~accepted & genuine).sum(axis=1) / n_genuine
    cost = counterfeit_cost * counterfeit_accepted + genuine_rejected
    best = np.flatnonzero(cost <= cost.min() + 1e-12)
    return float(candidates[best[len(best) // 2]])


def held_out_metrics(
    p_genuine: NDArray[np.floating[Any]],
    genuine: NDArray[np.bool_],
    kinds: tuple[str, ...],
    threshold: float,
) -> HeldOutMetrics:
    """Accuracy, error rates and per-kind recall of scores at ``threshold``."""
    said_genuine = np.asarray(p_genuine) >= threshold
    correct = said_genuine == genuine
    kind_array = np.array(kinds)
    recall = {kind: float(correct[kind_array == kind].mean()) for kind in sorted(set(kinds))}
    n_genuine, n_counterfeit = int(genuine.sum()), int((~genuine).sum())
    return HeldOutMetrics(
        samples=len(kinds),
        accuracy=float(correct.mean()) if len(kinds) else 0.0,
        counterfeit_accepted_rate=float((said_genuine & ~genuine).sum() / max(n_counterfeit, 1)),
        genuine_rejected_rate=float((~said_genuine & genuine).sum() / max(n_genuine, 1)),
        per_kind_recall=recall,
    )


def _split(
    data: LabelSet, shares: tuple[float, float], seed: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Train, validation and held-out indices, stratified by kind."""
    rng = np.random.default_rng(seed)
    kinds = np.array(data.kinds)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for kind in sorted(set(data.kinds)):
        members = rng.permutation(np.flatnonzero(kinds == kind))
        n_val = round(len(members) * shares[0])
        n_test = round(len(members) * shares[1])
        parts[1].extend(members[:n_val])
        parts[2].extend(members[n_val : n_val + n_test])
        parts[0].extend(members[n_val + n_test :])
    train, val, test = (np.array(sorted(p), dtype=np.intp) for p in parts)
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"too few usable labels ({len(data)}) to split three ways")
    return train, val, test


def _build_model(tf: Any, height: int, width: int) -> Any:
    """3 × 3 convolutions (BN, ReLU6), all but one with stride 2, global pool, one sigmoid.

    Plain convolutions rather than depthwise-separable ones: several times faster to
    train on a CPU for the same work at inference. The first layers see the
    full-resolution warp, where microtext and film stripes live; about 24 M
    multiply-adds, so an invocation (about 1 ms) dwarfs locating and warping the label.
    """
    layers = tf.keras.layers
    inputs = layers.Input((height, width, 3))
    x = inputs
    for filters, stride in ((24, 2), (32, 2), (32, 1), (48, 2), (64, 2), (96, 2)):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return tf.keras.Model(inputs, outputs, name="label_check")


def _datasets(
    tf: Any, data: LabelSet, train_idx: NDArray[np.intp], val_idx: NDArray[np.intp], seed: int
) -> tuple[Any, Any]:
    height, width = data.images.shape[1:3]
    labels = data.genuine.astype(np.float32)
    positives = float(labels[train_idx].mean())
    weights = np.where(labels == 1, 0.5 / max(positives, 1e-6), 0.5 / max(1 - positives, 1e-6))

    def augment(images: Any, label: Any, weight: Any) -> tuple[Any, Any, Any]:
        # one of the label's warps: from its located corners or a jittered copy of them
        pick = tf.random.uniform([], 0, tf.shape(images)[0], dtype=tf.int32, seed=seed)
        x = tf.cast(tf.gather(images, pick), tf.float32) / 255.0
        x = tf.pad(x, [[_SHIFT, _SHIFT], [_SHIFT, _SHIFT], [0, 0]], mode="SYMMETRIC")
        x = tf.image.random_crop(x, [height, width, 3], seed=seed)
        x = x * tf.random.uniform([], 0.92, 1.08, seed=seed)
        return tf.clip_by_value(x, 0.0, 1.0), label, weight

    def scale(image: Any, label: Any) -> tuple[Any, Any]:
        return tf.cast(image, tf.float32) / 255.0, label

    warps = data.images[train_idx][:, None]  # per label: its warps, located one first
    if data.jittered is not None:
        warps = np.concatenate([warps, data.jittered[train_idx]], axis=1)
    train_ds = (
        tf.data.Dataset.from_tensor_slices(
            (warps, labels[train_idx], weights[train_idx].astype(np.float32))
        )
        .shuffle(len(train_idx), seed=seed, reshuffle_each_iteration=True)
        .map(augment, num_parallel_calls=1)
        .batch(_BATCH)
        .prefetch(1)
    )
    val_ds = (
        tf.data.Dataset.from_tensor_slices((data.images[val_idx], labels[val_idx]))
        .map(scale)
        .batch(_BATCH)
    )
    return train_ds, val_ds


def _convert(tf: Any, model: Any, images: NDArray[np.uint8], seed: int) -> bytes:
    """Full-integer int8 TFLite model; int8 input (x/255) and int8 output."""
    rng = np.random.default_rng(seed)
    sample = images[rng.permutation(len(images))[:_REPRESENTATIVE]]

    def representative() -> Any:
        for image in sample:
            yield [image[None].astype(np.float32) / 255.0]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The converter asks for input statistics even when the representative data set
        # gives them; nothing is wrong.
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return bytes(converter.convert())


def _tflite_scores(
    model_path: Path, images: NDArray[np.uint8]
) -> tuple[NDArray[np.float64], LoadedModel]:
    """P(genuine) from the int8 model for each image, through the gate's own runtime code."""
    try:
        model = load_interpreter(model_path)
    except RuntimeUnavailableError as exc:
        raise TrainingUnavailableError(
            f"testing the converted model needs a TFLite runtime: {exc}"
        ) from exc
    return np.array([model.classify(image) for image in images], dtype=np.float64), model


def _load(
    source: Path | SyntheticSpec, progress: Progress | None, seed: int
) -> tuple[LabelSet, TrainingData]:
    if isinstance(source, SyntheticSpec):
        data = render_synthetic(source, INPUT_HEIGHT, INPUT_WIDTH, progress, jitter_seed=seed)
    else:
        data = load_folder(source, INPUT_HEIGHT, INPUT_WIDTH, progress, jitter_seed=seed)
    n_genuine = int(data.genuine.sum())
    info = TrainingData(
        source="synthetic" if isinstance(source, SyntheticSpec) else "folder",
        description=data.description,
        seeds=data.seeds,
        frames=data.frames,
        skipped_no_label=data.skipped_no_label,
        unreadable_files=data.unreadable_files,
        genuine=n_genuine,
        counterfeit=len(data) - n_genuine,
    )
    return data, info


def train(
    source: Path | SyntheticSpec,
    out: Path,
    *,
    epochs: int = 40,
    seed: int = 0,
    val_share: float = 0.15,
    held_out_share: float = 0.15,
    version: str | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> ModelCard:
    """Train, convert and test a label model; write ``out`` and its card; return the card.

    ``val_share`` of the labels steer early stopping and ``held_out_share`` are kept
    apart for the final test of the int8 model and its threshold.
    """
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    if not (0 < val_share < 0.5 and 0 < held_out_share < 0.5):
        raise ValueError("val_share and held_out_share must each lie between 0 and 0.5")
    tf = _import_tensorflow()
    started = time.monotonic()
    tf.keras.utils.set_random_seed(seed)
    data, data_info = _load(source, progress, seed)
    train_idx, val_idx, test_idx = _split(data, (val_share, held_out_share), seed)
    if data.genuine[test_idx].all() or not data.genuine[test_idx].any():
        raise ValueError(
            f"too few labels of one class ({len(data)} usable) to hold out both genuine "
            "and counterfeit ones for the threshold"
        )

    model = _build_model(tf, INPUT_HEIGHT, INPUT_WIDTH)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(2e-3),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    train_ds, val_ds = _datasets(tf, data, train_idx, val_idx, seed)

    def epoch_end(epoch: int, logs: dict[str, float] | None) -> None:
        if progress is not None:
            logs = logs or {}
            progress(
                f"epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}, "
                f"val_loss {logs.get('val_loss', float('nan')):.4f}, "
                f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f}",
                (epoch + 1) / epochs,
            )

    callbacks = tf.keras.callbacks
    with _tf_warnings_quiet():
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            shuffle=False,  # the dataset shuffles itself
            verbose=0,
            callbacks=[
                callbacks.EarlyStopping(
                    monitor="val_loss", patience=_PATIENCE, restore_best_weights=True
                ),
                callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2),
                callbacks.LambdaCallback(on_epoch_end=epoch_end),
            ],
        )
    if progress is not None:
        progress("converting to int8", 0.0)
    with _tf_warnings_quiet():
        content = _convert(tf, model, data.images[train_idx], seed)

    if progress is not None:
        progress("testing the int8 model on held-out labels", 0.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    scores, loaded = _tflite_scores(out, data.images[test_idx])
    genuine = data.genuine[test_idx]
    kinds = tuple(data.kinds[i] for i in test_idx)
    threshold = pick_threshold(scores, genuine)
    metrics = held_out_metrics(scores, genuine, kinds, threshold)

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    card = ModelCard(
        name=out.stem,
        version=version or now.strftime("%Y.%m.%d.%H%M"),
        created=now.isoformat(),
        model_file=out.name,
        model_bytes=len(content),
        model_sha256=hashlib.sha256(content).hexdigest(),
        input=ModelInput(
            height=INPUT_HEIGHT,
            width=INPUT_WIDTH,
            scale=loaded.input_quantisation.scale,
            zero_point=loaded.input_quantisation.zero_point,
        ),
        output=ModelOutput(
            scale=loaded.output_quantisation.scale,
            zero_point=loaded.output_quantisation.zero_point,
        ),
        threshold=threshold,
        training_data=data_info,
        held_out=metrics,
        training=TrainingRun(
            tensorflow_version=str(tf.__version__),
            seed=seed,
            epochs_run=len(history.history.get("loss", [])),
            val_share=val_share,
            seconds=time.monotonic() - started,
        ),
    )
    card.save(out)
    return card
