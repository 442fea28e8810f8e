"""A private registry rehearsed end to end: a Python app image built on an offline Debian base,
pushed with `shardrun image push` to the loopback registry (htpasswd), and run by the azure-batch
backend on the emulator's podman nodes, which log in with the pool's registry credentials and pull
it over plain HTTP, as Batch nodes do from Azure Container Registry. The password must appear in no
log, no ledger and no command line (`ps`)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.images.engine import Engine

from .fixtures.azurite import DEV_KEY, Azurite
from .fixtures.containers import LocalRegistry, need
from .fixtures.emulator import start_emulator
from .test_batch_backend import batch_client, batch_job, ledger, left_in

BASE = "localhost/debian-python:stable"
APP = """import sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(args["-i"]) as src, open(args["-o"], "w") as dst:
    dst.write(src.read().upper())
"""


def apt_mirror() -> str | None:
    """The Debian mirror this machine's apt uses (deb822 .sources first, then sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for uri in re.findall(r"(?m)^URIs:\s*(\S+)", path.read_text()):
            if not uri.rstrip("/").endswith("-security"):
                return uri.rstrip("/")
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for match in re.finditer(r"(?m)^deb\s+(?:\[[^]]*\]\s+)?(\S+)", legacy.read_text()):
            if not match.group(1).rstrip("/").endswith("-security"):
                return match.group(1).rstrip("/")
    return None


@pytest.fixture(scope="session")
def debian_python(podman: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """localhost/debian-python:stable: Debian stable with python3, built offline from the apt
    mirror with mmdebstrap (about a minute) and kept in the image store for later sessions."""
    if podman.exists(BASE):
        return BASE
    need("mmdebstrap")
    mirror = apt_mirror()
    if mirror is None:
        pytest.skip("no Debian mirror in this machine's apt sources")
    try:
        with urllib.request.urlopen(f"{mirror}/dists/stable/Release", timeout=15):
            pass
    except OSError as err:
        pytest.skip(f"the Debian mirror {mirror} is unreachable ({err}); cannot build {BASE}")
    folder = tmp_path_factory.mktemp("debian")
    rootfs = folder / "rootfs.tar"
    subprocess.run(["mmdebstrap", "--variant=apt", "--include=python3", "stable", str(rootfs), mirror],
                   check=True, capture_output=True, timeout=1200)
    podman.run("import", str(rootfs), BASE, timeout=600)
    rootfs.unlink()
    return BASE


class CommandLines:
    """Every command line on this machine, sampled until stopped: what `ps` shows anyone. Short-lived
    commands can fall between two samples, so the podman calls are also logged by `podman_calls`."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
            self.seen.update(out.stdout.splitlines())
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def podman_calls(folder: Path, monkeypatch: pytest.MonkeyPatch, real: str) -> Path:
    """Put a `podman` first on PATH that writes each call's arguments, one line per call, to the
    returned log and then runs the real one: every podman command line, however short-lived."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    log = folder / "podman-calls.log"
    shim = bin_dir / "podman"
    # The whole line in one write, appended: calls made at once (two nodes logging in) cannot mix.
    shim.write_text(f"#!/bin/sh\nprintf '%s\\n' \"podman $*\" >> '{log}'\n"
                    f"exec '{real}' \"$@\"\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def app_job(folder: Path, emu: object, azurite: Azurite, registry: LocalRegistry, repo: str,
            image_tag: str = "1.0") -> Path:
    context = folder / "app"
    context.mkdir()
    (context / "upper.py").write_text(APP)
    (context / "Containerfile").write_text(f"FROM {BASE}\nCOPY upper.py /opt/rehearsal/upper.py\n")
    job = batch_job(folder, emu, azurite, lines=40, per_task=4,
                    app=["python3", "/opt/rehearsal/upper.py", "-i", "{input}", "-o", "{output}"],
                    batch={"dedicated_nodes": 2, "task_slots_per_node": 2})
    text = job.read_text().replace("[app]\n", f'[app]\nimage = "{registry.host}/{repo}:{image_tag}"\n')
    text += (f'[image]\nname = "localhost/{repo}"\nversion = "1.0"\ncontext = "app"\n'
             f'registry = "{registry.host}"\nusername = "{registry.username}"\n'
             'password_secret = "REGISTRY_PW"\ntls_verify = false\n')
    job.write_text(text)
    return job


@pytest.fixture
def repo(podman: Engine, registry: LocalRegistry) -> Iterator[str]:
    name = f"shardrun-rehearsal-{secrets.token_hex(4)}"
    yield name
    listed = podman.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    mine = [r for r in listed if f"/{name}:" in r]
    if mine:
        podman.call("rmi", "-f", *mine)


def test_a_python_app_from_a_private_registry_runs_on_batch_nodes_that_pull_it(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, podman: Engine, registry: LocalRegistry,
    debian_python: str, repo: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("REGISTRY_PW", registry.password)
    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
    calls = podman_calls(tmp_path, monkeypatch, podman.path)
    emu = start_emulator(container_runtime="podman")
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        job = app_job(tmp_path, emu, azurite, registry, repo)
        with CommandLines() as ps:
            assert main(["image", "build", "-q", "-j", str(job)]) == 0, capsys.readouterr().err
            assert main(["image", "push", "-j", str(job)]) == 0, capsys.readouterr().err
            # Only the registry has it now under that name: each node must log in and pull it.
            pushed = f"{registry.host}/{repo}"
            for tag in ("1.0", "latest"):
                podman.run("untag", f"{pushed}:{tag}", f"{pushed}:{tag}")
            assert not podman.exists(f"{pushed}:1.0")
            code = main(["run", str(job)])
            said = capsys.readouterr()
            assert code == 0, said.out + said.err
        assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(40))
        assert podman.exists(f"{pushed}:1.0")  # a node pulled it
        run_id = ledger(shardrun_home).runs()[0].run_id
        attempts = ledger(shardrun_home).attempts(run_id)
        assert len(attempts) == 10 and {a["result"] for a in attempts} == {"succeeded"}
        assert left_in(batch_client(emu)) == ([], [])
        secret = registry.password
        assert secret not in said.out + said.err + caplog.text
        assert secret.encode() not in (shardrun_home / "ledger.sqlite").read_bytes()
        assert ps.samples > 1 and not [line for line in ps.seen if secret in line]
        logged = calls.read_text().splitlines()
        logins = [line for line in logged if " login " in line]
        # One login by `image push`, one per node pulling the image; none carries the password.
        assert len(logins) >= 2 and all("--password-stdin" in line for line in logins), logged
        assert not [line for line in logged if secret in line]
    finally:
        emu.stop()


def test_nodes_that_cannot_pull_the_image_stop_the_run_at_once_with_advice(
    azurite: Azurite, tmp_path: Path, podman: Engine, registry: LocalRegistry, repo: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's preflight saw the image but the nodes cannot pull it (on Azure: a registry
    firewall that lets the client in and not the pool's subnet). Here the image was never pushed,
    and the preflight is told it exists."""
    monkeypatch.setattr("shardrun.images.registry_api.image_exists", lambda ref, reg, **kw: True)
    monkeypatch.setenv("REGISTRY_PW", registry.password)
    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
    emu = start_emulator(container_runtime="podman")
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        job = app_job(tmp_path, emu, azurite, registry, repo)
        assert main(["run", str(job)]) == 3
        err = capsys.readouterr().err
        line = next(x for x in err.splitlines() if "could get the app's image" in x)
        assert "ContainerImagePullFailed" in line and f"{registry.host}/{repo}:1.0" in line
        assert "shardrun image push" in line and "password_secret" in line
        assert registry.password not in err
        assert left_in(batch_client(emu)) == ([], [])
    finally:
        emu.stop()
