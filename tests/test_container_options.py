"""Container settings in the job file: the options allow-list, [image], [app] image, runtime 'auto'."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.core.containers import job_runtime, parse_container_options, resolve_runtime
from shardrun.core.errors import JobFileError
from shardrun.core.secrets import SecretError
from shardrun.core.spec import load_spec
from shardrun.images.engine import ImageError, is_loopback, registry_for, registry_host, repository
from shardrun.providers.local.container import container_settings
from shardrun.providers.local.runtime import ContainerSettings

from .helpers import write_job


def job(tmp_path: Path, app: dict[str, object] | None = None, run: dict[str, object] | None = None,
        **sections: dict[str, object]) -> Path:
    (tmp_path / "in.txt").write_text("x\n")
    return write_job(tmp_path, {
        "app": app if app is not None else {"image": "localhost/app:1"},
        "split": {"input": "in.txt"},
        "merge": {"output": "out.txt"},
        "run": run or {},
        **sections,
    })


@pytest.mark.parametrize(("given", "parsed"), [
    ("--memory 2g --network=none", ["--memory", "2g", "--network", "none"]),
    (["-m", "512m", "--read-only", "--init"], ["--memory", "512m", "--read-only", "--init"]),
    (["--cpus", "1.5", "--pids-limit=100", "--ulimit", "nofile=1024:2048"],
     ["--cpus", "1.5", "--pids-limit", "100", "--ulimit", "nofile=1024:2048"]),
    ("--security-opt no-new-privileges --cap-drop ALL --tmpfs /scratch:size=64m",
     ["--security-opt", "no-new-privileges", "--cap-drop", "ALL", "--tmpfs", "/scratch:size=64m"]),
    ("", []),
])
def test_allowed_options_become_a_list(given: str | list[str], parsed: list[str]) -> None:
    assert parse_container_options(given) == parsed


@pytest.mark.parametrize(("given", "named"), [
    (["--privileged"], "'--privileged' is not an allowed"),
    (["-v", "/:/host"], "'-v' is not an allowed"),
    (["--volume=/etc:/etc"], "'--volume' is not an allowed"),
    (["--mount", "type=bind,src=/,dst=/h"], "'--mount' is not an allowed"),
    (["--network", "host"], "--network has a value that is not allowed"),
    (["--cap-add", "SYS_ADMIN"], "'--cap-add' is not an allowed"),
    (["--entrypoint", "/bin/sh"], "'--entrypoint' is not an allowed"),
    (["--memory"], "--memory needs a value"),
    (["--read-only=true"], "--read-only takes no value"),
    (["--memory", "2g", "evil/image"], "a value without a flag"),
    ("--memory 2g; rm -rf /", "--memory has a value that is not allowed"),
])
def test_unsafe_options_are_refused_by_name(given: str | list[str], named: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_container_options(given)
    assert named in str(err.value)


def test_job_file_checks_options_and_names_the_key(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, run={"container_options": "--network none --memory=1g"}))
    assert spec.run.container_options == ["--network", "none", "--memory", "1g"]
    with pytest.raises(JobFileError, match=r"\[run\] container_options.*'--privileged' is not an allowed"):
        load_spec(job(tmp_path, run={"container_options": ["--privileged"]}))


def test_a_disallowed_env_option_does_not_echo_its_value(tmp_path: Path) -> None:
    with pytest.raises(JobFileError) as err:
        load_spec(job(tmp_path, run={"container_options": ["--env=TOKEN=hunter2-secret"]}))
    assert "'--env' is not an allowed" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_runtime_auto_picks_process_without_an_image_and_a_container_runtime_with_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_image = load_spec(job(tmp_path, app={"command": ["true"]}))
    assert no_image.run.runtime == "auto"
    assert job_runtime(no_image) == "process"
    assert container_settings(no_image) is None
    with_image = load_spec(job(tmp_path, run={"container_options": ["--network", "none"]}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for cli in ("podman", "docker"):
        (bin_dir / cli).write_text("#!/bin/sh\n")
        (bin_dir / cli).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert job_runtime(with_image) == "podman"
    assert container_settings(with_image) == ContainerSettings("localhost/app:1", ("--network", "none"))
    (bin_dir / "podman").unlink()
    assert job_runtime(with_image) == "docker"
    assert resolve_runtime("process", "localhost/app:1") == "process"


def test_image_section_is_validated_and_names_the_key(tmp_path: Path) -> None:
    good = {"name": "localhost/my-app", "version": "1.2", "registry": "127.0.0.1:5000",
            "username": "me", "password_secret": "MY_REG_PW", "tls_verify": False}
    spec = load_spec(job(tmp_path, app={}, image=good))
    assert spec.image is not None and spec.image.password_secret == "MY_REG_PW"
    cases = [
        ({**good, "version": "latest"}, r"\[image\] version: must be a tag"),
        ({**good, "name": "My App"}, r"\[image\] name: must be a lowercase repository"),
        ({**good, "name": "localhost/app:1"}, r"\[image\] name"),
        ({**good, "registry": "https://x.io"}, r"\[image\] registry"),
        ({**good, "password_secret": "not a name!"}, r"\[image\] password_secret"),
        ({k: v for k, v in good.items() if k != "version"}, r"\[image\] version is required"),
    ]
    for section, message in cases:
        with pytest.raises(JobFileError, match=message):
            load_spec(job(tmp_path, app={}, image=section))


def test_a_password_in_the_job_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    section = {"name": "localhost/app", "version": "1", "password": "pw-in-the-file-42"}
    with pytest.raises(JobFileError) as err:
        load_spec(job(tmp_path, app={}, image=section))
    assert "unknown key 'password' in [image]" in str(err.value)
    assert "pw-in-the-file-42" not in str(err.value)


def test_app_image_must_be_a_reference(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match=r"\[app\] image: is not an image reference"):
        load_spec(job(tmp_path, app={"image": "localhost/app:1 --privileged"}))


def test_credentials_are_only_for_their_own_registry_and_plain_http_only_on_loopback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_REG_PW", "pw-0123456789")
    section = {"name": "localhost/app", "version": "1", "registry": "127.0.0.1:5000",
               "username": "me", "password_secret": "MY_REG_PW", "tls_verify": False}
    spec = load_spec(job(tmp_path, app={}, image=section))
    own = registry_for(spec)
    assert own is not None and own.username == "me" and own.password is not None
    assert own.password.reveal() == "pw-0123456789"
    assert "pw-0123456789" not in repr(own)
    other = registry_for(spec, "other.example.io")
    assert other is not None and other.username is None and other.password is None
    remote = load_spec(job(tmp_path, app={}, image={**section, "registry": "myacr.azurecr.io"}))
    with pytest.raises(JobFileError, match="only for a loopback registry"):
        registry_for(remote)
    monkeypatch.delenv("MY_REG_PW")
    with pytest.raises(SecretError, match="secret 'MY_REG_PW' not found"):
        registry_for(spec)
    with pytest.raises(ImageError, match="no password"):
        registry_for(load_spec(job(tmp_path, app={}, image={"name": "a", "version": "1"})),
                     "127.0.0.1:5000", username="me")


def test_container_options_need_a_container_runtime(tmp_path: Path) -> None:
    from shardrun.core.preflight import check_job

    spec = load_spec(job(tmp_path, app={"command": ["true"]},
                         run={"runtime": "process", "container_options": ["--network", "none"]}))
    with pytest.raises(JobFileError, match="container_options need a container runtime"):
        check_job(spec)


@pytest.mark.parametrize(("ref", "host", "repo"), [
    ("myacr.azurecr.io/team/app:1", "myacr.azurecr.io", "team/app:1"),
    ("localhost/app", "localhost", "app"),
    ("127.0.0.1:5000/app:2", "127.0.0.1:5000", "app:2"),
    ("library/app:1", None, "library/app:1"),
    ("app", None, "app"),
])
def test_registry_host_and_repository(ref: str, host: str | None, repo: str) -> None:
    assert registry_host(ref) == host
    assert repository(ref) == repo


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1:5000", True), ("localhost:5000", True), ("[::1]:5000", True), ("127.0.0.2/ns", True),
    ("127.evil.example", False), ("myacr.azurecr.io", False), ("10.0.0.1:5000", False),
])
def test_plain_http_is_only_for_real_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
