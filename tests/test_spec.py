from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.core.errors import JobFileError
from shardrun.core.spec import load_spec, parse_duration

from .helpers import write_job

MIN = {
    "app": {"command": ["cat", "{input}"]},
    "split": {"input": "big.txt"},
    "merge": {"output": "out.txt"},
}


def test_minimal_job_gets_defaults(tmp_path: Path) -> None:
    spec = load_spec(write_job(tmp_path, MIN))
    assert spec.split.kind == "lines"
    assert spec.merge.kind == "concat"
    assert spec.run.backend == "local"
    assert spec.run.retries == 3
    assert spec.name == "job"
    assert spec.path("big.txt") == tmp_path.resolve() / "big.txt"


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({**MIN, "split": {"input": "x", "per_tsk": 3}}, "unknown key 'per_tsk' in [split]"),
        ({**MIN, "extra": {"a": 1}}, "unknown key 'extra'"),
        ({**MIN, "run": {"timeout": "ten minutes"}}, "[run] timeout"),
        ({**MIN, "run": {"concurrency": 0}}, "[run] concurrency"),
        ({**MIN, "split": {"input": "x", "method": "words"}}, "[split] method"),
        ({**MIN, "app": {"command": []}}, "[app] command"),
        ({**MIN, "app": {"command": ["x"], "env": {"1BAD": "v"}}}, "[app] env"),
        ({"app": MIN["app"], "split": MIN["split"]}, "[merge] is required"),
        ({**MIN, "merge": {"output": "o", "method": "csv", "command": ["x"]}}, "only one of"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, sections: dict, expected: str) -> None:
    path = write_job(tmp_path, sections)
    with pytest.raises(JobFileError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_malformed_toml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[app]\ncommand = ["a",\n[split\n')
    with pytest.raises(JobFileError, match=r"bad\.toml: not valid TOML: .*line"):
        load_spec(path)


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="job file not found"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10x", "m10", "10m x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_fingerprint_changes_with_split_not_with_run(tmp_path: Path) -> None:
    a = load_spec(write_job(tmp_path, MIN, "a.toml"))
    b = load_spec(write_job(tmp_path, {**MIN, "run": {"concurrency": 7}}, "b.toml"))
    c = load_spec(write_job(tmp_path, {**MIN, "split": {"input": "big.txt", "per_task": 5}}, "c.toml"))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
