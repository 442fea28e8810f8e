"""Output names Batch's file patterns would read as more than a name: `*`, `?` and `[` are
wildcards there and `$NAME` is expanded, so an output named `a[1].out` would be uploaded as a folder
of matches (or not at all). On the node the output gets a name without them; its blob keeps the name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.emulator import Emulator
from shardrun.providers.azure.batch_tasks import node_file_name

from .fixtures.azurite import Azurite
from .helpers import PY, write_job
from .test_batch_backend import emulator, secrets_env  # noqa: F401  (fixtures)

NAMES = ["a[1].txt", "b*.txt", "c?.txt", "d$HOME.txt", "plain.txt"]


def test_a_node_file_name_holds_no_pattern_character() -> None:
    assert node_file_name("a[1]*?$x\\.txt") == "a_1]___x_.txt"
    assert node_file_name("plain.out") == "plain.out"


def test_outputs_named_with_pattern_characters_reach_the_merge(
    azurite: Azurite, emulator: Emulator, secrets_env: None,  # noqa: F811
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in NAMES:
        (inputs / name).write_text(name.upper())
    app = [PY, "-c", "import sys; open(sys.argv[2], 'w').write(open(sys.argv[1]).read() + '!')",
           "{input}", "{output}"]
    job = write_job(tmp_path, {
        "app": {"command": app, "output_name": "{stem}.out"},
        "split": {"input": "in", "method": "files"},
        "merge": {"method": "folder", "output": "merged"},
        "run": {"backend": "azure-batch", "storage": "blob", "retries": 0, "timeout": "2m"},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": emulator.url, "account_name": emulator.config.account_name,
                  "auth": "shared_key", "dedicated_nodes": 1, "task_slots_per_node": 4,
                  "poll_interval": 0.3},
    })
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    merged = {p.name: p.read_text() for p in (tmp_path / "merged").iterdir() if p.is_file()}
    expected = {name.rsplit(".", 1)[0] + ".out": name.upper() + "!" for name in NAMES}
    assert {k: v for k, v in merged.items() if k in expected} == expected, json.dumps(merged)
