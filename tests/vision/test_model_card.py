"""The model card: strict JSON round trip, the Markdown a person reads, file naming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.vision.model_card import (
    HeldOutMetrics,
    ModelCard,
    ModelCardError,
    ModelInput,
    ModelOutput,
    RenderSeeds,
    TrainingData,
    TrainingRun,
    card_paths,
)


def make_card(*, synthetic: bool = True) -> ModelCard:
    return ModelCard(
        name="label_check",
        version="2026.11.28",
        created="2026-11-28T23:00:00+00:00",
        model_file="label_check.tflite",
        model_bytes=61_234,
        model_sha256="ab" * 32,
        input=ModelInput(height=96, width=160, scale=1 / 255, zero_point=-128),
        output=ModelOutput(scale=1 / 256, zero_point=-128),
        threshold=0.4375,
        training_data=TrainingData(
            source="synthetic" if synthetic else "folder",
            description="what it was trained on",
            seeds=RenderSeeds(seed=1_000_000, count=5000) if synthetic else None,
            frames=5000,
            skipped_no_label=3,
            genuine=2500,
            counterfeit=2497,
        ),
        held_out=HeldOutMetrics(
            samples=750,
            accuracy=0.996,
            counterfeit_accepted_rate=0.002,
            genuine_rejected_rate=0.005,
            per_kind_recall={"genuine": 0.995, "patch_flat": 0.99},
        ),
        training=TrainingRun(
            tensorflow_version="2.21.0", seed=0, epochs_run=12, val_share=0.15, seconds=321.0
        ),
    )


def test_card_survives_a_json_round_trip_through_files(tmp_path: Path) -> None:
    card = make_card()
    json_path, md_path = card.save(tmp_path / "label_check.tflite")
    assert ModelCard.load(json_path) == card
    assert md_path.read_text(encoding="utf-8") == card.to_markdown()


def test_card_files_sit_next_to_the_model() -> None:
    assert card_paths(Path("models/label_check.tflite")) == (
        Path("models/label_check.card.json"),
        Path("models/label_check.card.md"),
    )


def test_markdown_says_plainly_a_synthetic_model_was_trained_on_synthetic_labels() -> None:
    text = make_card().to_markdown()
    assert "trained on synthetic labels only" in text
    assert "0.438" in text  # the threshold
    assert "96 × 160 × 3 BGR" in text
    assert "| patch_flat | 99.00% |" in text
    assert "render_dataset(seed=1000000, n=5000)" in text
    assert "synthetic labels only" not in make_card(synthetic=False).to_markdown()


def test_loading_a_missing_or_malformed_card_is_a_model_card_error(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="cannot read"):
        ModelCard.load(tmp_path / "absent.card.json")
    bad = tmp_path / "bad.card.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelCardError, match="not a valid model card"):
        ModelCard.load(bad)
    data = json.loads(make_card().to_json())
    data["surprise"] = 1
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelCardError, match="surprise"):
        ModelCard.load(bad)


@pytest.mark.parametrize("threshold", [1.5, -0.1, 0.0])  # 0 would pass every label
def test_threshold_outside_zero_to_one_is_refused(threshold: float) -> None:
    data = json.loads(make_card().to_json())
    data["threshold"] = threshold
    with pytest.raises(ModelCardError, match="threshold"):
        ModelCard.from_json(json.dumps(data))


def test_render_seeds_overlap_only_for_the_same_base_seed() -> None:
    seeds = RenderSeeds(seed=1_000_000, count=5000)
    assert seeds.overlaps(1_000_000, 10)
    assert not seeds.overlaps(7, 2000)
    assert not seeds.overlaps(1_000_000, 0)
