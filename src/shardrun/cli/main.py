"""The `shardrun` command: a thin layer over the library. Errors become messages and exit codes here.

Exit codes: 0 ok; 1 some tasks failed; 2 bad job file or usage; 3 other errors; 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from shardrun.cli import commands, tools  # noqa: F401  (they register their commands on `cli`)
from shardrun.cli.app import cli
from shardrun.core.errors import ShardrunError
from shardrun.emulator.command import emulator_command

# `shardrun emulator`: the local Azure Batch emulator (its module imports its dependencies lazily).
cli.add_command(emulator_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Every error the user can cause ends here as one line and an exit code."""
    try:
        # standalone_mode=False: click returns ctx.exit() codes instead of calling sys.exit
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="shardrun",
                        standalone_mode=False)
    except ShardrunError as err:
        click.echo(f"shardrun: error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as err:
        err.show()
        return 2
    except click.exceptions.Abort:
        click.echo("shardrun: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("shardrun: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 1
    return code if isinstance(code, int) else 0
