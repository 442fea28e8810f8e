"""The guarantees the local backend's cheaper bookkeeping must keep (issue 13, item 5): the user's
files are read-only (never written, linked or moved), every attempt is in the ledger, the output
check still knows an input under another name, and the store still refuses keys that are not plain
relative paths. Each test fails if the shortcut it covers drops its guarantee."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

import pytest

import shardrun
from shardrun.core.compute import AttemptEvent
from shardrun.core.errors import JobFileError
from shardrun.core.ledger import Ledger
from shardrun.core.preflight import validate_job
from shardrun.core.spec import load_spec
from shardrun.core.split import resolve_inputs
from shardrun.providers.local.processes import LocalBackend
from shardrun.providers.local.store import LocalStore

from .helpers import PY, write_job

# Appends to its input (which the contract forbids), then copies the input to the output.
APPENDER = ("import sys; open(sys.argv[1], 'ab').write(b'TASK WAS HERE\\n');"
            "open(sys.argv[2], 'wb').write(open(sys.argv[1], 'rb').read())")


def test_many_tasks_that_write_to_their_input_leave_the_users_files_as_they_were(
        tmp_path: Path, shardrun_home: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    inputs = {data / f"in{i}.txt": f"input {i}\n".encode() for i in range(1, 25)}
    for path, body in inputs.items():
        path.write_bytes(body)
    before = {path: os.stat(path) for path in inputs}
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", APPENDER, "{input}", "{output}"]},
        "split": {"input": "data", "method": "files"},
        "merge": {"output": "result.txt"},
        "run": {"concurrency": 2},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    # in natural order (in2 before in10), each as the task saw it: its own copy, appended to
    ordered = sorted(inputs, key=lambda p: int(p.stem[2:]))
    assert (tmp_path / "result.txt").read_bytes() == b"".join(
        inputs[p] + b"TASK WAS HERE\n" for p in ordered)
    for path, body in inputs.items():
        now = os.stat(path)
        assert path.read_bytes() == body, f"{path} was written"
        assert now.st_nlink == 1, f"{path} got another name (a hard link)"
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (
            before[path].st_ino, before[path].st_mtime_ns, before[path].st_size)
    # every attempt is in the ledger, started and finished, although events are recorded in batches
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    try:
        attempts = ledger.attempts(result.run_id)
    finally:
        ledger.close()
    assert len(attempts) == len(inputs)
    assert all(a["started_at"] and a["ended_at"] and a["result"] == "succeeded" for a in attempts)


def test_an_output_that_is_another_name_of_an_input_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in1.txt").write_text("one\n")
    (data / "in2.txt").write_text("two\n")
    elsewhere = tmp_path / "out"
    elsewhere.mkdir()
    os.link(data / "in2.txt", elsewhere / "merged.txt")  # a hard link: one file, two names
    job = write_job(tmp_path, {
        "app": {"command": ["cp", "{input}", "{output}"]},
        "split": {"input": "data", "method": "files"},
        "merge": {"output": "out/merged.txt"},
    })
    with pytest.raises(JobFileError, match=r"\[merge\] output 'out/merged.txt' is the input"):
        validate_job(job)
    (elsewhere / "merged.txt").unlink()
    (elsewhere / "merged.txt").symlink_to(data / "in1.txt")  # a link to an input
    with pytest.raises(JobFileError, match="is the input"):
        validate_job(job)
    (elsewhere / "merged.txt").unlink()
    (elsewhere / "merged.txt").write_text("a file of its own\n")  # same size, another file: fine
    validate_job(job)


def test_an_input_folder_is_listed_as_before(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for name in ("in10.txt", "in2.txt", "in1.txt"):
        (data / name).write_text(name)
    (tmp_path / "outside.txt").write_text("outside")
    (data / "in3.txt").symlink_to(tmp_path / "outside.txt")  # a link to a file: an input
    (data / "gone.txt").symlink_to(tmp_path / "missing.txt")  # a dangling link: not one
    (data / "folder-link").symlink_to(data / "sub", target_is_directory=True)  # not one
    job = write_job(tmp_path, {
        "app": {"command": ["cp", "{input}", "{output}"]},
        "split": {"input": "data", "method": "files"},
        "merge": {"output": "result.txt"},
    })
    names = [p.name for p in resolve_inputs(load_spec(job))]
    assert names == ["in1.txt", "in2.txt", "in3.txt", "in10.txt"]
    os.mkfifo(data / "pipe")
    with pytest.raises(JobFileError, match=r"pipe.*is not a regular file"):
        resolve_inputs(load_spec(job))


@pytest.mark.parametrize("key", ["", "run", "/run/a", "run/", "run//a", "run/./a", "run/../a",
                                 "../run/a", "run/a/..", "./run/a"])
def test_the_local_store_refuses_a_key_that_is_not_a_plain_relative_path(
        tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ValueError, match="key"):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="key"):
        store.local_path(key)
    assert not any((tmp_path / "store").iterdir())


def test_events_arriving_while_the_client_gathers_are_all_handed_over() -> None:
    backend = LocalBackend("process")
    sent = [AttemptEvent(f"task-{i}", 1, "finished", 0.0, "local-1", result="succeeded", final=True)
            for i in range(200)]

    def burst() -> None:
        for event in sent:
            backend._out.put(event)
            if len(sent) % 7 == 0:
                time.sleep(0)

    threading.Thread(target=burst).start()
    got: list[AttemptEvent] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        got += backend.events(0.5)
    assert got == sent  # none lost, none twice, in order
    assert backend.events(0) == []
    with pytest.raises(queue.Empty):
        backend._out.get(timeout=0)


def test_every_command_loaded_on_demand_is_named_where_the_cli_looks_for_it() -> None:
    import click

    import shardrun.cli.main
    import shardrun.cli.tools  # noqa: F401  (registers its commands as it is imported)
    from shardrun.cli.app import _LAZY, cli

    lazy_modules = {module for module, _ in _LAZY.values()}
    names = cli.list_commands(click.Context(cli))  # loads every lazy module
    on_demand = {n for n in names if (cmd := cli.commands[n]).callback is not None
                 and cmd.callback.__module__ in lazy_modules}
    assert on_demand == set(_LAZY), "a command of a lazily loaded module is missing from _LAZY"
