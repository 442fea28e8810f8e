"""Emulator settings. The defaults follow the service where the service has a number."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .faults import FaultConfig

# A published development account, like Azurite's devstoreaccount1: not a secret, never use it for
# anything real. Pass --account-name/--account-key (or the environment variables) to change it.
DEV_ACCOUNT_NAME = "devbatchaccount1"
DEV_ACCOUNT_KEY = "c2hhcmRydW4tYmF0Y2gtZW11bGF0b3ItZGV2ZWxvcG1lbnQta2V5LW5vdC1zZWNyZXQ="


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    account_name: str = DEV_ACCOUNT_NAME
    account_key: str = DEV_ACCOUNT_KEY
    allow_bearer: bool = False  # development mode: accept any bearer token
    # HTTPS: azure-core sends bearer tokens over TLS only, so token credentials need these.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    folder: Path | None = None  # keep state (and node disks) here; None: memory and a temp dir
    node_start_seconds: float = 1.0  # creating -> starting -> idle takes this long in all
    # A deleted pool stays in the deleting state at least this long (minutes on the service, while
    # its nodes are released); 0: gone as soon as its nodes are.
    pool_delete_seconds: float = 0.0
    container_runtime: str = "process"  # "podman" runs container tasks in containers
    podman_args: tuple[str, ...] = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
    autoscale_min_interval: float = 300.0  # the service's minimum evaluation interval, in seconds
    autoscale_enable_cooldown: float = 30.0  # enableautoscale calls on one pool must be this far apart
    sample_seconds: float = 30.0  # how often autoscale metric samples are taken
    tick_seconds: float = 0.05  # scheduler loop period
    max_body_bytes: int = 1024 * 1024
    max_tasks_per_collection: int = 100
    check_responses: bool = False  # validate every response body against the spec (for tests)
    # Development mode: a managed identity's resource ID (or "*") -> the storage connection string or
    # account key it stands for here (identity.py). Never logged.
    identity_storage: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Simulated tasks (simulate.py): each completes after this many seconds (low, high: drawn per task
    # with simulate_seed) without a process, its output files written straight into storage.
    simulate_seconds: tuple[float, float] | None = None
    simulate_seed: int = 0
    simulate_upload_workers: int = 8
    faults: FaultConfig = field(default_factory=FaultConfig)
