"""Build -> push (htpasswd auth) -> delete the local copy -> run a job that pulls -> check outputs.

Against Debian's docker-registry on loopback, the stand-in for Azure Container Registry. Also: bad
credentials, an unreachable registry, a missing image, and the password never on a command line,
in an error, in a log or in the ledger.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import shardrun
from shardrun.cli import main
from shardrun.images.engine import Engine

from .fixtures.containers import LocalRegistry, busybox_context
from .helpers import closed_port, write_job

PW_VAR = "SHARDRUN_TEST_REGISTRY_PW"


@pytest.fixture
def repo(podman: Engine) -> Iterator[str]:
    """A repository name of this test only; its local images are removed afterwards."""
    name = f"shardrun-e2e-{secrets.token_hex(4)}"
    yield name
    listed = podman.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    mine = [ref for ref in listed if f"/{name}:" in ref]
    if mine:
        podman.call("rmi", "-f", *mine)


def image_job(tmp_path: Path, registry: LocalRegistry, repo: str, tag: str = "1.0",
              run_image: str | None = None) -> Path:
    busybox_context(tmp_path)
    (tmp_path / "big.txt").write_text("alpha\nbeta\ngamma\n")
    return write_job(tmp_path, {
        "app": {"image": run_image or f"{registry.host}/{repo}:{tag}"},
        "image": {"name": f"localhost/{repo}", "version": "1.0", "registry": registry.host,
                  "username": registry.username, "password_secret": PW_VAR, "tls_verify": False},
        "split": {"input": "big.txt", "per_task": 1},
        "merge": {"output": "result.txt"},
        "run": {"concurrency": 2, "container_options": ["--network", "none"]},
    })


def registry_tags(registry: LocalRegistry, repo: str) -> list[str]:
    """The registry's own answer, through its HTTP API (not through shardrun or podman)."""
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    request = urllib.request.Request(f"http://{registry.host}/v2/{repo}/tags/list",
                                     headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        return sorted(json.load(response)["tags"])


def argv_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `podman` first on PATH that records every command line (what `ps` shows), then runs
    the real one."""
    real = shutil.which("podman")
    assert real is not None
    folder = tmp_path / "spy"
    folder.mkdir()
    log = folder / "argv.log"
    (folder / "podman").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec {real} "$@"\n')
    (folder / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return log


def test_build_push_delete_pull_run(tmp_path: Path, podman: Engine, registry: LocalRegistry,
                                    repo: str, shardrun_home: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(PW_VAR, registry.password)
    argv_log = argv_spy(tmp_path, monkeypatch)
    job = image_job(tmp_path, registry, repo)

    assert main(["image", "build", "-j", str(job), "-q"]) == 0
    assert podman.exists(f"localhost/{repo}:1.0") and podman.exists(f"localhost/{repo}:latest")

    assert main(["image", "push", "-j", str(job)]) == 0
    assert registry_tags(registry, repo) == ["1.0", "latest"]

    for ref in (f"localhost/{repo}:1.0", f"localhost/{repo}:latest", f"{registry.host}/{repo}:1.0",
                f"{registry.host}/{repo}:latest"):
        podman.remove(ref)
    assert not podman.exists(f"{registry.host}/{repo}:1.0")

    assert main(["run", str(job)]) == 0  # the preflight pulls from the registry, with the login
    assert (tmp_path / "result.txt").read_text() == "ALPHA\nBETA\nGAMMA\n"
    assert podman.exists(f"{registry.host}/{repo}:1.0")

    commands = argv_log.read_text()
    assert "login" in commands and "--password-stdin" in commands and "run --rm" in commands
    secret = registry.password
    assert secret not in commands  # never on a command line
    out, err = capfd.readouterr()
    assert secret not in out + err
    for path in shardrun_home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path  # ledger, logs, outputs


def test_push_reads_the_password_from_stdin(tmp_path: Path, podman: Engine, registry: LocalRegistry,
                                            repo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PW_VAR, raising=False)
    job = image_job(tmp_path, registry, repo)
    assert main(["image", "build", "-j", str(job), "-q"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(registry.password + "\n"))
    code = main(["image", "push", registry.host, "-j", str(job), "--username", registry.username,
                 "--no-tls-verify", "--password-stdin"])
    assert code == 0
    assert registry_tags(registry, repo) == ["1.0", "latest"]


def test_bad_credentials_stop_push_and_run_before_anything_starts(
        tmp_path: Path, podman: Engine, registry: LocalRegistry, repo: str, shardrun_home: Path,
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    monkeypatch.setenv(PW_VAR, wrong)
    job = image_job(tmp_path, registry, repo)
    assert main(["image", "build", "-j", str(job), "-q"]) == 0
    assert main(["image", "push", "-j", str(job)]) == 3
    assert main(["run", str(job)]) == 3
    assert main(["validate", str(job)]) == 3
    _, err = capfd.readouterr()
    assert "rejected the credentials" in err
    assert wrong not in err
    assert shardrun.list_runs(home=shardrun_home) == []  # no half-started run


def test_unreachable_registry_is_a_clear_error(tmp_path: Path, podman: Engine,
                                               registry: LocalRegistry, repo: str, shardrun_home: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(PW_VAR, registry.password)
    with closed_port() as port:  # nothing listens there
        closed = f"127.0.0.1:{port}"
        job = image_job(tmp_path, registry, repo, run_image=f"{closed}/{repo}:1.0")
        assert main(["run", str(job)]) == 3
    _, err = capfd.readouterr()
    assert "unreachable" in err and closed in err
    assert shardrun.list_runs(home=shardrun_home) == []


def test_image_missing_from_the_registry(tmp_path: Path, podman: Engine, registry: LocalRegistry,
                                         repo: str, shardrun_home: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(PW_VAR, registry.password)
    job = image_job(tmp_path, registry, repo, tag="never-pushed")
    assert main(["validate", str(job)]) == 0  # validate logs in but does not pull
    assert main(["run", str(job)]) == 3
    _, err = capfd.readouterr()
    assert "no such image in the registry" in err
    assert shardrun.list_runs(home=shardrun_home) == []
