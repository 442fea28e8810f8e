"""The `shardrun` click group and what every command module shares (the console, the home)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from shardrun import __version__

out = Console(highlight=False, soft_wrap=True)


def _home(ctx: click.Context) -> Path | None:
    home: Path | None = ctx.obj.get("home")
    return home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shardrun")
@click.option("--home", type=click.Path(path_type=Path), envvar="SHARDRUN_HOME",
              help="Where the ledger and run data live [default: ~/.local/state/shardrun].")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """Split a big job into tasks, run them in parallel, merge the outputs."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home


