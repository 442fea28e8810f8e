"""Container images: build, tag, log in, push, pull and look up, with the podman or docker CLI.

Every command is an argv list. A registry password goes to `login --password-stdin` and into a
temporary auth file that is deleted right after, so it is never on a command line (`ps`), in the
user's own auth file, in a log line or in an error message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shardrun.core.containers import REGISTRY_RE, job_image
from shardrun.core.errors import JobFileError, ShardrunError
from shardrun.core.secrets import EnvSecrets, Secret, SecretSource, open_source, require

if TYPE_CHECKING:
    from shardrun.core.spec import JobSpec

CLIS = ("podman", "docker")
QUICK = 120.0  # seconds for commands that only look something up or log in
TRANSFER = 3600.0  # seconds for a pull or a push
BUILD = 4 * 3600.0



class ImageError(ShardrunError):
    """A build, push or pull failed, or an image is missing. The message never holds a secret."""


class RuntimeMissing(ShardrunError):
    """No usable container CLI. Exit code 2, like a backend that is not installed."""

    exit_code = 2


def registry_host(ref: str) -> str | None:
    """'myacr.azurecr.io/app:1' -> 'myacr.azurecr.io'; 'app:1' -> None (a Docker Hub short name)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first
    return None


def repository(name: str) -> str:
    """The name without its registry: 'localhost/team/app' -> 'team/app'."""
    host = registry_host(name)
    return name[len(host) + 1:] if host else name


def is_loopback(registry: str) -> bool:
    """'127.0.0.1:5000', 'localhost', '[::1]:5000' -> True; any name that only looks like one -> False."""
    host = registry.split("/", 1)[0]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, repr=False)
class Registry:
    """A registry to log in to. `password` is a Secret, so printing this object shows no secret."""

    host: str
    username: str | None = None
    password: Secret | None = None
    tls_verify: bool = True

    def __repr__(self) -> str:
        return f"Registry({self.host!r}, username={self.username!r}, tls_verify={self.tls_verify})"


class Engine:
    """One container CLI. podman and docker differ only in a few flags, kept here."""

    def __init__(self, name: str) -> None:
        if name not in CLIS:
            raise RuntimeMissing(f"unknown container runtime {name!r}; known: {', '.join(CLIS)}")
        path = shutil.which(name)
        if path is None:
            hint = "apt-get install podman runc" if name == "podman" else "install Docker Engine"
            raise RuntimeMissing(f"container runtime {name!r} is not installed ({hint})")
        self.name = name
        self.path = path

    def argv(self, *args: str, auth: Path | None = None) -> list[str]:
        """A command line; `auth` is a temporary login folder (docker: --config, podman: --authfile)."""
        if auth is None:
            return [self.path, *args]
        if self.name == "docker":
            return [self.path, "--config", str(auth), *args]
        return [self.path, args[0], "--authfile", str(auth / "auth.json"), *args[1:]]

    def tls(self, registry: Registry | None) -> list[str]:
        # docker has no per-command switch; it trusts loopback registries over plain HTTP by itself.
        if self.name == "podman" and registry is not None and not registry.tls_verify:
            return ["--tls-verify=false"]
        return []

    def run(self, *args: str, auth: Path | None = None, timeout: float = QUICK,
            stdin: bytes | None = None, secret: Secret | None = None,
            what: str = "") -> subprocess.CompletedProcess[str]:
        """Run a command and raise ImageError with its (scrubbed) stderr when it fails."""
        proc = self.call(*args, auth=auth, timeout=timeout, stdin=stdin)
        if proc.returncode != 0:
            raise ImageError(f"{what or self.name + ' ' + args[0]} failed: "
                             f"{explain(proc.stderr, secret)}")
        return proc

    def call(self, *args: str, auth: Path | None = None, timeout: float = QUICK,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args, auth=auth)
        # A password goes through a pipe; otherwise nothing may wait on the user's terminal.
        feed: dict[str, Any] = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, **feed)
        except subprocess.TimeoutExpired:
            raise ImageError(f"{self.name} {args[0]} did not finish within {timeout:g}s") from None
        return subprocess.CompletedProcess(argv, proc.returncode,
                                           proc.stdout.decode("utf-8", "replace"),
                                           proc.stderr.decode("utf-8", "replace"))

    def exists(self, ref: str) -> bool:
        if self.name == "podman":
            proc = self.call("image", "exists", ref)
            if proc.returncode in (0, 1):
                return proc.returncode == 0
        else:
            proc = self.call("image", "inspect", "--format", "{{.Id}}", ref)
            if proc.returncode == 0:
                return True
            if "no such image" in proc.stderr.lower():
                return False
        raise ImageError(f"{self.name} cannot look up images: {explain(proc.stderr)}")

    @contextlib.contextmanager
    def login(self, registry: Registry | None) -> Iterator[Path | None]:
        """Log in to a throw-away auth folder for the duration of the block; yields it (or None)."""
        if registry is None or registry.username is None or registry.password is None:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="shardrun-auth-") as folder:
            auth = Path(folder)
            self.run("login", *self.tls(registry), "--username", registry.username,
                     "--password-stdin", registry.host.split("/", 1)[0], auth=auth,
                     stdin=registry.password.reveal().encode(), secret=registry.password,
                     what=f"login to {registry.host}")
            yield auth

    def pull(self, ref: str, registry: Registry | None) -> None:
        with self.login(registry) as auth:
            self.run("pull", "-q", *self.tls(registry), ref, auth=auth, timeout=TRANSFER,
                     secret=registry.password if registry else None, what=f"pull of {ref}")

    def remove(self, ref: str) -> None:
        self.run("rmi", ref)


def find_engine(name: str = "auto") -> Engine:
    """The named CLI, or for 'auto' podman when installed, else docker."""
    if name != "auto":
        return Engine(name)
    for cli in CLIS:
        if shutil.which(cli):
            return Engine(cli)
    raise RuntimeMissing("no container runtime found: install podman (apt-get install podman runc) "
                         "or docker")


def explain(stderr: str, secret: Secret | None = None) -> str:
    """The CLI's error in a line, with a hint for the usual causes and no secret in it."""
    text = " ".join(ln.strip() for ln in stderr.strip().splitlines() if ln.strip())[-600:]
    if secret is not None and secret.reveal():
        text = text.replace(secret.reveal(), "REDACTED")
    low = text.lower()
    # The registry's own error codes first; a bare status number counts only where it stands alone,
    # since ports, digests and temporary names in the text can hold "401" or "404" (a port 54013,
    # a folder /tmp/pytest-of-root/pytest-401/).
    if any(s in low for s in ("manifest unknown", "name unknown")):
        return f"no such image in the registry ({text})"
    if any(s in low for s in ("unauthorized", "invalid username/password", "authentication required",
                              "incorrect username or password")) or _status(401, low):
        return f"the registry rejected the credentials ({text})"
    if "http response to https client" in low:
        return (f"the registry speaks plain HTTP; set [image] tls_verify = false for a loopback "
                f"test registry ({text})")
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "dial tcp",
                              "network is unreachable", "no route to host", "x509")):
        return f"the registry is unreachable ({text})"
    if "not found" in low or _status(404, low):
        return f"no such image in the registry ({text})"
    return text or "(no error output)"


def _status(code: int, text: str) -> bool:
    """Whether `text` holds the HTTP status `code` as a status: a number standing alone, not a part
    of a port (`:401`), a path or name (`pytest-401/`, `/401/`), a version or a longer number."""
    return re.search(rf"(?<![\w.:/-]){code}(?![\w./-]|:\d)", text) is not None


# -- what a job file asks for ----------------------------------------------------------------------

def secret_source(spec: JobSpec) -> SecretSource:
    if spec.secrets.source == "env":
        return EnvSecrets()
    assert spec.secrets.path is not None
    return open_source(spec.secrets.source, path=spec.path(spec.secrets.path))


def registry_for(spec: JobSpec, host: str | None = None, *, username: str | None = None,
                 password: Secret | None = None, tls_verify: bool | None = None) -> Registry | None:
    """Login settings for `host` (default: [image] registry), from the job file and its secrets.

    Credentials from [image] are used only for its own registry, never sent to another host.
    """
    section = spec.image
    own = section.registry if section is not None else None
    host = host or own
    if host is None:
        return None
    same = own is not None and host.split("/", 1)[0] == own.split("/", 1)[0]
    if same and section is not None:
        username = username or section.username
        tls_verify = section.tls_verify if tls_verify is None else tls_verify
        if username is not None and password is None:
            password = require(secret_source(spec), section.password_secret)
    if tls_verify is False and not is_loopback(host):
        raise JobFileError(f"{spec.source}: tls_verify = false is allowed only for a loopback registry "
                           f"(credentials would cross the network in clear text)")
    if username is not None and password is None:
        raise ImageError(f"a username for {host} but no password (see [image] password_secret)")
    return Registry(host, username, password, True if tls_verify is None else tls_verify)


def import_rootfs(rootfs: Path, engine: Engine, ref: str) -> str:
    """Make image `ref` from a root filesystem, a folder or a tarball (`podman import`): a base for
    apps that need a runtime, built offline (docs/containers.md has the recipe for Python)."""
    if not rootfs.exists():
        raise ImageError(f"--base-rootfs: {rootfs} does not exist")
    if rootfs.is_dir():
        with tempfile.TemporaryDirectory(prefix="shardrun-rootfs-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            with tarfile.open(tarball, "w") as tar:
                tar.add(rootfs, arcname=".")
            engine.run("import", str(tarball), ref, timeout=TRANSFER, what=f"importing {rootfs}")
    else:
        engine.run("import", str(rootfs), ref, timeout=TRANSFER, what=f"importing {rootfs}")
    return ref


def build_image(spec: JobSpec, engine: Engine, *, quiet: bool = False) -> list[str]:
    """Build [image] from its Dockerfile/Containerfile and tag NAME:VERSION and NAME:latest."""
    section = spec.image
    if section is None:
        raise JobFileError(f"{spec.source}: no [image] section: say what to build (context, name, version)")
    context, file = dockerfile(spec)
    tags = [f"{section.name}:{section.version}", f"{section.name}:latest"]
    argv = engine.argv("build", "-f", str(file), *[a for t in tags for a in ("-t", t)], str(context))
    try:
        proc = subprocess.run(argv, timeout=BUILD, check=False,
                              capture_output=quiet, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ImageError(f"{engine.name} build did not finish within {BUILD:g}s") from None
    if proc.returncode != 0:
        detail = explain(proc.stderr.decode("utf-8", "replace")) if quiet else "see its output above"
        raise ImageError(f"{engine.name} build of {tags[0]} failed (exit {proc.returncode}): {detail}")
    return tags


def dockerfile(spec: JobSpec) -> tuple[Path, Path]:
    """The build context and the Dockerfile (or Containerfile) in it; a clear error if missing."""
    section = spec.image
    assert section is not None
    context = spec.path(section.context)
    if not context.is_dir():
        raise JobFileError(f"{spec.source}: [image] context: {str(section.context)!r} is not a folder")
    if section.file is not None:
        file = section.file if section.file.is_absolute() else context / section.file
        if not file.is_file():
            raise JobFileError(f"{spec.source}: [image] file: {str(section.file)!r} does not exist "
                               f"in {context}")
        return context, file
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context, context / name
    raise JobFileError(f"{spec.source}: [image]: no Dockerfile or Containerfile in {context} "
                       "(set [image] file, or run `shardrun init --app PATH` to write one)")


def push_image(spec: JobSpec, engine: Engine, registry: Registry) -> list[str]:
    """Tag NAME:VERSION and NAME:latest with the registry prefix and push both."""
    section = spec.image
    if section is None:
        raise JobFileError(f"{spec.source}: no [image] section: nothing to push")
    target = f"{registry.host.rstrip('/')}/{repository(section.name)}"
    pushed = []
    with engine.login(registry) as auth:
        for tag in (section.version, "latest"):
            local = f"{section.name}:{tag}"
            if not engine.exists(local):
                raise ImageError(f"image {local} is not built yet; run `shardrun image build` first")
            engine.run("tag", local, f"{target}:{tag}")
            engine.run("push", "-q", *engine.tls(registry), f"{target}:{tag}", auth=auth,
                       timeout=TRANSFER, secret=registry.password, what=f"push of {target}:{tag}")
            pushed.append(f"{target}:{tag}")
    return pushed


def check_image(spec: JobSpec, engine: Engine, *, fetch: bool) -> str:
    """Make sure the job's image can run here: present, or pulled now (`fetch`) from its registry.

    Without `fetch` (validate), a missing remote image only gets a login check. Returns what was done.
    """
    ref = job_image(spec)
    assert ref is not None
    if engine.exists(ref):
        return "present"
    host = registry_host(ref)
    if host is None or host == "localhost":
        hint = "run `shardrun image build`" if spec.image is not None else "build or pull it"
        raise ImageError(f"image {ref} is not present locally; {hint}")
    registry = registry_for(spec, host) or Registry(host)
    if not fetch:
        with engine.login(registry):
            return "login ok"
    engine.pull(ref, registry)
    return "pulled"


def push_from_job(spec: JobSpec, engine: Engine, registry: str | None = None, *,
                  username: str | None = None, password_secret: str | None = None,
                  password: str | None = None, tls_verify: bool | None = None) -> list[str]:
    """`shardrun image push [REGISTRY]`: the job's [image] settings, overridden by the options."""
    host = registry or (spec.image.registry if spec.image is not None else None)
    if host is None:
        raise JobFileError(f"{spec.source}: say which registry: `shardrun image push REGISTRY`, "
                           "or set [image] registry")
    if not REGISTRY_RE.match(host):
        raise JobFileError(f"{host!r} is not a registry host like 'myacr.azurecr.io'")
    secret: Secret | None = None
    if password is not None:
        secret = Secret("stdin", password.rstrip("\r\n"))
    elif password_secret is not None:
        secret = require(secret_source(spec), password_secret)
    target = registry_for(spec, host, username=username, password=secret, tls_verify=tls_verify)
    assert target is not None
    return push_image(spec, engine, target)
