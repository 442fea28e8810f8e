from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shardrun.core.errors import JobFileError
from shardrun.core.preflight import validate_job
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


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({**MIN, "split": {"input": "x", "per_task": "10"}},
         '[split] per_task: must be an integer or "auto", not the string "10"'),
        ({**MIN, "split": {"input": "x", "per_task": True}}, '[split] per_task: must be an integer or "auto", not true'),
        ({**MIN, "split": {"input": "x", "per_task": 2.5}}, '[split] per_task: must be an integer or "auto"'),
        ({**MIN, "run": {"retries": "3"}}, "[run] retries: must be an integer"),
        ({**MIN, "run": {"concurrency": True}}, "[run] concurrency: must be an integer, not true"),
        ({**MIN, "run": {"allow_failures": "yes"}},
         '[run] allow_failures: must be true or false, not the string "yes"'),
        ({**MIN, "run": {"allow_failures": 1}}, "[run] allow_failures: must be true or false"),
        ({**MIN, "image": {"name": "localhost/a", "version": "1", "tls_verify": "no"}},
         "[image] tls_verify: must be true or false"),
        ({**MIN, "run": {"timeout": float("nan")}}, "[run] timeout: nan is not a duration"),
        ({**MIN, "run": {"timeout": float("inf")}}, "[run] timeout: inf is not a duration"),
        ({**MIN, "run": {"timeout": -5}}, "[run] timeout: -5 is not a duration: it is negative"),
        ({**MIN, "run": {"timeout": "nan"}}, "[run] timeout: 'nan' is not a duration"),
        ({**MIN, "run": {"timeout": "-1m"}}, "[run] timeout: '-1m' is not a duration"),
        ({**MIN, "run": {"timeout": True}}, "[run] timeout: must be a duration"),
        ({**MIN, "split": {"input": ""}}, "[split] input: must name a file, a glob or a folder"),
        ({**MIN, "merge": {"output": ""}}, "[merge] output: must name a file, not nothing"),
        ({**MIN, "merge": {"output": "."}}, "[merge] output: must name a file, not a folder"),
        ({**MIN, "merge": {"output": "out/"}}, "[merge] output: must name a file, not a folder"),
        ({**MIN, "app": {"command": ["x"], "output_name": "a\0b"}}, "[app] output_name: must be a plain"),
        ({**MIN, "app": {"command": ["x"], "output_name": "a/b"}}, "[app] output_name: must be a plain"),
        ({**MIN, "app": {"command": ["x"], "output_name": "é" * 128}}, "at most 255 bytes"),
        ({**MIN, "split": {"input": "x", "per_taks": 3}},
         "unknown key 'per_taks' in [split]; did you mean 'per_task'?"),
        ({**MIN, "run": {"timout": "1m"}}, "unknown key 'timout' in [run]; did you mean 'timeout'?"),
        ({**MIN, "splt": {"input": "x"}}, "unknown key 'splt'; did you mean 'split'?"),
        ({**MIN, "sections": {"batch": {}}}, "unknown key 'sections'"),
        ({**MIN, "batch": {"account_url": "http://127.0.0.1:1/a", "dedicated_nodess": 1}},
         "unknown key 'dedicated_nodess' in [batch]; did you mean 'dedicated_nodes'?"),
        ({**MIN, "storage": {"retrie": 1}}, "unknown key 'retrie' in [storage]; did you mean 'retries'?"),
    ],
)
def test_strict_values_and_helpful_unknown_keys(tmp_path: Path, sections: dict, expected: str) -> None:
    path = write_job(tmp_path, sections)
    with pytest.raises(JobFileError) as err:
        load_spec(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_valid_values_still_pass(tmp_path: Path) -> None:
    spec = load_spec(write_job(tmp_path, {
        "app": {"command": ["cat"], "output_name": "é" * 127, "config": "c.json", "files": ["a", "b"]},
        "split": {"input": "x", "per_task": 10},
        "merge": {"output": "out/r.txt"},
        "run": {"timeout": 1.5, "retries": 0, "allow_failures": True, "concurrency": 2},
    }))
    assert (spec.split.per_task, spec.run.timeout, spec.run.allow_failures) == (10, 1.5, True)
    assert spec.app.files == [Path("a"), Path("b")]
    assert load_spec(write_job(tmp_path, {**MIN, "run": {"timeout": 30}})).run.timeout == 30.0


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-5", "1e999", " NaN "])
def test_durations_are_finite_and_not_negative(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_a_fifo_or_a_device_as_input_is_an_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    for raw in (str(tmp_path / "pipe"), "/dev/zero"):
        job = write_job(tmp_path, {**MIN, "split": {"input": raw}})
        with pytest.raises(JobFileError, match=r"\[split\] input: .* is not a regular file"):
            validate_job(job)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    os.mkfifo(tmp_path / "data" / "b.txt")
    for raw in ("data", "data/*.txt"):
        job = write_job(tmp_path, {**MIN, "split": {"input": raw}})
        with pytest.raises(JobFileError, match=r"b\.txt' is not a regular file"):
            validate_job(job)


@pytest.mark.parametrize(
    ("split_fn", "merge_fn", "expected"),
    [
        ("def split(inputs):\n    pass\n", None, "[split] function 'plug:split'(inputs) cannot be called"),
        ("def split(inputs, outdir, per_task, extra):\n    pass\n", None, "[split] function"),
        (None, "def merge(outputs):\n    pass\n", "[merge] function 'plug:merge'(outputs) cannot"),
        (None, "def merge(outputs, dest, how):\n    pass\n", "[merge] function"),
    ],
)
def test_function_signatures_are_checked_before_any_task(tmp_path: Path, split_fn: str | None,
                                                         merge_fn: str | None, expected: str) -> None:
    module = "plug_" + re.sub(r"\W", "_", tmp_path.name)  # a fresh module: imports are cached
    (tmp_path / f"{module}.py").write_text((split_fn or "") + (merge_fn or ""))
    (tmp_path / "big.txt").write_text("1\n")
    sections: dict = {**MIN}
    if split_fn:
        sections["split"] = {"input": "big.txt", "function": f"{module}:split"}
    if merge_fn:
        sections["merge"] = {"output": "out.txt", "function": f"{module}:merge"}
    job = write_job(tmp_path, sections)
    with pytest.raises(JobFileError) as err:
        validate_job(job)
    assert str(job) in str(err.value)
    assert expected.replace("plug:", f"{module}:") in str(err.value)


def test_function_signatures_that_fit_pass(tmp_path: Path) -> None:
    (tmp_path / "fits.py").write_text(
        "def split(inputs, outdir, per_task=1):\n    pass\n"
        "def merge(*args, **kwargs):\n    pass\n")
    (tmp_path / "big.txt").write_text("1\n")
    validate_job(write_job(tmp_path, {
        **MIN, "split": {"input": "big.txt", "function": "fits:split"},
        "merge": {"output": "out.txt", "function": "fits:merge"}}))
