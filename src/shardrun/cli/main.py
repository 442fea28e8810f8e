"""The `shardrun` command: a thin layer over the library. Every exception ends here, in `main`, as
one line on stderr and an exit code.

Exit codes: 0 ok; 1 some tasks failed (and nothing else); 2 bad job file or usage; 3 any other error,
including an internal one; 130 interrupted. `--debug` (or SHARDRUN_DEBUG=1) adds the traceback.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from shardrun.cli import commands  # noqa: F401  (it registers its commands on `cli`)
from shardrun.cli.app import StdoutClosed, cli
from shardrun.core.errors import ShardrunError

# shardrun.cli.tools (report, plan, image) and `shardrun emulator` (the local Azure Batch emulator)
# are loaded when asked for: see shardrun.cli.app._LAZY.

ERROR = 3  # an error that is neither the user's job file nor failed tasks
DEBUG_HINT = "run with --debug (or SHARDRUN_DEBUG=1) to see the traceback"
# An unexpected error's message may quote a URL or a header: never show a SAS signature or a key.
_SECRET = re.compile(r"(?i)((?:sig|AccountKey|SharedAccessSignature)=)[^&;\s\"']+|"
                     r"((?:SharedKey|Bearer)\s+)\S+")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command; map whatever it raises to one line and an exit code."""
    state: dict[str, Any] = {"debug": _debug_from_env()}  # the group's --debug sets it too
    try:
        # standalone_mode=False: click returns ctx.exit() codes and raises the rest to us
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="shardrun",
                        standalone_mode=False, obj=state)
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
    except (StdoutClosed, BrokenPipeError):
        return _pipe_closed()
    except Exception as err:  # the one place every error ends
        return _report(err, debug=bool(state.get("debug")))
    return code if isinstance(code, int) else 0


def _report(err: Exception, *, debug: bool) -> int:
    """One line for the error, after its traceback with --debug; the exit code."""
    if debug:
        traceback.print_exception(err)
    if isinstance(err, ShardrunError):
        click.echo(f"shardrun: error: {err}", err=True)
        return err.exit_code
    if isinstance(err, OSError):  # disk full, permission denied, a file vanished...
        click.echo(f"shardrun: error: {_os_error(err)}", err=True)
        return ERROR
    if isinstance(err, sqlite3.Error):  # the ledger: locked, corrupt, or its disk failed
        click.echo(f"shardrun: error: the ledger database: {_one_line(err)}", err=True)
        return ERROR
    click.echo(f"shardrun: internal error: {type(err).__name__}: {_one_line(err)}", err=True)
    if not debug:
        click.echo(DEBUG_HINT, err=True)
    return ERROR


def _os_error(err: OSError) -> str:
    text = err.strerror or _one_line(err) or type(err).__name__
    if err.filename is not None:
        text += f": {os.fsdecode(err.filename)}"
    if err.filename2 is not None:
        text += f" -> {os.fsdecode(err.filename2)}"
    return text


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    text = _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "REDACTED", text)
    return text if len(text) <= 500 else text[:497] + "..."


def _debug_from_env() -> bool:
    return os.environ.get("SHARDRUN_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _pipe_closed() -> int:
    """The reader went away (`shardrun logs RUN TASK | head`): stop quietly and successfully."""
    # Point stdout at /dev/null, so the interpreter's last flush at exit meets no broken pipe
    # ("Exception ignored ... BrokenPipeError").
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is no file descriptor (captured, replaced): nothing flushes to the pipe
    return 0
