"""[merge] where: strict values, what the cluster cannot merge, and computes that cannot merge on a
cluster (the local one) refused by validate and run with one line, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shardrun.cli import main

from .helpers import write_job


def job(folder: Path, merge: dict[str, Any], **run: Any) -> Path:
    (folder / "in.txt").write_text("a\nb\n")
    return write_job(folder, {
        "app": {"command": ["cp", "{input}", "{output}"]},
        "split": {"input": "in.txt"},
        "merge": {"output": "out.txt", **merge},
        **({"run": run} if run else {}),
    })


@pytest.mark.parametrize("merge,said", [
    ({"where": "cloud"}, "[merge] where: Input should be 'client' or 'cluster'"),
    ({"where": "cluster", "method": "folder"}, "where = 'cluster' cannot merge with method = 'folder'"),
    ({"where": "cluster", "function": "m:f"}, "where = 'cluster' cannot merge with a Python function"),
    ({"where": "cluster"}, "[merge] where = 'cluster': [run] backend 'local' cannot merge on its nodes"),
])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_refused_with_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              merge: dict[str, Any], said: str, command: str) -> None:
    assert main([command, str(job(tmp_path, merge))]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.txt").exists()


def test_where_client_is_the_default_and_merges_as_before(tmp_path: Path) -> None:
    assert main(["run", "-q", str(job(tmp_path, {}))]) == 0
    assert (tmp_path / "out.txt").read_text() == "a\nb\n"
    assert main(["run", "-q", "--new", str(job(tmp_path, {"where": "client"}))]) == 0
    assert (tmp_path / "out.txt").read_text() == "a\nb\n"
