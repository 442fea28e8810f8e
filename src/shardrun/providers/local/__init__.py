"""The local provider: tasks as processes or podman/docker containers on this machine, and the
local (and in-memory) stores. Nothing it runs costs money, and it creates no cloud resources."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shardrun.core.compute import ClusterMerge, ComputeBackend
from shardrun.core.containers import job_runtime
from shardrun.core.contract import base_environment
from shardrun.core.errors import JobFileError
from shardrun.core.preflight import resolved_command
from shardrun.core.provider import Cost, GcRequest, Leftover
from shardrun.core.secrets import SecretSource
from shardrun.core.spec import JobSpec
from shardrun.core.store import Store


class LocalProvider:
    name = "local"
    computes: tuple[str, ...] = ("local",)
    stores: tuple[str, ...] = ("local", "memory")
    secret_sources: tuple[str, ...] = ()
    sections: Mapping[str, type[BaseModel]] = {}

    def check_job(self, spec: JobSpec, *, fetch_image: bool) -> None:
        if spec.run.backend not in self.computes:
            return  # only the store is ours: nothing to check
        runtime = job_runtime(spec)
        command = resolved_command(spec)
        if runtime == "process":
            if command is not None:
                _check_program(spec, command[0])
            return
        from shardrun.images.engine import check_image, dockerfile, find_engine

        if spec.image is not None:
            dockerfile(spec)
        check_image(spec, find_engine(spec.run.runtime), fetch=fetch_image)  # 'auto' says what's missing

    def preflight(self, spec: JobSpec, store: Store) -> None:
        pass  # everything local was checked by check_job

    def open_compute(self, name: str, spec: JobSpec) -> ComputeBackend:
        from shardrun.providers.local.container import container_settings
        from shardrun.providers.local.processes import LocalBackend

        return LocalBackend(job_runtime(spec), containers=container_settings(spec))

    def open_merge(self, name: str, spec: JobSpec) -> ClusterMerge | None:
        return None  # the outputs are on this machine already: the client merges them

    def open_store(self, name: str, spec: JobSpec | None, home: Path) -> Store:
        if name == "memory":
            from shardrun.providers.local.memory import MemoryStore

            return MemoryStore()
        from shardrun.providers.local.store import LocalStore

        return LocalStore(home / "store")

    def open_secrets(self, name: str, section: Any, base_dir: Path) -> SecretSource:
        raise JobFileError(f"the local provider has no secret source {name!r}")

    def cleanup(self, spec: JobSpec, resources: Sequence[tuple[str, str]],
                on_deleted: Callable[[str, str], None]) -> list[str]:
        return []  # the run's containers are removed as their attempts end

    def collect_leftovers(self, request: GcRequest) -> list[tuple[Leftover, bool]]:
        return []

    def cost(self, spec: JobSpec, attempts: Sequence[Mapping[str, Any]], now: float) -> Cost | None:
        return None  # this machine is already paid for


def _check_program(spec: JobSpec, program: str) -> None:
    where = f"{spec.source}: [app] command[0]"
    if os.sep in program:
        path = Path(program)
        if not path.is_file():
            raise JobFileError(f"{where}: {program!r} does not exist")
        if not os.access(path, os.X_OK):
            raise JobFileError(f"{where}: {program!r} is not executable (chmod +x?)")
        return
    if shutil.which(program, path=base_environment().get("PATH")) is None:
        raise JobFileError(f"{where}: program {program!r} not found on PATH or beside the job file")


PROVIDER = LocalProvider()
