"""The job file: a TOML document validated by pydantic. Paths are resolved against the file's folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from shardrun.core import provider
from shardrun.core.containers import REFERENCE_RE, REGISTRY_RE, REPOSITORY_RE, TAG_RE, parse_container_options
from shardrun.core.errors import JobFileError

M = TypeVar("M", bound=BaseModel)
PLACEHOLDERS_APP = ("{input}", "{output}", "{config}")
SPLIT_METHODS = ("lines", "files", "json", "csv")
MERGE_METHODS = ("concat", "jsonl", "csv", "json")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobSection(_Section):
    name: str | None = Field(None, description="Name shown in `shardrun runs`; default: file stem.")


class AppSection(_Section):
    command: list[str] | None = Field(
        None, description="argv list; {input} {output} {config} are replaced per task."
    )
    config: Path | None = None
    files: list[Path] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    output_name: str | None = None
    image: str | None = Field(
        None, description="Container image the tasks run, e.g. 'localhost/app:1'; see docs/containers.md."
    )

    @field_validator("image")
    @classmethod
    def _image_reference(cls, v: str | None) -> str | None:
        if v is not None and not REFERENCE_RE.match(v):
            raise ValueError("is not an image reference like 'localhost/app:1' or 'myacr.azurecr.io/app:1'")
        return v

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not v[0]):
            raise ValueError("must be a non-empty list whose first item is the program")
        return v

    @field_validator("output_name")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v in (".", "..")):
            raise ValueError("must be a plain file name without '/'")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return v


class _Pluggable(_Section):
    """A built-in `method`, or the user's `command` or `function`: at most one of them."""

    method: str | None = None
    command: list[str] | None = None
    function: str | None = None
    _default_method = ""

    @model_validator(mode="after")
    def _one_way(self) -> _Pluggable:
        ways = [w for w in ("method", "command", "function") if getattr(self, w) is not None]
        if len(ways) > 1:
            raise ValueError(f"give only one of method, command, function (got {', '.join(ways)})")
        if self.function is not None and ":" not in self.function:
            raise ValueError("function must look like 'module:function'")
        return self

    @property
    def kind(self) -> str:
        if self.command is not None:
            return "command"
        if self.function is not None:
            return "function"
        return self.method or self._default_method


class SplitSection(_Pluggable):
    input: str = Field(description="A file, a glob, or a folder.")
    method: Literal["lines", "files", "json", "csv"] | None = None
    per_task: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description='Units per task, or "auto": the planner chooses when a run starts.')
    _default_method = "lines"

    @field_validator("per_task", mode="before")
    @classmethod
    def _whole_or_auto(cls, v: Any) -> Any:
        """One plain error for anything else (not one per member of the union)."""
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f'must be a whole number of units, 1 or more, or "auto" (got {v!r})')


class MergeSection(_Pluggable):
    method: Literal["concat", "jsonl", "csv", "json"] | None = None
    output: Path
    _default_method = "concat"


class RunSection(_Section):
    backend: str = "local"
    runtime: Literal["auto", "process", "podman", "docker"] = Field(
        "auto", description="'auto': process, unless the job names an image: then podman, else docker."
    )
    container_options: list[str] = Field(
        default_factory=list, description="Extra `run` flags from an allow-list, e.g. ['--memory', '2g']."
    )
    storage: str = "local"
    concurrency: int | None = Field(None, ge=1)
    retries: int = Field(3, ge=0, le=100)
    timeout: float | None = Field(None, description="Seconds per attempt; '10m', '1h30m' accepted.")
    allow_failures: bool = False

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v

    @field_validator("container_options", mode="before")
    @classmethod
    def _container_options(cls, v: Any) -> Any:
        if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            return parse_container_options(v)  # a string is split like a shell would, never run
        return v

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("must be positive")
        return v


SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,126}$")


class SecretsSection(_Section):
    """Where the secrets named elsewhere come from: the environment, a folder of files, or Key Vault."""

    source: Literal["env", "file", "keyvault"] = "env"
    path: Path | None = Field(None, description="For source = 'file': the folder of secret files.")
    vault_url: str | None = Field(
        None, description="For source = 'keyvault': e.g. 'https://myvault.vault.azure.net'.")
    names: dict[str, str] = Field(
        default_factory=dict,
        description="For source = 'keyvault': shardrun's secret name -> the vault's secret name.")

    @model_validator(mode="after")
    def _where(self) -> SecretsSection:
        if self.source == "file" and self.path is None:
            raise ValueError("source = 'file' needs path = the folder holding the secret files")
        if self.source == "keyvault" and not self.vault_url:
            raise ValueError("source = 'keyvault' needs vault_url = 'https://NAME.vault.azure.net'")
        return self


class ImageSection(_Section):
    """How `shardrun image build` / `push` make the app's image. Credentials only by secret name."""

    context: Path = Field(Path("."), description="Build context folder, relative to the job file.")
    file: Path | None = Field(None, description="Default: Containerfile or Dockerfile in the context.")
    name: str = Field(description="Repository, e.g. 'localhost/myapp'.")
    version: str = Field(description="Tag; `build` also tags 'latest'.")
    registry: str | None = Field(None, description="Default for `image push`, e.g. 'myacr.azurecr.io'.")
    username: str | None = Field(None, description="Registry user name (not a secret).")
    password_secret: str = Field(
        "REGISTRY_PASSWORD", description="Name of the secret holding the password, from [secrets]."
    )
    tls_verify: bool = Field(True, description="false only for a plain-HTTP loopback test registry.")

    @field_validator("name")
    @classmethod
    def _repository(cls, v: str) -> str:
        if not REPOSITORY_RE.match(v):
            raise ValueError("must be a lowercase repository name like 'localhost/myapp' (no tag)")
        return v

    @field_validator("version")
    @classmethod
    def _tag(cls, v: str) -> str:
        if not TAG_RE.match(v) or v == "latest":
            raise ValueError("must be a tag like '1.0' (letters, digits, '_', '.', '-'; not 'latest')")
        return v

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is not None and not REGISTRY_RE.match(v):
            raise ValueError("must be a registry host like 'myacr.azurecr.io' or '127.0.0.1:5000'")
        return v

    @field_validator("password_secret")
    @classmethod
    def _secret_name(cls, v: str) -> str:
        if not SECRET_NAME_RE.match(v):
            raise ValueError("must be the name of a secret (letters, digits, '_', '.', '-')")
        return v


class JobSpec(_Section):
    """A validated job file. `base_dir` is the folder relative paths are resolved against."""

    job: JobSection = Field(default_factory=JobSection)
    app: AppSection
    split: SplitSection
    merge: MergeSection
    run: RunSection = Field(default_factory=RunSection)
    secrets: SecretsSection = Field(default_factory=SecretsSection)
    image: ImageSection | None = None
    # Sections a provider owns ([batch], [storage], ...), as written; the provider validates them.
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict)
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: Path | None = Field(default=None, exclude=True)
    _parsed: dict[str, BaseModel] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _provider_sections(cls, data: Any) -> Any:
        """Top-level tables a provider owns go to `sections` (old ledgers keep them at the top)."""
        if not isinstance(data, dict):
            return data
        owned = [k for k in data if k not in cls.model_fields and provider.owns_section(k)]
        if not owned:
            return data
        rest = {k: v for k, v in data.items() if k not in owned}
        rest["sections"] = {**(rest.get("sections") or {}), **{k: data[k] for k in owned}}
        return rest

    @field_serializer("sections")
    def _dump_sections(self, sections: dict[str, dict[str, Any]],
                       info: SerializationInfo) -> dict[str, Any]:
        """Validated sections are kept with their defaults, so the ledger has the whole picture."""
        return {name: (self._parsed[name].model_dump(mode=info.mode) if name in self._parsed else raw)
                for name, raw in sections.items()}

    def section(self, name: str, model: type[M]) -> M | None:
        """A provider's section, validated by its model; None when the job file has none."""
        if name not in self.sections:
            return None
        if name not in self._parsed:
            self._parsed[name] = model.model_validate(self.sections[name])
        parsed = self._parsed[name]
        assert isinstance(parsed, model)
        return parsed

    @property
    def name(self) -> str:
        if self.job.name:
            return self.job.name
        return self.source.stem if self.source else "job"

    def path(self, p: Path | str) -> Path:
        """Resolve a path from the job file against the job file's folder."""
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def concurrency(self) -> int:
        return self.run.concurrency or os.cpu_count() or 1

    def fingerprint(self) -> str:
        """Hash of what decides the tasks and their results; a change means a resume is unsafe."""
        data = self.model_dump(mode="json", include={"app", "split"})
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h30m', '250ms' or a bare number of seconds -> seconds."""
    t = text.strip().lower()
    try:
        return float(t)
    except ValueError:
        pass
    pos, total = 0, 0.0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for m in _DURATION.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * scale[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise ValueError(f"{text!r} is not a duration (try '90s', '10m' or '1h30m')")
    return total


_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dw])\s*$")


def parse_age(text: str) -> float:
    """'7d', '2w', '36h', '90m' -> seconds."""
    m = _DAYS.match(text.lower())
    if m:
        return float(m.group(1)) * (86400.0 if m.group(2) == "d" else 7 * 86400.0)
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an age (try '7d', '2w' or '36h')") from None


def _describe(loc: tuple[int | str, ...]) -> str:
    """('split', 'per_task') -> '[split] per_task'; ('app', 'command', 0) -> '[app] command[0]'."""
    if not loc:
        return "the file"
    head, *rest = loc
    key = ""
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return f"[{head}] {key}".strip() if rest else f"[{head}]"


def format_validation_error(source: Path | str, err: ValidationError,
                            prefix: tuple[str, ...] = ()) -> str:
    lines = []
    for e in err.errors():
        where = _describe((*prefix, *e["loc"]))
        if e["type"] == "extra_forbidden":
            section, _, key = where.rpartition(" ")
            in_section = f" in {section}" if section else ""
            lines.append(f"{source}: unknown key '{key.strip('[]')}'{in_section}")
        elif e["type"] == "missing":
            lines.append(f"{source}: {where} is required")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"{source}: {where}: {msg}")
    return "; ".join(lines)


def parse_spec(data: dict[str, Any], source: Path | str, base_dir: Path) -> JobSpec:
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as err:
        raise JobFileError(format_validation_error(source, err)) from None
    spec = spec.model_copy(update={"base_dir": base_dir, "source": Path(source)})
    for name in spec.sections:  # each provider validates its own sections
        owner = provider.for_section(name)
        assert owner is not None
        try:
            spec.section(name, owner.sections[name])
        except ValidationError as err:
            raise JobFileError(format_validation_error(source, err, prefix=(name,))) from None
    return spec


def load_spec(path: Path | str) -> JobSpec:
    """Read and validate a job file. Every problem is a JobFileError naming the file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobFileError(f"{path}: job file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise JobFileError(f"{path}: cannot read job file ({err})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise JobFileError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(data, path, path.resolve().parent)
