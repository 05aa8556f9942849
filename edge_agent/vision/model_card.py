"""The model card that travels with a label-check model: what it was trained on, how to feed
it, how well it did on held-out data, and the threshold the gate applies.

A card is two files next to the model: ``NAME.card.json`` (read by machines: the runtime
takes the threshold from it, ``provgate vision eval`` the training seeds) and
``NAME.card.md`` (read by people). :func:`card_paths` names them for a model path.
Loading is strict: a card with unknown or missing fields is a :class:`ModelCardError`,
never a half-read card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "CARD_SCHEMA",
    "HeldOutMetrics",
    "ModelCard",
    "ModelCardError",
    "ModelInput",
    "ModelOutput",
    "RenderSeeds",
    "TrainingData",
    "TrainingRun",
    "card_paths",
]

CARD_SCHEMA: Final = 1

_CONFIG: Final = ConfigDict(frozen=True, extra="forbid")


class ModelCardError(ValueError):
    """A model card file is missing, unreadable or not a valid card."""


class RenderSeeds(BaseModel):
    """Labels ``render_dataset(seed, count)`` rendered: sample ``i`` has its own seed
    ``sample_seed(seed, i)``, so two such sets share labels only when ``seed`` is equal."""

    model_config = _CONFIG

    seed: int = Field(ge=0)
    count: int = Field(ge=0)

    def overlaps(self, seed: int, count: int) -> bool:
        """Whether ``render_dataset(seed, count)`` renders any of these labels again."""
        return seed == self.seed and count > 0 and self.count > 0


class TrainingData(BaseModel):
    """Where the training images came from and how many were used."""

    model_config = _CONFIG

    source: Literal["synthetic", "folder"]
    description: str
    seeds: RenderSeeds | None = Field(
        default=None, description="seeds of the rendered labels (synthetic data only)"
    )
    frames: int = Field(ge=0, description="frames read or rendered")
    skipped_no_label: int = Field(ge=0, description="frames where no label was found")
    unreadable_files: int = Field(default=0, ge=0, description="image files that did not decode")
    genuine: int = Field(ge=0, description="usable genuine frames")
    counterfeit: int = Field(ge=0, description="usable counterfeit frames")

    @property
    def synthetic(self) -> bool:
        """Trained on rendered labels rather than photographs."""
        return self.source == "synthetic"


class ModelInput(BaseModel):
    """The input tensor: the warped label image, quantised as ``q = x / (255 * scale) + zp``."""

    model_config = _CONFIG

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[3] = 3
    colour_order: Literal["BGR"] = "BGR"
    normalisation: Literal["x/255"] = "x/255"
    dtype: Literal["int8", "uint8"] = "int8"
    scale: float = Field(gt=0)
    zero_point: int


class ModelOutput(BaseModel):
    """The output tensor: one value, the probability that the label is genuine."""

    model_config = _CONFIG

    meaning: Literal["p_genuine"] = "p_genuine"
    dtype: Literal["int8", "uint8"] = "int8"
    scale: float = Field(gt=0)
    zero_point: int


class HeldOutMetrics(BaseModel):
    """How the converted (int8) model did on data it never trained or validated on."""

    model_config = _CONFIG

    samples: int = Field(ge=0)
    accuracy: float = Field(ge=0, le=1)
    counterfeit_accepted_rate: float = Field(ge=0, le=1)
    genuine_rejected_rate: float = Field(ge=0, le=1)
    per_kind_recall: dict[str, float] = Field(
        default_factory=dict, description="share of each kind classified correctly"
    )


class TrainingRun(BaseModel):
    """How the model was made."""

    model_config = _CONFIG

    tensorflow_version: str
    seed: int
    epochs_run: int = Field(ge=0)
    val_share: float = Field(ge=0, lt=1)
    seconds: float = Field(ge=0)


class ModelCard(BaseModel):
    """Everything a gate or a person needs to know about one ``.tflite`` label model."""

    model_config = _CONFIG

    card_schema: Literal[1] = CARD_SCHEMA
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    created: str = Field(description="UTC date and time the model was made, ISO 8601")
    model_file: str = Field(min_length=1)
    model_bytes: int = Field(ge=0)
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: ModelInput
    output: ModelOutput
    threshold: float = Field(
        gt=0, le=1, description="a label is genuine when P(genuine) >= threshold (> 0)"
    )
    training_data: TrainingData
    held_out: HeldOutMetrics
    training: TrainingRun

    def to_json(self) -> str:
        """The card as indented JSON."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        """Parse a card; :class:`ModelCardError` if it is not one."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ModelCardError(f"not a valid model card: {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read a card's JSON file; :class:`ModelCardError` if missing or invalid."""
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ModelCardError(f"cannot read model card {path}: {exc.strerror}") from exc
        try:
            return cls.from_json(text)
        except ModelCardError as exc:
            raise ModelCardError(f"{path}: {exc}") from exc

    def save(self, model_path: Path) -> tuple[Path, Path]:
        """Write the JSON and Markdown cards next to ``model_path``; returns both paths."""
        json_path, md_path = card_paths(model_path)
        json_path.write_text(self.to_json(), encoding="utf-8")
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        return json_path, md_path

    def to_markdown(self) -> str:
        """The card for people."""
        data, held, inp = self.training_data, self.held_out, self.input
        lines = [
            f"# Model card: {self.name} {self.version}",
            "",
            f"Created {self.created}. File `{self.model_file}`, {self.model_bytes:,} bytes, "
            f"SHA-256 `{self.model_sha256}`.",
            "",
            "## What it does",
            "",
            "Looks at one product label, found in a camera frame and warped upright, and "
            "gives the probability that the label is genuine. The gate calls the label "
            f"genuine when that probability is at least **{self.threshold:.3f}**, suspect "
            "otherwise.",
            "",
            "## Training data",
            "",
        ]
        if data.synthetic:
            lines += [
                "**This model was trained on synthetic labels only** (rendered by "
                "`simulators.labels`), not on photographs of real products. Its figures "
                "below are for synthetic labels; retrain on photos of your own products "
                "(`provgate vision train DATA_DIR`) before relying on it.",
                "",
            ]
        lines.append(data.description)
        lines.append("")
        if data.seeds is not None:
            lines.append(
                f"- `render_dataset(seed={data.seeds.seed}, n={data.seeds.count})`: "
                "evaluate with another seed"
            )
        lines += [
            f"- Frames: {data.frames}; no label found in {data.skipped_no_label}; "
            f"unreadable files: {data.unreadable_files}",
            f"- Used: {data.genuine} genuine, {data.counterfeit} counterfeit",
            "",
            "## Input and output",
            "",
            f"- Input: {inp.height} × {inp.width} × {inp.channels} {inp.colour_order} label "
            f"image, values {inp.normalisation} quantised to {inp.dtype} with scale "
            f"{inp.scale:.8g} and zero point {inp.zero_point}",
            f"- Output: P(genuine) as {self.output.dtype}, scale {self.output.scale:.8g}, "
            f"zero point {self.output.zero_point}",
            "- Full-integer int8 TFLite model: runs unchanged on ai-edge-litert and "
            "tflite-runtime 2.14",
            "",
            "## Held-out results (int8 model)",
            "",
            f"- Samples: {held.samples}",
            f"- Accuracy: {held.accuracy:.2%}",
            f"- Counterfeits accepted: {held.counterfeit_accepted_rate:.2%}",
            f"- Genuine rejected: {held.genuine_rejected_rate:.2%}",
        ]
        if held.per_kind_recall:
            lines += ["", "| Kind | Recall |", "| --- | --- |"]
            lines += [f"| {k} | {v:.2%} |" for k, v in sorted(held.per_kind_recall.items())]
        run = self.training
        lines += [
            "",
            "## Training run",
            "",
            f"- TensorFlow {run.tensorflow_version}, seed {run.seed}, {run.epochs_run} epochs, "
            f"validation share {run.val_share:g}, {run.seconds:.0f} s",
            "",
        ]
        return "\n".join(lines)


def card_paths(model_path: Path) -> tuple[Path, Path]:
    """The JSON and Markdown card files of a model: ``x.tflite`` → ``x.card.json``, ``.md``."""
    stem = model_path.with_suffix("")
    return stem.with_name(stem.name + ".card.json"), stem.with_name(stem.name + ".card.md")
