"""The job file: a TOML document validated by pydantic. Paths are resolved against the file's folder.

It is a little over 400 lines because every section's keys are here, in one place, as the
reference docs list them; durations and error wording live in durations.py and validation.py.
"""

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
    Strict,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from shardrun.core import provider
from shardrun.core.containers import REFERENCE_RE, REGISTRY_RE, REPOSITORY_RE, TAG_RE, parse_container_options
from shardrun.core.durations import duration_value
from shardrun.core.durations import parse_age as parse_age  # re-exported: the CLI and providers
from shardrun.core.durations import parse_duration as parse_duration  # import them from here
from shardrun.core.errors import JobFileError
from shardrun.core.validation import format_validation_error, unknown_key

M = TypeVar("M", bound=BaseModel)
# A path is a TOML string: the one place the strict models convert a value.
FilePath = Annotated[Path, Strict(False)]
PLACEHOLDERS_APP = ("{input}", "{output}", "{config}")
SPLIT_METHODS = ("lines", "files", "json", "csv")
MERGE_METHODS = ("concat", "jsonl", "csv", "json", "folder")
# [app] output_name may name the output after its input piece: "{stem}.html", "{name}.gz".
OUTPUT_NAME_FIELDS = ("name", "stem", "suffix")
_FIELD_RE = re.compile(r"\{([^{}]*)\}")


class _Section(BaseModel):
    # Strict: `per_task = "10"`, `retries = true` or `allow_failures = "yes"` are mistakes to name,
    # not values to guess at. Paths (TOML strings) opt out: FilePath.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class JobSection(_Section):
    name: str | None = Field(None, description="Name shown in `shardrun runs`; default: file stem.")


class AppSection(_Section):
    command: list[str] | None = Field(
        None, description="argv list; {input} {output} {config} are replaced per task."
    )
    config: FilePath | None = None
    files: list[FilePath] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    output_name: str | None = Field(
        None, description="The output's file name; {name} {stem} {suffix} are the input piece's.")
    stdout: Literal["output"] | None = Field(
        None, description="'output': the app's standard output is its output file.")
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
        if v is None:
            return v
        for field in _FIELD_RE.findall(v):
            if field not in OUTPUT_NAME_FIELDS:
                raise ValueError(f"{{{field}}} is not one of {{name}}, {{stem}}, {{suffix}}")
        check_file_name(_FIELD_RE.sub("x", v))
        return v

    @property
    def names_outputs_after_inputs(self) -> bool:
        return self.output_name is not None and bool(_FIELD_RE.search(self.output_name))

    def output_name_for(self, piece_name: str) -> str | None:
        """The output's name for an input piece of this name; None when [app] output_name is unset.
        Raises ValueError when the rendered name is no plain file name."""
        if self.output_name is None:
            return None
        stem, dot, suffix = piece_name.rpartition(".")
        if not stem:  # '.bashrc' or 'README': no suffix
            stem, suffix = piece_name, ""
        else:
            suffix = dot + suffix
        values = {"name": piece_name, "stem": stem, "suffix": suffix}
        name = _FIELD_RE.sub(lambda m: values[m.group(1)], self.output_name)
        check_file_name(name)
        return name

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return v


def check_file_name(name: str) -> None:
    """Raise ValueError unless `name` is a plain file name (an output's, a merged file's)."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"must be a plain file name without '/' or NUL (got {name!r})")
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        raise ValueError("must be at most 255 bytes long (a file name's limit)")


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

    @field_validator("input")
    @classmethod
    def _some_input(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a file, a glob or a folder")
        return v

    @field_validator("per_task", mode="before")
    @classmethod
    def _whole_or_auto(cls, v: Any) -> Any:
        """One plain error for anything else (not one per member of the union)."""
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        if isinstance(v, bool):
            raise ValueError(f'must be an integer or "auto", not {str(v).lower()}')
        if isinstance(v, str):
            raise ValueError(f'must be an integer or "auto", not the string "{v}"')
        if isinstance(v, int):
            raise ValueError(f"must be 1 or more (got {v})")
        raise ValueError(f'must be an integer or "auto" (got {v!r})')


class MergeSection(_Pluggable):
    method: Literal["concat", "jsonl", "csv", "json", "folder"] | None = None
    output: FilePath = Field(description="The merged file; with method = 'folder', a folder.")
    where: Literal["client", "cluster"] = Field(
        "client", description="'cluster': a final task merges on the compute's nodes (docs/azure.md).")
    _default_method = "concat"

    @model_validator(mode="after")
    def _cluster_can_run_it(self) -> MergeSection:
        if self.where == "cluster" and self.kind in ("folder", "function"):
            what = "method = 'folder'" if self.kind == "folder" else "a Python function"
            raise ValueError(f"where = 'cluster' cannot merge with {what}: the merged result is "
                             "one file made on a node; use where = 'client'")
        return self

    @field_validator("output", mode="before")
    @classmethod
    def _a_file(cls, v: Any) -> Any:
        # Path("") and Path("dir/") lose what was meant; the string still has it.
        if isinstance(v, str) and (not v.strip() or v.strip() in (".", "..") or v.endswith("/")):
            raise ValueError(f"must name a file, not {'a folder' if v.strip() else 'nothing'} ({v!r})")
        return v


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
        return duration_value(v)

    @field_validator("container_options", mode="before")
    @classmethod
    def _container_options(cls, v: Any) -> Any:
        if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            return parse_container_options(v)  # a string is split like a shell would, never run
        return v

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and not v > 0:
            raise ValueError("must be positive")
        return v


SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,126}$")


class SecretsSection(_Section):
    """Where the secrets named elsewhere come from: the environment, a folder of files, or Key Vault."""

    source: Literal["env", "file", "keyvault"] = "env"
    path: FilePath | None = Field(None, description="For source = 'file': the folder of secret files.")
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

    context: FilePath = Field(Path("."), description="Build context folder, relative to the job file.")
    file: FilePath | None = Field(None, description="Default: Containerfile or Dockerfile in the context.")
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
    base_dir: FilePath = Field(default=Path("."), exclude=True)
    source: FilePath | None = Field(default=None, exclude=True)
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
        if data["app"]["stdout"] is None:  # added later: runs made before it keep their fingerprint
            del data["app"]["stdout"]
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_INTERNAL_KEYS = ("sections", "base_dir", "source")  # JobSpec's own bookkeeping, not job-file keys


def job_file_keys() -> list[str]:
    """The top-level tables a job file may have: the spec's own and the providers' sections."""
    return [k for k, f in JobSpec.model_fields.items()
            if not f.exclude and k not in _INTERNAL_KEYS] + provider.section_names()


def parse_spec(data: dict[str, Any], source: Path | str, base_dir: Path) -> JobSpec:
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as err:
        raise JobFileError(format_validation_error(source, err, JobSpec, top_keys=job_file_keys())
                           ) from None
    spec = spec.model_copy(update={"base_dir": base_dir, "source": Path(source)})
    for name in spec.sections:  # each provider validates its own sections
        owner = provider.for_section(name)
        if owner is None:  # only a hand-edited ledger row can get here
            raise JobFileError(f"{source}: no installed provider owns the section [{name}]")
        model = owner.sections[name]
        try:
            spec.section(name, model)
        except ValidationError as err:
            raise JobFileError(format_validation_error(source, err, model, (name,))) from None
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
    for key in _INTERNAL_KEYS:  # fields of the model, but never the job file's to set
        if key in data:
            raise JobFileError(unknown_key(path, key, "", job_file_keys()))
    return parse_spec(data, path, path.resolve().parent)
