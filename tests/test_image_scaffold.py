"""`shardrun init --app`: the wrapper's quoting, and files that build and run with no hand edits."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.images.engine import Engine
from shardrun.images.scaffold import shell_word

from .fixtures.containers import need

HOSTILE = ["two words", "it's", 'say "hi"', "$(touch pwned)", "`touch pwned`", "-dash", "back\\slash",
           "café", "*", ""]

# An app in the classic shape: app -i INPUT -o OUTPUT -c CONFIG (busybox sh, getopts).
WORDCOUNT = """#!/bin/sh
set -eu
while getopts i:o:c: opt; do
  case "$opt" in i) in="$OPTARG" ;; o) out="$OPTARG" ;; c) cfg="$OPTARG" ;; *) exit 2 ;; esac
done
printf '%s %s\\n' "$(cat "$cfg")" "$(wc -w < "$in" | tr -d ' ')" > "$out"
"""


def test_shell_words_survive_a_real_shell(tmp_path: Path) -> None:
    need("busybox")
    template = ["{input}", "--in={input}", "{output}.tmp", *HOSTILE]
    script = "printf '%s\\n' " + " ".join(shell_word(a) for a in template) + "\n"
    weird = "in put 'q' $(touch pwned).txt"
    proc = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True, check=True,
                          cwd=tmp_path, env={"INPUT_PATH": weird, "OUTPUT_PATH": "o u t"}, timeout=30)
    assert proc.stdout.split("\n")[:-1] == [weird, f"--in={weird}", "o u t.tmp", *HOSTILE]
    assert not (tmp_path / "pwned").exists()


def _scaffold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    folder = tmp_path / "my app"  # a space in the build context too
    folder.mkdir()
    name = f"wc-{secrets.token_hex(3)}"
    app = folder / f"{name}.sh"
    app.write_text(WORDCOUNT)
    app.chmod(0o755)
    (folder / "words file.txt").write_text("a b c\nd e\nf\ng h i j\n")
    (folder / "prefix.txt").write_text("words:")
    monkeypatch.chdir(folder)
    code = main(["init", "--app", app.name, "--input", "words file.txt", "--config", "prefix.txt",
                 "--per-task", "1", "job.toml"])
    assert code == 0
    return folder, name


def test_init_app_builds_and_runs_with_no_hand_edits(tmp_path: Path, podman: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder, name = _scaffold(tmp_path, monkeypatch)
    wrapper = (folder / "run-task.sh").read_text()
    assert "set -euo pipefail" in wrapper
    assert f'exec /app/{name}.sh -i "${{INPUT_PATH}}" -o "${{OUTPUT_PATH}}" -c "${{CONFIG_PATH}}"' \
        in wrapper
    image = f"localhost/{name}-sh"  # the whole file name: `app` and `app.sh` never collide
    try:
        assert main(["image", "build", "-j", "job.toml", "-q"]) == 0
        assert podman.exists(f"{image}:0.1.0") and podman.exists(f"{image}:latest")
        assert main(["run", "job.toml"]) == 0
        assert (folder / "result.txt").read_text() == "words: 3\nwords: 2\nwords: 1\nwords: 4\n"
    finally:
        podman.call("rmi", "-f", f"{image}:0.1.0", f"{image}:latest")


def test_init_app_on_a_base_imported_from_a_root_filesystem(tmp_path: Path, podman: Engine,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """No registry: the base is a root filesystem folder (here busybox; docs/containers.md makes a
    Debian one with Python the same way), imported by `init --app --base-rootfs`."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copyfile(Path(busybox).resolve(), rootfs / "bin" / "busybox")
    (rootfs / "bin" / "busybox").chmod(0o755)
    for tool in ("sh", "cat", "wc", "tr", "printf"):
        (rootfs / "bin" / tool).symlink_to("busybox")
    folder = tmp_path / "job"
    folder.mkdir()
    name = f"wc-{secrets.token_hex(3)}"
    (folder / name).write_text(WORDCOUNT)
    (folder / name).chmod(0o755)
    (folder / "words.txt").write_text("a b c\nd e\n")
    (folder / "prefix.txt").write_text("words:")
    monkeypatch.chdir(folder)
    try:
        assert main(["init", "--app", name, "--input", "words.txt", "--config", "prefix.txt",
                     "--per-task", "1", "--base-rootfs", str(rootfs), "job.toml"]) == 0
        assert podman.exists(f"localhost/{name}-base:0.1.0")
        assert f"FROM localhost/{name}-base:0.1.0" in (folder / "Dockerfile").read_text()
        assert (folder / "run-task.sh").read_text().startswith("#!/bin/sh")  # no bash in the rootfs
        assert main(["image", "build", "-j", "job.toml", "-q"]) == 0
        assert main(["run", "job.toml"]) == 0
        assert (folder / "result.txt").read_text() == "words: 3\nwords: 2\n"
    finally:
        podman.call("rmi", "-f", f"localhost/{name}:0.1.0", f"localhost/{name}:latest",
                    f"localhost/{name}-base:0.1.0")


def test_wrapper_refuses_to_run_without_the_contract(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    need("busybox")
    folder, _ = _scaffold(tmp_path, monkeypatch)
    proc = subprocess.run(["busybox", "sh", str(folder / "run-task.sh")], capture_output=True,
                          text=True, env={"OUTPUT_PATH": "x"}, timeout=30, check=False)
    assert proc.returncode != 0
    assert "INPUT_PATH is not set" in proc.stderr


def test_init_app_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capfd: pytest.CaptureFixture[str]) -> None:
    need("busybox")
    folder, name = _scaffold(tmp_path, monkeypatch)
    assert main(["init", "--app", f"{name}.sh", "job.toml"]) == 2  # would overwrite
    assert "already exist" in capfd.readouterr().err
    assert main(["init", "--app", f"{name}.sh", "--force", "job.toml"]) == 0
    plain = folder / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    assert main(["init", "--app", "plain.sh", "--force", "job.toml"]) == 2
    assert "not executable" in capfd.readouterr().err
    outside = tmp_path / "elsewhere.sh"
    shutil.copy(folder / f"{name}.sh", outside)
    assert main(["init", "--app", str(outside), "--force", "job.toml"]) == 2
    assert "must be inside" in capfd.readouterr().err
    assert main(["init", "--app", f"{name}.sh", "--args", "-x {nope}", "--force", "job.toml"]) == 2
    assert "unknown placeholder {nope}" in capfd.readouterr().err
