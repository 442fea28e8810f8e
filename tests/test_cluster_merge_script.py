"""The cluster merge's sh script gives the same bytes as the local merger, per method, under the
system's sh (dash here) and busybox's sh with busybox's tools when it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shardrun.core.errors import MergeError
from shardrun.core.merge import BUILTIN
from shardrun.providers.azure.merge_script import MERGE_SCRIPT, OUTPUTS, RESULT

CASES: dict[str, list[list[bytes]]] = {
    "concat": [[b"a\n", b"b", b"", b"c\r\n\n"], [b"\x00\xff bytes", b"\n"]],
    "jsonl": [
        [b'{"a":1}\n\n', b'{"b":2}', b"", b"\n\n[3]\n\n\n4\n", b'"x"\r\n5'],
        [b"\n", b'{"c": "\xc3\xa9"}\n'],
        [b"", b"\n\n", b"1", b"", b"\n2\n\n\n3", b"4\n"],
        [b"", b"\n"],
        [b"\n\n\n"],
    ],
    "csv": [
        [b"h,k\n1,2\n", b"h,k\r\n3,4\r\n", b"", b"h,k", b'h,k\n"multi\nline",5\n6,7'],
        [b'"q,h"\n1\n', b'"q,h"\r\n2\n'],
        [b"h", b"h\n1", b"h\n", b"h\n\n2\n"],
    ],
    "json": [
        [b"[1, 2]", b'{"x": 3}\n', b"[]", b" [ ] ", b'\n\t"s"  \n', b"[[]]", b"[\n {\"a\": [1]}\n]\n"],
        [b"7"],
        [b"[]"],
        [b" " * 100 + b"[ 1 ]" + b"\n" * 700],
    ],
}


def _shells() -> list[tuple[str, list[str], dict[str, str]]]:
    out = [("sh", ["/bin/sh"], {})]
    busybox = shutil.which("busybox")
    if busybox:
        # Every tool the script calls comes from busybox: a folder of links to it first on PATH.
        out.append(("busybox", [busybox, "sh"], {"BUSYBOX_TOOLS": busybox}))
    return out


SHELLS = _shells()


def run_script(wd: Path, method: str, outputs: list[bytes], shell: list[str], env: dict[str, str],
               extra: list[str] | None = None,
               names: list[str] | None = None) -> subprocess.CompletedProcess[bytes]:
    folder = wd / OUTPUTS
    for i, data in enumerate(outputs, 1):
        task = folder / f"task-{i:05d}"
        task.mkdir(parents=True)
        (task / (names[i - 1] if names else "out.txt")).write_bytes(data)
    full_env = {"AZ_BATCH_TASK_WORKING_DIR": str(wd), "PATH": os.environ["PATH"]}
    busybox = env.get("BUSYBOX_TOOLS")
    if busybox:
        tools = wd.parent / "bb-tools"
        if not tools.exists():
            tools.mkdir()
            for name in ("cat", "head", "tail", "tr", "wc", "od", "printf", "mkdir", "mv", "rm"):
                (tools / name).symlink_to(busybox)
        full_env["PATH"] = str(tools)
    return subprocess.run([*shell, "-c", MERGE_SCRIPT, "shardrun-merge", method, RESULT,
                           *(extra or [])], env=full_env, capture_output=True, check=False)


@pytest.mark.parametrize("shell_name,shell,env", SHELLS, ids=[s[0] for s in SHELLS])
@pytest.mark.parametrize("method", sorted(CASES))
def test_cluster_script_matches_the_local_merger(tmp_path: Path, method: str, shell_name: str,
                                                 shell: list[str], env: dict[str, str]) -> None:
    for n, outputs in enumerate(CASES[method]):
        local = tmp_path / f"local-{n}"
        local.mkdir()
        paths = []
        for i, data in enumerate(outputs):
            path = local / f"o{i}"
            path.write_bytes(data)
            paths.append(path)
        BUILTIN[method](paths, local / "merged")
        wd = tmp_path / f"wd-{n}"
        wd.mkdir()
        proc = run_script(wd, method, outputs, shell, env)
        assert proc.returncode == 0, proc.stderr.decode()
        assert (wd / RESULT).read_bytes() == (local / "merged").read_bytes(), (method, n)


@pytest.mark.parametrize("shell_name,shell,env", SHELLS, ids=[s[0] for s in SHELLS])
def test_cluster_script_refuses_what_it_cannot_merge(tmp_path: Path, shell_name: str,
                                                     shell: list[str], env: dict[str, str]) -> None:
    (tmp_path / "a").mkdir()
    proc = run_script(tmp_path / "a", "csv", [b"h\n1\n", b"g\n2\n"], shell, env)
    assert proc.returncode == 1
    assert b"header differs" in proc.stderr and not (tmp_path / "a" / RESULT).exists()
    (tmp_path / "b").mkdir()
    proc = run_script(tmp_path / "b", "concat", [], shell, env)
    assert proc.returncode == 1 and b"no stored task outputs" in proc.stderr


def test_local_mergers_refuse_what_the_cluster_would_pass_on(tmp_path: Path) -> None:
    blank = tmp_path / "blank"
    blank.write_bytes(b'{"a":1}\n  \n')
    with pytest.raises(MergeError, match="line 2 is not JSON"):
        BUILTIN["jsonl"]([blank], tmp_path / "r")
    bom = tmp_path / "bom"
    bom.write_bytes(b"\xef\xbb\xbf[1]")
    with pytest.raises(MergeError, match="byte order mark"):
        BUILTIN["json"]([bom], tmp_path / "r")


@pytest.mark.parametrize("shell_name,shell,env", SHELLS, ids=[s[0] for s in SHELLS])
def test_cluster_script_runs_a_merge_command_over_a_folder_in_task_order(
        tmp_path: Path, shell_name: str, shell: list[str], env: dict[str, str]) -> None:
    (tmp_path / "w").mkdir()
    # `cat merge-in/*` in the folder the script makes: the files are named task-00001.txt, ...
    proc = run_script(tmp_path / "w", "command", [b"1\n", b"2\n", b"3\n"], shell, env,
                      extra=["", "/bin/sh", "-c", 'for f in merge-in/*; do echo "${f##*/}"; done; cat merge-in/*'])
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "w" / RESULT).read_bytes() == (
        b"task-00001.txt\ntask-00002.txt\ntask-00003.txt\n1\n2\n3\n")


@pytest.mark.parametrize("shell_name,shell,env", SHELLS, ids=[s[0] for s in SHELLS])
def test_outputs_with_dot_names_are_merged_in_task_order(tmp_path: Path, shell_name: str,
                                                         shell: list[str], env: dict[str, str]) -> None:
    # A shell's `*` skips names that start with a dot; the local merger does not.
    names = [".hidden", "plain.txt", "..two", ".x.txt"]
    outputs = [b"1\n", b"2\n", b"3\n", b"4\n"]
    for method, extra in (("concat", None), ("command", ["", "/bin/sh", "-c", "cat merge-in/*"])):
        wd = tmp_path / method
        wd.mkdir()
        proc = run_script(wd, method, outputs, shell, env, extra=extra, names=names)
        assert proc.returncode == 0, proc.stderr.decode()
        # The command sees task-00001, task-00002.txt, task-00003.two and task-00004.txt.
        assert (wd / RESULT).read_bytes() == b"1\n2\n3\n4\n", method


def test_batch_task_ids_are_numbers_and_dependencies_are_ranges() -> None:
    from shardrun.providers.azure.batch_merge import batch_task_id, dependencies

    assert batch_task_id("task-00042", True) == "42"
    assert batch_task_id("task-00042", False) == "task-00042"  # a job made before numbered ids
    assert batch_task_id("t1", True) == "t1"
    deps = dependencies(["1", "2", "3", "7", "5", "6", "10", "odd", "010"])
    assert [(r.start, r.end) for r in deps.task_id_ranges] == [(1, 3), (5, 7), (10, 10)]
    assert deps.task_ids == ["010", "odd"]  # '010' is no integer id a range would match
    assert len(dependencies(str(i) for i in range(1, 100_001)).task_id_ranges) == 1
