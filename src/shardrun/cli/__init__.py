"""The command line: a thin layer over the library; every error becomes one line and an exit code."""

from shardrun.cli.main import main

__all__ = ["main"]
