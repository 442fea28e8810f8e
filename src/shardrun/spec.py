"""The job file: a TOML document validated by pydantic. Paths are resolved against the file's folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import JobFileError

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


class SplitSection(_Section):
    input: str = Field(description="A file, a glob, or a folder.")
    method: Literal["lines", "files", "json", "csv"] | None = None
    command: list[str] | None = None
    function: str | None = None
    per_task: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_way(self) -> SplitSection:
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
        return self.method or "lines"


class MergeSection(_Section):
    method: Literal["concat", "jsonl", "csv", "json"] | None = None
    command: list[str] | None = None
    function: str | None = None
    output: Path

    @model_validator(mode="after")
    def _one_way(self) -> MergeSection:
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
        return self.method or "concat"


class RunSection(_Section):
    backend: str = "local"
    runtime: str = "process"
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

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("must be positive")
        return v


class JobSpec(_Section):
    """A validated job file. `base_dir` is the folder relative paths are resolved against."""

    job: JobSection = Field(default_factory=JobSection)
    app: AppSection
    split: SplitSection
    merge: MergeSection
    run: RunSection = Field(default_factory=RunSection)
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: Path | None = Field(default=None, exclude=True)

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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)")


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


def _describe(loc: tuple[int | str, ...]) -> str:
    """('split', 'per_task') -> '[split] per_task'; ('app', 'command', 0) -> '[app] command[0]'."""
    if not loc:
        return "the file"
    head, *rest = loc
    key = ""
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return f"[{head}] {key}".strip() if rest else f"[{head}]"


def format_validation_error(source: Path | str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = _describe(tuple(e["loc"]))
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
    return spec.model_copy(update={"base_dir": base_dir, "source": Path(source)})


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
