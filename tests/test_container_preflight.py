"""Container preflight: a clear error and no run at all for what would fail later."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

import shardrun
from shardrun.cli import main
from shardrun.core.errors import JobFileError
from shardrun.images.engine import Engine, ImageError, Registry, RuntimeMissing, explain

from .helpers import write_job


def job(tmp_path: Path, app: dict[str, object], run: dict[str, object] | None = None,
        **sections: dict[str, object]) -> Path:
    (tmp_path / "in.txt").write_text("x\n")
    return write_job(tmp_path, {"app": app, "split": {"input": "in.txt"},
                                "merge": {"output": "out.txt"}, "run": run or {}, **sections})


def test_missing_local_image(tmp_path: Path, podman: Engine, shardrun_home: Path) -> None:
    missing = f"localhost/shardrun-missing-{secrets.token_hex(4)}:1"
    with pytest.raises(ImageError, match=f"image {missing} is not present locally"):
        shardrun.run_job(job(tmp_path, {"image": missing}))
    assert shardrun.list_runs(home=shardrun_home) == []


def test_runtime_not_installed(tmp_path: Path, shardrun_home: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capfd: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    path = job(tmp_path, {"image": "localhost/app:1"}, {"runtime": "podman"})
    with pytest.raises(RuntimeMissing, match="'podman' is not installed"):
        shardrun.run_job(path)
    auto = job(tmp_path, {"image": "localhost/app:1"})
    assert main(["run", str(auto)]) == 2
    assert "no container runtime found" in capfd.readouterr().err
    assert shardrun.list_runs(home=shardrun_home) == []


def test_missing_dockerfile(tmp_path: Path, shardrun_home: Path,
                            capfd: pytest.CaptureFixture[str]) -> None:
    path = job(tmp_path, {}, image={"name": "localhost/app", "version": "1"})
    with pytest.raises(JobFileError, match=r"\[image\]: no Dockerfile or Containerfile in"):
        shardrun.run_job(path)
    assert main(["image", "build", "-j", str(path)]) == 2
    named = job(tmp_path, {}, image={"name": "localhost/app", "version": "1", "file": "Nope"})
    assert main(["validate", str(named)]) == 2
    assert "[image] file: 'Nope' does not exist" in capfd.readouterr().err
    assert shardrun.list_runs(home=shardrun_home) == []


def test_container_runtime_without_an_image(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="runtime 'podman' needs an image"):
        shardrun.run_job(job(tmp_path, {"command": ["true"]}, {"runtime": "podman"}))


def test_no_command_is_fine_with_an_image_but_not_without(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match=r"\[app\] command is required with the process runtime"):
        shardrun.run_job(job(tmp_path, {}))


def test_docker_client_without_an_engine_is_a_clear_error(tmp_path: Path, shardrun_home: Path) -> None:
    """The docker code path for real where only the docker client exists (no engine), as here."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    if subprocess.run([docker, "info"], capture_output=True, timeout=60, check=False).returncode == 0:
        pytest.skip("a docker engine runs here")
    path = job(tmp_path, {"image": "localhost/app:1"}, {"runtime": "docker"})
    with pytest.raises(ImageError, match="docker cannot look up images"):
        shardrun.run_job(path)
    assert shardrun.list_runs(home=shardrun_home) == []


def test_docker_and_podman_differ_only_in_flags(tmp_path: Path) -> None:
    docker, podman = Engine.__new__(Engine), Engine.__new__(Engine)
    docker.name, docker.path = "docker", "/usr/bin/docker"
    podman.name, podman.path = "podman", "/usr/bin/podman"
    assert docker.argv("push", "-q", "r/a:1", auth=tmp_path) == [
        "/usr/bin/docker", "--config", str(tmp_path), "push", "-q", "r/a:1"]
    assert podman.argv("push", "-q", "r/a:1", auth=tmp_path) == [
        "/usr/bin/podman", "push", "--authfile", str(tmp_path / "auth.json"), "-q", "r/a:1"]
    plain = Registry("127.0.0.1:5000", tls_verify=False)
    assert podman.tls(plain) == ["--tls-verify=false"] and docker.tls(plain) == []


@pytest.mark.parametrize(("stderr", "reason"), [
    # The port holds "401": a missing image must not read as a credentials problem (a CI failure).
    ("Error: initializing source docker://127.0.0.1:54013/app:v: reading manifest v in "
     "127.0.0.1:54013/app: manifest unknown: manifest unknown", "no such image in the registry"),
    ("Error: reading manifest 1 in 127.0.0.1:40401/app: name unknown", "no such image in the registry"),
    ("Error: authenticating creds for 127.0.0.1:5000: unauthorized: authentication required",
     "the registry rejected the credentials"),
    ("Error: pinging registry: received unexpected HTTP status: 401 Unauthorized",
     "the registry rejected the credentials"),
    ("Error: GET https://r.example/v2/app/manifests/1: 404 page", "no such image in the registry"),
    ("Error: pinging 127.0.0.1:4013: dial tcp 127.0.0.1:4013: connect: connection refused",
     "the registry is unreachable"),
    # Temporary folders are numbered: pytest's 401st or 404th session must not change the reading.
    ("Error: reading /tmp/pytest-of-root/pytest-401/test_x0/auth.json: dial tcp 127.0.0.1:4013: "
     "connect: connection refused", "the registry is unreachable"),
    ("Error: logging into 127.0.0.1:5000 with /tmp/pytest-404/auth.json: invalid username/password",
     "the registry rejected the credentials"),
    ("Error: copying /tmp/401/404/x: disk full", "Error: copying /tmp/401/404/x: disk full"),
    ("Error: GET http://127.0.0.1:5000/v2/: 401 (Unauthorised)", "the registry rejected the credentials"),
    ("Error: HTTP status 404: page not there", "no such image in the registry"),
])
def test_a_registry_error_reads_as_its_cause(stderr: str, reason: str) -> None:
    assert explain(stderr).startswith(reason)
