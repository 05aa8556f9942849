"""Root of the `provgate` CLI.

Each package owns its subcommands in its own ``cli`` module (a ``typer.Typer`` named
``app``); this module only mounts them, so the packages stay independent of each other.
"""

from __future__ import annotations

from importlib.metadata import version as dist_version

import typer

from edge_agent.cli import app as agent_app
from edge_agent.profile import CONFIG_KEY as GATE_KEY
from edge_agent.profile import check_gate_profile_mapping
from edge_agent.vision.cli import app as vision_app
from gateway.cli import app as ledger_app
from gateway.cli import gateway_app, verify_cmd
from gateway.config import CONFIG_KEY, check_config_mapping
from gatewire.cli import app as id_app
from hardware.cli import CONFIG_KINDS, ConfigKind, config_app, scan
from provgate_cli.demo import demo
from simulators.cli import app as sim_app

app = typer.Typer(
    name="provgate",
    help="Stop counterfeit goods at warehouse fulfilment gates.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.add_typer(id_app, name="id")
app.add_typer(config_app, name="config")
app.add_typer(sim_app, name="sim")
app.add_typer(ledger_app, name="ledger")
app.add_typer(gateway_app, name="gateway")
app.add_typer(vision_app, name="vision")
app.add_typer(agent_app, name="agent")
app.command("verify")(verify_cmd)
# Appended, not registered in front: a gateway config has no `type:`, so the order does not
# decide anything, and device profiles stay first in the "expected …" message.
CONFIG_KINDS.append(ConfigKind("gateway config", CONFIG_KEY, check_config_mapping))
CONFIG_KINDS.append(ConfigKind("gate profile", GATE_KEY, check_gate_profile_mapping))
app.command()(demo)
app.command("scan")(scan)


@app.command()
def version() -> None:
    """Print the installed provgate version."""
    typer.echo(f"provgate {dist_version('provgate')}")


if __name__ == "__main__":  # pragma: no cover
    app()
