"""A container pool's images, pulled once by each node as it starts, the way a Batch node does it.

When a pool's `containerConfiguration` names `containerImageNames`, every node logs in to the
pool's `containerRegistries` and pulls those images before it becomes idle (with
`--container-runtime podman`). A failure leaves the node `unusable`, with the error in its
`errors`, so no task is started there. The emulated nodes share this machine's image store, so an
image already there (a locally built `localhost/app:1`, or one an earlier node pulled) is not
pulled again; the login still happens, so bad credentials still fail.

Secrets: a registry password goes to `podman login --password-stdin`, never onto a command line,
and the credentials live in an auth file (0600, in a 0700 folder of the node's own directory) only
while the node pulls; it is deleted right after. Messages are cut short and never hold a password.

A registry named with `identityReference` (one of the pool's managed identities) gets no login:
the emulator has no Entra ID to issue the registry token, so the images are pulled anonymously.

Registries on loopback (127.0.0.0/8, localhost, ::1) speak plain HTTP here, so `--tls-verify=false`
is passed for them, and only for them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("shardrun.emulator")

PULL_TIMEOUT = 600.0  # seconds for one login or pull
DEFAULT_REGISTRY = "docker.io"
ERROR_CODE = "ContainerImagePullFailed"
_MESSAGE_LIMIT = 500

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


@dataclass
class PrefetchError(Exception):
    """Why a node could not get its images: the BatchNodeError it shows."""

    message: str
    details: list[tuple[str, str]]

    def node_error(self) -> dict[str, Any]:
        return {
            "code": ERROR_CODE,
            "message": self.message,
            "errorDetails": [{"name": k, "value": v} for k, v in self.details],
        }


def needs_prefetch(pool: dict[str, Any]) -> bool:
    config = pool.get("virtualMachineConfiguration", {}).get("containerConfiguration") or {}
    return bool(config.get("containerImageNames"))


def image_registry(image: str) -> str:
    """The registry of an image reference: 'myacr.azurecr.io/app:1' -> 'myacr.azurecr.io',
    '127.0.0.1:5000/app:1' -> '127.0.0.1:5000', 'ubuntu:22.04' -> 'docker.io' (as `docker pull`)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first
    return DEFAULT_REGISTRY


def server_host(server: str | None) -> str:
    """A registryServer ('myacr.azurecr.io', 'http://127.0.0.1:5000', ...) as a bare host[:port]."""
    if not server:
        return DEFAULT_REGISTRY
    return server.split("://", 1)[-1].rstrip("/").split("/", 1)[0]


def is_loopback(host: str) -> bool:
    """'127.0.0.1:5000', 'localhost', '[::1]:5000' -> True; a public name or address -> False."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _tls(host: str) -> list[str]:
    return ["--tls-verify=false"] if is_loopback(host) else []


def _short(text: bytes, secrets: list[str]) -> str:
    message = text.decode("utf-8", "replace").strip().splitlines()
    out = message[-1] if message else "no output"
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out[:_MESSAGE_LIMIT]


def _present(run: Runner, podman_args: tuple[str, ...], image: str) -> bool:
    try:
        proc = run(
            ["podman", *podman_args, "image", "exists", image],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PULL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def prefetch(
    container_config: dict[str, Any],
    node_root: Path,
    podman_args: tuple[str, ...],
    run: Runner | None = None,
) -> None:
    """Log in to the pool's registries and pull its images; raise PrefetchError on any failure."""
    run = run or subprocess.run
    images: list[str] = list(container_config.get("containerImageNames") or [])
    registries: list[dict[str, Any]] = list(container_config.get("containerRegistries") or [])
    secrets = [r.get("password", "") for r in registries]
    private = node_root / ".batch-agent"
    shutil.rmtree(private, ignore_errors=True)
    private.mkdir(mode=0o700, parents=True)
    auth = private / "auth.json"
    fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("{}")
    try:
        for registry in registries:
            host = server_host(registry.get("registryServer"))
            if "identityReference" in registry:
                # A node gets a registry token for its identity from Entra ID; there is none to get
                # here, so the pull goes without credentials and a registry that needs them refuses.
                continue
            argv = ["podman", *podman_args, "login", "--authfile", str(auth), *_tls(host)]
            argv += ["--username", registry.get("username", ""), "--password-stdin", host]
            try:
                proc = run(
                    argv,
                    input=registry.get("password", "").encode(),
                    capture_output=True,
                    timeout=PULL_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PrefetchError(
                    "The node could not log in to a container registry.",
                    [("ContainerRegistry", host), ("Message", type(exc).__name__)],
                ) from None
            if proc.returncode != 0:
                raise PrefetchError(
                    "The node could not log in to a container registry.",
                    [("ContainerRegistry", host), ("Message", _short(proc.stderr, secrets))],
                )
        for image in images:
            if _present(run, podman_args, image):
                continue  # the nodes share this machine's image store: already there is pulled
            host = image_registry(image)
            argv = ["podman", *podman_args, "pull", "--quiet", "--authfile", str(auth), *_tls(host), image]
            try:
                proc = run(
                    argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PULL_TIMEOUT, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PrefetchError(
                    "A container image of the pool could not be pulled.",
                    [("ContainerImage", image), ("Message", type(exc).__name__)],
                ) from None
            if proc.returncode != 0:
                raise PrefetchError(
                    "A container image of the pool could not be pulled.",
                    [("ContainerImage", image), ("Message", _short(proc.stderr, secrets))],
                )
            log.debug("node %s pulled %s", node_root.name, image)
    finally:
        shutil.rmtree(private, ignore_errors=True)  # the credentials do not outlive the pull
