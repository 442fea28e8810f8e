"""The `shardrun` click group and what every command module shares (the console, the home)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from shardrun.version import __version__

if TYPE_CHECKING:
    from rich.console import Console


class StdoutClosed(Exception):
    """Standard output's reader went away (`shardrun logs RUN TASK | head`)."""


def _console() -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            """rich exits 1 here; main() decides instead (0, quietly)."""
            self.quiet = True
            raise StdoutClosed()

    return _Console(highlight=False, soft_wrap=True)


class _LazyConsole:
    """The console, made (and rich imported) on first use: `--version`, `--help` and a quiet
    command never pay for rich."""

    _made: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            _LazyConsole._made = _console()
        return getattr(self._made, name)


out = cast("Console", _LazyConsole())


@contextlib.contextmanager
def _closed_pipe_is_ours() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError as err:
        raise StdoutClosed() from err


# Commands whose module is imported only when one of them is asked for (or --help lists them all):
# `shardrun run` starts without loading the planner's, the image's or the emulator's commands.
# A module either registers its commands on `cli` as it is imported, or names the one to add.
_LAZY: dict[str, tuple[str, str | None]] = {
    "report": ("shardrun.cli.tools", None),
    "plan": ("shardrun.cli.tools", None),
    "image": ("shardrun.cli.tools", None),
    "emulator": ("shardrun.emulator.command", "emulator_command"),
}


class ShardrunGroup(click.Group):
    """The top group. A closed pipe is turned into StdoutClosed before click sees it, since click
    would exit 1 on it, and 1 means that tasks failed: main() exits 0 instead."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            self._load(*_LAZY[cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module, name in set(_LAZY.values()):
            self._load(module, name)
        return super().list_commands(ctx)

    def _load(self, module: str, name: str | None) -> None:
        loaded = importlib.import_module(module)
        if name is not None and name not in self.commands:
            command = getattr(loaded, name)
            assert isinstance(command, click.Command)
            self.add_command(command)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _closed_pipe_is_ours():  # --help and --version print while the arguments are parsed
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with _closed_pipe_is_ours():
            return super().invoke(ctx)


def _home(ctx: click.Context) -> Path | None:
    home: Path | None = ctx.obj.get("home")
    return home


@click.group(cls=ShardrunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shardrun")
@click.option("--home", type=click.Path(path_type=Path), envvar="SHARDRUN_HOME",
              help="Where the ledger and run data live [default: ~/.local/state/shardrun].")
@click.option("--debug", is_flag=True,
              help="Print the traceback of an error (also: SHARDRUN_DEBUG=1).")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """Split a big job into tasks, run them in parallel, merge the outputs."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    if debug:  # main() reads it when an error reaches it
        ctx.obj["debug"] = True


