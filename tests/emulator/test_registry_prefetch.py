"""Private registries as the service uses them: a container pool's nodes log in and pull the pool's
images once, at start, before they become idle; a failed pull makes the node unusable. The password
never reaches a command line, a log or a response, and plain HTTP is used for loopback only."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.rest import HttpRequest

from shardrun.emulator import prefetch as prefetch_module
from shardrun.emulator.prefetch import PrefetchError, image_registry, is_loopback, prefetch
from shardrun.emulator.spec import SPEC_FILE
from shardrun.emulator.state import SECRET_PROPERTIES
from shardrun.images.engine import Engine

from ..fixtures.containers import LocalRegistry
from .conftest import IMAGE, client_for, error_of, make_job, start_emulator, wait_for, wait_task_done

# -- without podman: the commands, the auth file and the TLS rule -----------------------------------


class FakePodman:
    """Records each podman call; `fail` makes the call whose subcommand it names fail."""

    def __init__(self, fail: str | None = None, present: tuple[str, ...] = ()) -> None:
        self.present = present  # images already in the local store
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.fail = fail
        self.auth_modes: list[tuple[int, int]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        if "exists" in argv:
            present = argv[-1] in self.present
            return subprocess.CompletedProcess(argv, 0 if present else 1, b"", b"")
        self.calls.append((argv, kwargs.get("input")))
        auth = Path(argv[argv.index("--authfile") + 1])
        self.auth_modes.append((stat.S_IMODE(auth.stat().st_mode), stat.S_IMODE(auth.parent.stat().st_mode)))
        sub = next(a for a in argv if a in ("login", "pull"))
        code = 1 if sub == self.fail else 0
        return subprocess.CompletedProcess(argv, code, b"", b"Error: it went wrong for pw-s3cret\n")


def config(*images: str, server: str = "127.0.0.1:5000") -> dict[str, Any]:
    return {
        "type": "dockerCompatible",
        "containerImageNames": list(images),
        "containerRegistries": [{"registryServer": server, "username": "u", "password": "pw-s3cret"}],
    }


def test_login_and_pull_commands(tmp_path: Path) -> None:
    fake = FakePodman()
    prefetch(config("127.0.0.1:5000/app:1", "docker.io/library/x:1"), tmp_path, ("--runtime", "runc"), fake)
    (login, password), (pull_local, _), (pull_hub, _) = fake.calls
    assert login[:4] == ["podman", "--runtime", "runc", "login"] and "--password-stdin" in login
    assert password == b"pw-s3cret" and all("pw-s3cret" not in arg for arg, _ in fake.calls for arg in arg)
    assert "--tls-verify=false" in login and login[-1] == "127.0.0.1:5000"
    assert pull_local[3] == "pull" and "--tls-verify=false" in pull_local and pull_local[-1].endswith("app:1")
    assert "--tls-verify=false" not in pull_hub  # TLS is only ever turned off for loopback
    assert set(fake.auth_modes) == {(0o600, 0o700)}  # owner-only while it exists...
    assert not (tmp_path / ".batch-agent").exists()  # ...and gone after the pull


def test_a_registry_named_by_identity_gets_no_login_and_the_pull_goes_without_credentials(
    tmp_path: Path,
) -> None:
    fake = FakePodman()
    settings = config("127.0.0.1:5000/app:1")
    settings["containerRegistries"] = [
        {"registryServer": "127.0.0.1:5000", "identityReference": {"resourceId": "/subscriptions/s/mi"}}
    ]
    prefetch(settings, tmp_path, (), fake)
    assert [argv[1] for argv, _ in fake.calls] == ["pull"]


def test_an_image_already_in_the_local_store_is_not_pulled_but_the_login_still_happens(
    tmp_path: Path,
) -> None:
    fake = FakePodman(present=("localhost/app:1",))
    prefetch(config("localhost/app:1", "127.0.0.1:5000/other:1"), tmp_path, (), fake)
    assert [argv[1] for argv, _ in fake.calls] == ["login", "pull"]
    assert fake.calls[1][0][-1] == "127.0.0.1:5000/other:1"


def test_remote_registries_keep_tls_and_failures_are_node_errors(tmp_path: Path) -> None:
    fake = FakePodman(fail="login")
    with pytest.raises(PrefetchError) as info:
        prefetch(config("myacr.azurecr.io/app:1", server="https://myacr.azurecr.io"), tmp_path, (), fake)
    (login, _), *_ = fake.calls
    assert "--tls-verify=false" not in login and login[-1] == "myacr.azurecr.io"
    error = info.value.node_error()
    assert error["code"] == "ContainerImagePullFailed"
    assert {"name": "ContainerRegistry", "value": "myacr.azurecr.io"} in error["errorDetails"]
    assert "pw-s3cret" not in str(error)  # a password echoed by a tool is masked
    fake = FakePodman(fail="pull")
    with pytest.raises(PrefetchError) as info:
        prefetch(config("127.0.0.1:5000/app:1"), tmp_path, (), fake)
    assert {"name": "ContainerImage", "value": "127.0.0.1:5000/app:1"} in info.value.node_error()[
        "errorDetails"
    ]
    assert not (tmp_path / ".batch-agent").exists()


def test_loopback_rule_and_registry_of_an_image() -> None:
    for host in ("127.0.0.1:5000", "127.8.9.10", "localhost:5000", "localhost", "[::1]:5000", "::1"):
        assert is_loopback(host), host
    for host in (
        "myacr.azurecr.io",
        "10.0.0.1:5000",
        "localhost.example.com",
        "127.0.0.1.nip.io",
        "[::2]:5000",
    ):
        assert not is_loopback(host), host
    assert image_registry("ubuntu:22.04") == "docker.io"
    assert image_registry("team/app:1") == "docker.io"
    assert image_registry("localhost:5000/app") == "localhost:5000"
    assert image_registry("myacr.azurecr.io/team/app:1") == "myacr.azurecr.io"


def test_secrets_are_never_sent_back(client: BatchClient) -> None:
    """A registry password is accepted and never appears in a response, as x-ms-secret requires."""
    spec = json.loads(SPEC_FILE.read_text())
    secret_names = {
        name
        for definition in spec["definitions"].values()
        for name, prop in (definition.get("properties") or {}).items()
        if prop.get("x-ms-secret")
    }
    assert secret_names == SECRET_PROPERTIES
    _pool(
        client,
        "p",
        ["127.0.0.1:1/app:1"],
        bm.ContainerRegistryReference(registry_server="127.0.0.1:1", username="u", password="pw-never-back"),
        nodes=0,
    )
    raw = client.send_request(HttpRequest("GET", "/pools/p?api-version=2025-06-01")).text()
    assert "pw-never-back" not in raw and '"username":"u"' in raw
    error = error_of(
        lambda: _pool(
            client,
            "q",
            ["x/y:1"],
            bm.ContainerRegistryReference(
                registry_server="myacr.azurecr.io",
                identity_reference=bm.BatchNodeIdentityReference(resource_id="/subscriptions/x/id"),
            ),
        )
    )
    assert error.error.code == "InvalidPropertyValue"


# -- with podman and a loopback registry --------------------------------------------------------


def _pool(
    client: BatchClient,
    pool_id: str,
    images: list[str],
    registry: bm.ContainerRegistryReference,
    nodes: int = 1,
) -> None:
    containers = bm.BatchContainerConfiguration(
        type="dockerCompatible", container_image_names=images, container_registries=[registry]
    )
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v3",
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=IMAGE,
                node_agent_sku_id="batch.node.ubuntu 22.04",
                container_configuration=containers,
            ),
            target_dedicated_nodes=nodes,
        )
    )


def _node(client: BatchClient, pool_id: str, *states: str) -> bm.BatchNode:
    def check() -> bm.BatchNode | None:
        nodes = list(client.list_nodes(pool_id))
        return nodes[0] if nodes and nodes[0].state in states else None

    found: bm.BatchNode = wait_for(check, timeout=120, what=f"a node of {pool_id} in {states}")
    return found


@pytest.fixture
def pushed(podman: Engine, test_image: str, registry: LocalRegistry, tmp_path: Path) -> Iterator[str]:
    """The test image in the loopback registry, and not in local storage under that name."""
    ref = f"{registry.host}/emu-{secrets.token_hex(4)}:1"
    auth = tmp_path / "push-auth.json"
    subprocess.run(
        [
            "podman",
            "login",
            "--authfile",
            str(auth),
            "--tls-verify=false",
            "--username",
            registry.username,
            "--password-stdin",
            registry.host,
        ],
        input=registry.password.encode(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    podman.run("tag", test_image, ref)
    subprocess.run(
        ["podman", "push", "--authfile", str(auth), "--tls-verify=false", ref],
        check=True,
        capture_output=True,
        timeout=300,
    )
    podman.call("rmi", ref)  # untag: the node has to pull it
    assert not podman.exists(ref)
    yield ref
    podman.call("rmi", "-f", ref)


def test_nodes_pull_the_pools_images_with_its_credentials(
    pushed: str,
    registry: LocalRegistry,
    podman: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[list[str]] = []
    real = subprocess.run

    def spy(argv: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append([str(a) for a in argv])
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(prefetch_module.subprocess, "run", spy)
    caplog.set_level(logging.DEBUG, logger="shardrun.emulator")
    emu = start_emulator(container_runtime="podman")
    try:
        client = client_for(emu)
        good = bm.ContainerRegistryReference(
            registry_server=registry.host, username=registry.username, password=registry.password
        )
        _pool(client, "pool1", [pushed], good)
        node = _node(client, "pool1", "idle", "unusable")
        assert node.state == "idle", node.errors
        assert podman.exists(pushed)
        pulls = [c for c in calls if "pull" in c and pushed in c]
        assert len(pulls) == 1 and "--tls-verify=false" in pulls[0]  # once per node, plain HTTP on loopback
        assert all(registry.password not in arg for call in calls for arg in call)
        assert registry.password not in caplog.text
        assert not (Path(emu.disk_root) / "pool1" / node.id / ".batch-agent").exists()
        make_job(client)
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="t",
                command_line="-c 'echo from the registry image'",
                container_settings=bm.BatchTaskContainerSettings(
                    image_name=pushed, container_run_options="--entrypoint /bin/sh"
                ),
            ),
        )
        task = wait_task_done(client, "job1", "t", timeout=120)
        assert task.execution_info.result == "success", task.execution_info.failure_info
        assert b"".join(client.download_task_file("job1", "t", "stdout.txt")) == b"from the registry image\n"
    finally:
        emu.stop()


def test_a_failed_pull_makes_the_node_unusable(pushed: str, registry: LocalRegistry) -> None:
    emu = start_emulator(container_runtime="podman")
    try:
        client = client_for(emu)
        wrong = bm.ContainerRegistryReference(
            registry_server=registry.host, username=registry.username, password="not-the-password"
        )
        _pool(client, "badlogin", [pushed], wrong)
        right = bm.ContainerRegistryReference(
            registry_server=registry.host, username=registry.username, password=registry.password
        )
        _pool(client, "noimage", [pushed.replace(":1", ":never-pushed")], right)
        node = _node(client, "badlogin", "idle", "unusable")
        assert node.state == "unusable" and node.errors[0].code == "ContainerImagePullFailed"
        details = {d.name: d.value for d in node.errors[0].error_details}
        assert details["ContainerRegistry"] == registry.host and "not-the-password" not in str(node.errors)
        node = _node(client, "noimage", "idle", "unusable")
        assert node.state == "unusable" and node.errors[0].code == "ContainerImagePullFailed"
        assert {d.name: d.value for d in node.errors[0].error_details}["ContainerImage"].endswith(
            ":never-pushed"
        )
        counts = {c.pool_id: c.dedicated.unusable for c in client.list_pool_node_counts()}
        assert counts == {"badlogin": 1, "noimage": 1}
        make_job(client, pool_id="badlogin")
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="t", command_line="", container_settings=bm.BatchTaskContainerSettings(image_name=pushed)
            ),
        )
        assert client.get_task("job1", "t").state == "active"  # nothing starts on an unusable node
    finally:
        emu.stop()


def test_process_runtime_does_not_pull(client: BatchClient) -> None:
    """Without --container-runtime podman there is nothing to pull into: nodes start as before."""
    _pool(
        client,
        "pool1",
        ["127.0.0.1:1/never:1"],
        bm.ContainerRegistryReference(
            registry_server="127.0.0.1:1", username="u", password=os.urandom(4).hex()
        ),
    )
    assert _node(client, "pool1", "idle", "unusable").state == "idle"
