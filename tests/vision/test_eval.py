"""End-to-end evaluation with the shipped model: consistent figures, targets, seed overlap."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from edge_agent.vision.config import DEFAULT_MODEL_PATH
from edge_agent.vision.eval import EvalReport, evaluate
from edge_agent.vision.layout import COUNTERFEIT_KINDS
from edge_agent.vision.model_card import ModelCard, card_paths

SHIPPED_CARD = ModelCard.load(card_paths(DEFAULT_MODEL_PATH)[0])


@pytest.fixture(scope="module")
def report() -> EvalReport:
    return evaluate(48, seed=7)


def test_report_figures_are_consistent_with_the_counts(report: EvalReport) -> None:
    assert report.samples == 48 == report.genuine + report.counterfeit
    assert sum(report.per_kind_total.values()) == 48
    assert report.correct == sum(report.per_kind_correct.values())
    assert report.accuracy == report.correct / 48
    assert report.counterfeit_accepted_rate == report.counterfeit_accepted / report.counterfeit
    assert report.genuine_rejected_rate == report.genuine_rejected / report.genuine
    wrong = report.samples - report.correct
    assert wrong == report.counterfeit_accepted + report.genuine_rejected
    for kind, recall in report.per_kind_recall.items():
        assert recall == report.per_kind_correct[kind] / report.per_kind_total[kind]
    assert 0 < report.median_ms <= report.p99_ms


def test_report_names_the_model_and_the_runtime_it_ran_on(report: EvalReport) -> None:
    assert report.model_version == SHIPPED_CARD.version
    assert report.model == str(DEFAULT_MODEL_PATH)
    forced = os.environ.get("PROVGATE_TFLITE_RUNTIME")
    assert report.runtime == (forced or "ai_edge_litert")
    assert not report.seed_overlaps_training
    assert report.warnings == []


def test_shipped_model_gets_a_small_fresh_sample_right(report: EvalReport) -> None:
    # 48 labels cannot show the 99% targets; the full check is `evaluate(2000, seed=7)`.
    assert report.accuracy >= 0.95, report.to_json()


def test_json_carries_the_rates_and_the_target_verdict(report: EvalReport) -> None:
    data = report.to_json()
    assert data["accuracy"] == report.accuracy
    assert data["meets_targets"] == report.meets_targets()
    assert data["target_failures"] == report.target_failures()
    assert data["per_kind_recall"] == report.per_kind_recall


def test_a_seed_used_in_training_is_flagged() -> None:
    seeds = SHIPPED_CARD.training_data.seeds
    assert seeds is not None
    report = evaluate(4, seed=seeds.seed)
    assert report.seed_overlaps_training
    assert any("used to train" in w for w in report.warnings)


def test_a_model_without_a_card_is_evaluated_with_a_warning(tmp_path: Path) -> None:
    model = tmp_path / "bare.tflite"
    shutil.copyfile(DEFAULT_MODEL_PATH, model)
    report = evaluate(4, seed=11, model=model)
    assert report.model_version is None
    assert any("no model card" in w for w in report.warnings)


def test_target_failures_name_each_missed_target(report: EvalReport) -> None:
    kinds = [k.value for k in COUNTERFEIT_KINDS]
    bad = dataclasses.replace(
        report,
        samples=200,
        genuine=100,
        counterfeit=100,
        correct=190,
        counterfeit_accepted=4,
        genuine_rejected=6,
        per_kind_total={"genuine": 100, **dict.fromkeys(kinds, 100 // len(kinds))},
        per_kind_correct={
            "genuine": 94,
            **dict.fromkeys(kinds, 100 // len(kinds)),
            "patch_flat": 10,
        },
    )
    failures = bad.target_failures()
    assert not bad.meets_targets()
    named = [f.split(" ")[0] for f in failures]
    assert named == ["accuracy", "counterfeit", "genuine", "patch_flat"]
    assert "4.00% > 0.5%" in failures[1]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="samples"):
        evaluate(0, seed=1)
    with pytest.raises(ValueError, match="frames"):
        evaluate(4, seed=1, frames=3)


def test_targets_are_not_met_on_training_seeds_or_with_a_kind_never_rendered(
    report: EvalReport,
) -> None:
    perfect = dataclasses.replace(
        report,
        correct=report.samples,
        counterfeit_accepted=0,
        genuine_rejected=0,
        per_kind_correct=dict(report.per_kind_total),
        per_kind_total={k: max(n, 1) for k, n in report.per_kind_total.items()},
    )
    perfect = dataclasses.replace(perfect, per_kind_correct=dict(perfect.per_kind_total))
    assert perfect.meets_targets()
    assert (
        "used in training"
        in dataclasses.replace(perfect, seed_overlaps_training=True).target_failures()[-1]
    )
    unrendered = dataclasses.replace(
        perfect,
        per_kind_total={**perfect.per_kind_total, "photocopy": 0},
        per_kind_correct={**perfect.per_kind_correct, "photocopy": 0},
    )
    assert unrendered.target_failures() == ["no labels of kind photocopy: recall unmeasured"]
