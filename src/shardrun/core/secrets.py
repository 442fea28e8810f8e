"""Secret sources: where credentials come from. The job file only ever names a secret, never holds one.

Sources are registered by kind, like stores and backends:

    env       the client's environment variables (the default)
    file      a folder with one file per secret (the file name is the secret's name), as mounted
              secrets are laid out by Kubernetes or systemd credentials
    keyvault  an Azure Key Vault (shardrun.providers.azure.keyvault, imported only when used, so that
              importing shardrun never imports the Azure SDK)

Any other source only has to implement `SecretSource.get` and call `register_source`.
`open_secret_source` builds the source a job's [secrets] section asks for. Values are wrapped in
`Secret`, whose repr and str never show the value, so a secret cannot end up in a log line or an
error message by accident.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from shardrun.core.errors import ShardrunError, UsageError

SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,126}$")


class SecretError(ShardrunError):
    """A named secret is missing or unreadable. The message names the secret, never its value."""

    exit_code = 2


class Secret:
    """A secret value that hides itself from repr, str and f-strings. `reveal()` gives the value."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, '***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@runtime_checkable
class SecretSource(Protocol):
    kind: str

    def get(self, name: str) -> Secret | None:
        """The secret called `name`, or None when the source has no such secret."""
        ...

    def describe(self, name: str) -> str:
        """Where the secret `name` was looked for, for an error message (never its value)."""
        ...


def require(source: SecretSource, name: str) -> Secret:
    secret = source.get(name)
    if secret is None:
        # The source says where it looked (Key Vault: the vault and the name it mapped to).
        raise SecretError(f"secret {name!r} not found in {source.describe(name)}")
    return secret


class EnvSecrets:
    """Secrets from environment variables. An empty variable counts as missing."""

    kind = "env"

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    def get(self, name: str) -> Secret | None:
        _check_name(name)
        value = self._environ.get(name, "")
        return Secret(name, value) if value else None

    def describe(self, name: str) -> str:
        return f"the environment (variable {name})"


class FileSecrets:
    """Secrets as files in one folder: `<folder>/<name>`, trailing newline stripped.

    Files readable by other users are refused, as ssh does for keys.
    """

    kind = "file"

    def __init__(self, path: Path | str) -> None:
        self.folder = Path(path).expanduser()
        if not self.folder.is_dir():
            raise SecretError(f"secret folder {self.folder} does not exist")

    def get(self, name: str) -> Secret | None:
        _check_name(name)
        path = self.folder / name
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretError(f"secret file {path} is readable by others; chmod 600 it")
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise SecretError(f"cannot read secret file {path} ({type(err).__name__})") from None
        return Secret(name, value) if value else None

    def describe(self, name: str) -> str:
        return f"the secret folder {self.folder} (file {name})"


def _check_name(name: str) -> None:
    if not SECRET_NAME_RE.match(name):
        raise UsageError(f"{name!r} is not a valid secret name")


# kind -> factory(**options)
_SOURCES: dict[str, Callable[..., SecretSource]] = {
    "env": EnvSecrets,
    "file": FileSecrets,
}


def register_source(kind: str, factory: Callable[..., SecretSource]) -> None:
    _SOURCES[kind] = factory


def source_kinds() -> Iterable[str]:
    return sorted(_SOURCES)


def open_source(kind: str, **options: Any) -> SecretSource:
    try:
        factory = _SOURCES[kind]
    except KeyError:
        raise UsageError(
            f"unknown secret source {kind!r}; known: {', '.join(source_kinds())}"
        ) from None
    return factory(**options)


def open_secret_source(section: Any, base_dir: Path | None) -> SecretSource:
    """The source a job's [secrets] section names (None: the environment).

    `section` is a `shardrun.core.spec.SecretsSection` (typed Any so this module does not import the spec);
    a relative `path` is resolved against `base_dir`, the job file's folder.
    """
    if section is None or section.source == "env":
        return open_source("env")
    if section.source != "file":  # a provider's (Key Vault is the azure provider's)
        from shardrun.core import provider

        base = base_dir if base_dir is not None else Path.cwd()
        return provider.for_secrets(section.source).open_secrets(section.source, section, base)
    path = Path(section.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return open_source(section.source, path=path)
