"""Errors shardrun raises on purpose. The CLI maps them to messages and exit codes in one place."""

from __future__ import annotations


class ShardrunError(Exception):
    """Base class. `exit_code` is what the CLI exits with; the message is one line for the user."""

    exit_code = 3


class JobFileError(ShardrunError):
    """The job file, or something it names (input, app, splitter), is wrong. Exit code 2."""

    exit_code = 2


class UsageError(ShardrunError):
    """The command line asks for something that cannot be done (unknown run, bad flag combination)."""

    exit_code = 2


class SplitError(JobFileError):
    """A splitter failed or produced no pieces."""


class MergeError(ShardrunError):
    """A merger failed. The task outputs are kept; the merge can be run again."""


class BackendNotAvailable(ShardrunError):
    """A backend named in the job file is not installed. The message carries the install hint."""

    exit_code = 2


class RunInterrupted(ShardrunError):
    """The user pressed Ctrl-C. The run can be resumed."""

    exit_code = 130
