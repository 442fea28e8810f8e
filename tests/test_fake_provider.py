"""A provider from one file (tests/fake_provider.py), registered with register_provider: it passes
the compute contract through the registry, and a job file runs on it end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import shardrun
from shardrun.core import provider
from shardrun.core.compute import ComputeBackend
from shardrun.core.errors import JobFileError
from shardrun.core.ledger import Ledger
from shardrun.core.preflight import check_job
from shardrun.core.spec import load_spec, parse_spec
from shardrun.core.store import Store
from shardrun.testing.compute_contract import ComputeContract

from .fake_provider import COMPUTE, ENTRY, NAME, PROVIDER, STORE, FakeProvider
from .helpers import lines_job


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    provider.register_provider(ENTRY, PROVIDER)
    try:
        yield PROVIDER
    finally:
        provider.unregister_provider(NAME)
        PROVIDER.stores_by_home.clear()
        PROVIDER.backends.clear()


class TestFakeProvider(ComputeContract):
    stores_empty_logs = True  # it stores every log, even an empty one

    @pytest.fixture
    def backend(self, fake: FakeProvider, tmp_path: Path) -> ComputeBackend:
        spec = parse_spec({"app": {"command": ["true"]}, "split": {"input": "in.txt"},
                           "merge": {"output": "out.txt"},
                           "run": {"backend": COMPUTE, "storage": STORE}}, tmp_path / "job.toml", tmp_path)
        return provider.for_compute(COMPUTE).open_compute(COMPUTE, spec)

    @pytest.fixture
    def store(self, fake: FakeProvider, tmp_path: Path) -> Store:
        return provider.for_store(STORE).open_store(STORE, None, tmp_path / "home")


def test_a_job_file_runs_on_the_registered_provider(fake: FakeProvider, tmp_path: Path,
                                                    shardrun_home: Path) -> None:
    job = lines_job(tmp_path, n_lines=30, per_task=4, backend=COMPUTE, storage=STORE)
    result = shardrun.run_job(job)
    assert result.ok, result
    assert result.merged_output == tmp_path / "result.txt"
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(30))
    # It ran on the fake's own compute and store, not a built-in one.
    assert len(fake.backends) == 1
    store = fake.stores_by_home[shardrun_home.absolute()]
    outputs = list(store.list(f"{result.run_id}/outputs/"))
    assert len(outputs) == 8 and all(o.size > 0 for o in outputs)
    workers = {a["worker"] for a in Ledger(shardrun_home / "ledger.sqlite").attempts(result.run_id)}
    assert workers <= {"fake-1", "fake-2"} and workers


def test_unregistered_names_are_unknown_again(tmp_path: Path) -> None:
    job = lines_job(tmp_path, backend=COMPUTE, storage=STORE)
    provider.register_provider(ENTRY, PROVIDER)
    try:
        check_job(load_spec(job))  # known while registered
        assert COMPUTE in provider.compute_names() and STORE in provider.store_names()
    finally:
        provider.unregister_provider(NAME)
    with pytest.raises(JobFileError, match=f"backend '{COMPUTE}' is unknown"):
        check_job(load_spec(job))
    assert COMPUTE not in provider.compute_names()
