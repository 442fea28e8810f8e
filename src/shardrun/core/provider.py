"""Providers: one per backend family. Core asks a provider; it never names a backend.

A provider supplies (docs/architecture.md, "Adding a provider"):
- the names it serves: compute backends (`[run] backend`), stores (`[run] storage`) and secret
  sources (`[secrets] source`);
- its own job-file sections, each a pydantic model it validates itself (`[batch]`, `[storage]`);
- checks of a job file (`check_job`) and checks before anything is split (`preflight`);
- the compute and the store of a run;
- cleanup of the cloud resources it created, found by exact id in the ledger;
- leftovers for `shardrun gc`;
- the cost of a run from its attempts (one cost model: `status`, `report` and `plan` use it).

Providers are registered by name with an install hint, like fsspec's known implementations; a third
party adds one with an entry point in the `shardrun.providers` group, or `register_provider`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from shardrun.core.errors import BackendNotAvailable, JobFileError

if TYPE_CHECKING:
    from shardrun.core.compute import ClusterMerge, ComputeBackend
    from shardrun.core.ledger import Ledger
    from shardrun.core.secrets import SecretSource
    from shardrun.core.spec import JobSpec
    from shardrun.core.store import Store

ENTRY_POINT_GROUP = "shardrun.providers"


@dataclass(frozen=True)
class Cost:
    """What a run cost (or will cost): node-hours at a VM's hourly price. `usd` None: no price known."""

    vm_size: str
    nodes: int
    node_hours: float
    usd_per_node_hour: float | None
    usd: float | None
    prices_as_of: str
    basis: str  # how node-hours were counted, in words

    def as_dict(self) -> dict[str, Any]:
        return {"vm_size": self.vm_size, "nodes": self.nodes, "node_hours": round(self.node_hours, 4),
                "usd_per_node_hour": self.usd_per_node_hour,
                "usd": None if self.usd is None else round(self.usd, 4),
                "prices_as_of": self.prices_as_of, "basis": self.basis}


@dataclass(frozen=True)
class Leftover:
    """Something a provider found that no live run owns (a container, a pool, a job)."""

    kind: str
    resource_id: str
    run_id: str
    created: float
    why: str


@dataclass(frozen=True)
class GcRequest:
    """What `shardrun gc` asks every provider: leftovers older than `older_than` seconds."""

    older_than: float
    delete: bool
    ledger: Ledger
    spec: JobSpec | None = None  # a job file naming the account(s) to look at
    options: Mapping[str, str] | None = None  # provider-specific (e.g. account_url)
    include_interrupted: bool = False  # also collect runs that could be resumed


class Provider(Protocol):
    """The contract every backend family fulfils. Capabilities are these typed members, never getattr."""

    name: str
    computes: tuple[str, ...]
    stores: tuple[str, ...]
    secret_sources: tuple[str, ...]
    sections: Mapping[str, type[BaseModel]]

    def check_job(self, spec: JobSpec, *, fetch_image: bool) -> None:
        """Raise JobFileError for what this provider cannot run, before anything exists."""
        ...

    def preflight(self, spec: JobSpec, store: Store) -> None:
        """Costly checks (credentials, reachability) before anything is split or uploaded."""
        ...

    def open_compute(self, name: str, spec: JobSpec) -> ComputeBackend: ...

    def open_merge(self, name: str, spec: JobSpec) -> ClusterMerge | None:
        """The merge on the cluster of compute `name` ([merge] where = "cluster"), or None when it
        cannot merge there (validate and run then refuse the job file). Opens no connection."""
        ...

    def open_store(self, name: str, spec: JobSpec | None, home: Path) -> Store: ...

    def open_secrets(self, name: str, section: Any, base_dir: Path) -> SecretSource: ...

    def cleanup(self, spec: JobSpec, resources: Sequence[tuple[str, str]],
                on_deleted: Callable[[str, str], None]) -> list[str]:
        """Delete the run's cloud resources of this provider, each by its exact id."""
        ...

    def collect_leftovers(self, request: GcRequest) -> list[tuple[Leftover, bool]]:
        """Leftovers no live run owns; deleted when `request.delete`. (item, deleted) pairs."""
        ...

    def cost(self, spec: JobSpec, attempts: Sequence[Mapping[str, Any]], now: float) -> Cost | None:
        """The run's cost from its attempts, or None where compute costs nothing (this machine)."""
        ...


@dataclass(frozen=True)
class ProviderEntry:
    """A known provider: where it lives, how to install it, and the names it serves."""

    name: str
    target: str  # "module:attribute"
    hint: str = ""
    computes: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    secret_sources: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()


_KNOWN: dict[str, ProviderEntry] = {
    "local": ProviderEntry("local", "shardrun.providers.local:PROVIDER", "",
                           computes=("local",), stores=("local", "memory"),
                           secret_sources=("env", "file")),
    "azure": ProviderEntry("azure", "shardrun.providers.azure:PROVIDER", "pip install 'shardrun[azure]'",
                           computes=("azure-batch",), stores=("blob",), secret_sources=("keyvault",),
                           sections=("batch", "storage")),
}
_LOADED: dict[str, Provider] = {}
_ENTRY_POINTS_READ = False


def register_provider(entry: ProviderEntry, provider: Provider | None = None) -> None:
    """Add (or replace) a provider; with `provider`, that object is used instead of importing."""
    _KNOWN[entry.name] = entry
    _LOADED.pop(entry.name, None)
    if provider is not None:
        _LOADED[entry.name] = provider


def unregister_provider(name: str) -> None:
    _KNOWN.pop(name, None)
    _LOADED.pop(name, None)


def _entries() -> Iterable[ProviderEntry]:
    global _ENTRY_POINTS_READ
    if not _ENTRY_POINTS_READ:  # third-party providers, read once and only when a name is asked for
        from importlib.metadata import entry_points  # slow to import: only when it is needed

        _ENTRY_POINTS_READ = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in _KNOWN:
                _KNOWN[ep.name] = ProviderEntry(ep.name, ep.value)
    return list(_KNOWN.values())


Names = Callable[[ProviderEntry | Provider], tuple[str, ...]]
_COMPUTES: Names = lambda p: p.computes  # noqa: E731
_STORES: Names = lambda p: p.stores  # noqa: E731
_SECRET_SOURCES: Names = lambda p: p.secret_sources  # noqa: E731
_SECTIONS: Names = lambda p: tuple(p.sections)  # noqa: E731


def _find(names: Names, name: str) -> ProviderEntry | None:
    for entry in list(_KNOWN.values()):
        if name in names(entry):
            return entry
    for entry in _entries():  # a third party's: import it to learn the names it serves
        if entry.name in _LOADED or entry.target.startswith("shardrun."):
            continue
        try:
            provider = load(entry.name)
        except BackendNotAvailable:
            continue
        if name in names(provider):
            return entry
    return None


def load(name: str) -> Provider:
    """The provider called `name`; a missing optional one says how to install it."""
    if name in _LOADED:
        return _LOADED[name]
    entry = _KNOWN.get(name) or next((e for e in _entries() if e.name == name), None)
    if entry is None:
        raise BackendNotAvailable(f"unknown provider {name!r}")
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        extra = f"; install it with: {entry.hint}" if entry.hint else ""
        raise BackendNotAvailable(f"provider {name!r} is not available ({err}){extra}") from err
    provider: Provider = getattr(module, attr or "PROVIDER")
    _LOADED[name] = provider
    return provider


def _known(names: Names) -> list[str]:
    return sorted({n for e in _entries() for n in names(e)})


def compute_names() -> list[str]:
    return _known(_COMPUTES)


def store_names() -> list[str]:
    return _known(_STORES)


def section_names() -> list[str]:
    return _known(_SECTIONS)


def for_compute(name: str) -> Provider:
    entry = _find(_COMPUTES, name)
    if entry is None:
        raise JobFileError(f"unknown compute backend {name!r}; known: {', '.join(compute_names())}")
    return load(entry.name)


def for_store(name: str) -> Provider:
    entry = _find(_STORES, name)
    if entry is None:
        raise JobFileError(f"unknown storage backend {name!r}; known: {', '.join(store_names())}")
    return load(entry.name)


def for_secrets(name: str) -> Provider:
    entry = _find(_SECRET_SOURCES, name)
    if entry is None:
        raise JobFileError(f"unknown secret source {name!r}; known: {', '.join(_known(_SECRET_SOURCES))}")
    return load(entry.name)


def owns_section(name: str) -> bool:
    """Whether some provider owns this job-file section (the built-in table is asked first)."""
    return _find(_SECTIONS, name) is not None


def for_section(name: str) -> Provider | None:
    entry = _find(_SECTIONS, name)
    return load(entry.name) if entry is not None else None


def installed() -> list[Provider]:
    """Every provider that imports here (for gc, which asks them all)."""
    out = []
    for entry in _entries():
        try:
            out.append(load(entry.name))
        except BackendNotAvailable:
            continue
    return out
