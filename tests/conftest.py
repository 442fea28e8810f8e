"""Shared fixtures. Every test gets its own SHARDRUN_HOME so runs never see each other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .fixtures.azurite import azurite  # noqa: F401  (one Azurite per session, on first use)
from .fixtures.containers import podman, registry, test_image  # noqa: F401  (session-wide)


@pytest.fixture(autouse=True)
def shardrun_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "shardrun-home"
    monkeypatch.setenv("SHARDRUN_HOME", str(home))
    yield home
