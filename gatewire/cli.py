"""``provgate id …``: item identity commands (mounted by ``provgate_cli.main``)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gatewire.identity import parse_item_id

app = typer.Typer(
    help="Item identity: normalise barcode, Digital Link and EPC reads to one canonical ID.",
    no_args_is_help=True,
)

EXIT_INVALID: Final = 2
# Shells make a literal GS (0x1D) awkward to type, so the 4-character escape \x1d works too.
_GS_ESCAPE: Final = re.compile(r"\\x1d", re.IGNORECASE)


@app.callback()
def _group() -> None:
    # A callback keeps `parse` a subcommand even while it is the only one (typer would
    # otherwise collapse a one-command app into that command).
    pass


@app.command("parse")
def parse(
    text: Annotated[
        str,
        typer.Argument(
            help=r"The read: GS1 element string (GS as \x1d), (01)… form, Digital Link, "
            "EPC URI, EPC hex or GTIN.",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the canonical ID as one JSON object.")
    ] = False,
) -> None:
    """Print the canonical form of an item ID; exit 2 with the reason if it is invalid."""
    outcome = parse_item_id(_GS_ESCAPE.sub("\x1d", text))
    if outcome.item is None:
        typer.echo(f"invalid item ID: {outcome.error}", err=True)
        raise typer.Exit(EXIT_INVALID)
    fields = outcome.item.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(fields, ensure_ascii=False))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in fields.items():
        table.add_row(name, Text("-" if value is None else str(value)))
    table.add_row("key", Text(outcome.item.key))
    Console(soft_wrap=False).print(table)
