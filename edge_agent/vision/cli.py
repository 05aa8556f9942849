"""`provgate vision …`: train the label model, evaluate it on fresh labels, check photos."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from edge_agent.vision.layout import LabelKind

__all__ = ["app"]

app = typer.Typer(
    help="The camera label check: train, evaluate and try the TFLite model.",
    no_args_is_help=True,
)

_RUNTIMES = ("auto", "ai_edge_litert", "tflite_runtime")
RuntimeOpt = Annotated[
    str,
    typer.Option(
        "--runtime",
        help="TFLite runtime: auto (ai-edge-litert, else tflite-runtime), ai_edge_litert "
        "or tflite_runtime.",
    ),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model", dir_okay=False, help="A .tflite model with its card (default: the shipped one)."
    ),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _check_runtime(runtime: str) -> None:
    if runtime not in _RUNTIMES:
        _fail(f"--runtime must be one of {', '.join(_RUNTIMES)}, not {runtime!r}")


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, float], None]]:
    """A progress bar on stderr fed by ``(stage, fraction done)`` callbacks."""
    with Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    ) as bar:
        task = bar.add_task("starting", total=1.0)

        def update(stage: str, fraction: float) -> None:
            bar.update(task, description=stage, completed=min(max(fraction, 0.0), 1.0))

        yield update


@app.command("train")
def train_cmd(
    data_dir: Annotated[
        Path | None,
        typer.Argument(
            file_okay=False,
            help="Image folder with genuine/ and counterfeit/ subfolders of whole camera "
            "frames. Leave out to train on freshly rendered synthetic labels.",
        ),
    ] = None,
    synthetic: Annotated[
        int,
        typer.Option("--synthetic", min=100, help="Synthetic labels to render (no DATA_DIR)."),
    ] = 24_000,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="First render seed of the synthetic labels; also seeds the training run."
        ),
    ] = 1_000_000,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Most epochs to train.")] = 40,
    out: Annotated[
        Path, typer.Option("--out", dir_okay=False, help="Where to write the .tflite model.")
    ] = Path("label_check.tflite"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a full-integer int8 label model and write it with its model card."""
    from edge_agent.vision.dataset import SyntheticSpec
    from edge_agent.vision.training import TrainingUnavailableError, train

    if data_dir is not None and not data_dir.is_dir():
        _fail(f"{data_dir} is not a folder (expected genuine/ and counterfeit/ inside it)")
    source: Path | SyntheticSpec = (
        data_dir if data_dir is not None else SyntheticSpec(samples=synthetic, seed=seed)
    )
    try:
        with _progress(quiet) as progress:
            card = train(source, out, epochs=epochs, seed=seed, progress=progress)
    except TrainingUnavailableError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    metrics = card.held_out
    typer.echo(
        f"wrote {out} ({out.stat().st_size / 1024:.0f} KB) and its card; held-out accuracy "
        f"{metrics.accuracy:.2%}, counterfeit accepted {metrics.counterfeit_accepted_rate:.2%}, "
        f"genuine rejected {metrics.genuine_rejected_rate:.2%}, threshold {card.threshold:.3f}"
    )


@app.command("eval")
def eval_cmd(
    samples: Annotated[
        int, typer.Option("--samples", "-n", min=1, help="Labels to render.")
    ] = 1000,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Render seed; the report warns when the model trained on it."),
    ] = 1,
    model: ModelOpt = None,
    frames: Annotated[
        int,
        typer.Option(
            "--frames",
            min=1,
            max=2,
            help="Frames per label: 1 (the model alone decides) or 2 (two lighting angles: "
            "the colour-shift film's hue shift is measured too).",
        ),
    ] = 1,
    counterfeit_share: Annotated[
        float,
        typer.Option("--counterfeit-share", min=0.0, max=1.0, help="Share of counterfeits."),
    ] = 0.5,
    runtime: RuntimeOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    check_targets: Annotated[
        bool,
        typer.Option("--check-targets", help="Exit 1 when a target of the label check is missed."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Render fresh labels (half counterfeit unless told otherwise) and measure the model."""
    from edge_agent.vision.eval import evaluate
    from edge_agent.vision.runtime import ModelLoadError, RuntimeUnavailableError

    _check_runtime(runtime)
    if model is not None and not model.is_file():
        _fail(f"model {model} does not exist")
    try:
        with _progress(quiet or as_json) as progress:
            report = evaluate(
                samples,
                seed,
                model=model,
                counterfeit_share=counterfeit_share,
                frames=frames,
                runtime=runtime,
                progress=progress,
            )
    except (ModelLoadError, RuntimeUnavailableError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)
    if check_targets and not report.meets_targets():
        raise typer.Exit(1)


def _print_report(report: object) -> None:
    from edge_agent.vision.eval import EvalReport

    assert isinstance(report, EvalReport)
    echo = typer.echo
    echo(
        f"{report.samples} labels (seed {report.seed}, {report.frames} frame(s) each): "
        f"{report.genuine} genuine, {report.counterfeit} counterfeit; model "
        f"{report.model_version or report.model} on {report.runtime}"
    )
    echo(f"  accuracy             {report.accuracy:8.2%}   (target ≥ 99%)")
    echo(f"  counterfeit accepted {report.counterfeit_accepted_rate:8.2%}   (target ≤ 0.5%)")
    echo(f"  genuine rejected     {report.genuine_rejected_rate:8.2%}   (target ≤ 1%)")
    echo(f"  unreadable           {report.unreadable:8d}   (counted as suspect)")
    echo("  recall per kind:")
    for kind, recall in report.per_kind_recall.items():
        target = "" if kind == LabelKind.GENUINE else "   (target ≥ 97%)"
        echo(f"    {kind:<20} {recall:8.2%} of {report.per_kind_total[kind]}{target}")
    echo(f"  time per frame       median {report.median_ms:.2f} ms, p99 {report.p99_ms:.2f} ms")
    for warning in report.warnings:
        echo(f"  warning: {warning}")
    failures = report.target_failures()
    echo("  targets: all met" if not failures else f"  targets missed: {'; '.join(failures)}")


@app.command("check")
def check_cmd(
    images: Annotated[
        list[Path],
        typer.Argument(
            dir_okay=False,
            help="One photo of the label, or two taken under different lighting angles.",
        ),
    ],
    model: ModelOpt = None,
    runtime: RuntimeOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check label photos (JPEG/PNG) as the gate would and print the verdict."""
    from edge_agent.vision.checker import LabelChecker
    from edge_agent.vision.runtime import ModelLoadError, RuntimeUnavailableError

    _check_runtime(runtime)
    if not 1 <= len(images) <= 2:
        _fail("give one photo, or two taken under different lighting angles")
    from edge_agent.vision.preprocess import MAX_IMAGE_BYTES

    try:
        for path in images:
            if path.stat().st_size > MAX_IMAGE_BYTES:
                _fail(f"{path} is larger than a camera frame ({MAX_IMAGE_BYTES >> 20} MiB)")
        frames = [path.read_bytes() for path in images]
    except OSError as exc:
        _fail(f"cannot read {exc.filename}: {exc.strerror}")
    try:
        checker = LabelChecker.load(model, runtime=runtime, two_frame=len(frames) == 2)
    except (ModelLoadError, RuntimeUnavailableError) as exc:
        _fail(str(exc))
    result = checker.check(frames)
    if as_json:
        document = {
            "verdict": result.verdict.value,
            "score": result.score,
            "reasons": list(result.reasons),
            "item_id": result.item_id,
            "hue_shift_deg": result.hue_shift_deg,
            "timings_ms": dict(result.timings),
            "runtime": checker.runtime_name,
        }
        typer.echo(json.dumps(document, indent=2))
        return
    score = "no score" if result.score is None else f"score {result.score:.3f} (1 = genuine)"
    typer.echo(f"{result.verdict.value}: {score}")
    if result.reasons:
        typer.echo(f"  reasons: {', '.join(result.reasons)}")
    if result.item_id is not None:
        typer.echo(f"  DataMatrix: {result.item_id}")
    if result.hue_shift_deg is not None:
        typer.echo(f"  colour-shift film: hue shift {result.hue_shift_deg:.0f}°")
