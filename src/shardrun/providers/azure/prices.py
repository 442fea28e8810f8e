"""Azure VM prices, and the one way shardrun prices node-hours: `hourly_price(vm, spot_share)`.

`status` and `report` price a run's busy node-hours with it (`run_cost`, `estimate_cost`), and
`plan` prices its estimated node-hours with it too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardrun.core.errors import UsageError
from shardrun.core.provider import Cost
from shardrun.providers.azure.settings import BatchSection

# Indicative list prices (USD per hour, Linux, pay-as-you-go, East US) from Azure's public price list.
# Spot prices move with demand; the figures are typical, not quotes. Override with --price/--prices.
PRICES_AS_OF = "2025-01"
PRICES_SOURCE = "Azure list prices, East US, Linux; Spot prices are typical and change daily"


@dataclass(frozen=True)
class VmPrice:
    size: str
    vcpus: int
    dedicated: float  # USD per node-hour
    spot: float


PRICES: dict[str, VmPrice] = {
    p.size.lower(): p
    for p in (
        VmPrice("Standard_D2s_v5", 2, 0.096, 0.0115),
        VmPrice("Standard_D4s_v5", 4, 0.192, 0.023),
        VmPrice("Standard_D8s_v5", 8, 0.384, 0.046),
        VmPrice("Standard_D16s_v5", 16, 0.768, 0.092),
        VmPrice("Standard_D32s_v5", 32, 1.536, 0.184),
        VmPrice("Standard_D4as_v5", 4, 0.172, 0.021),
        VmPrice("Standard_D8as_v5", 8, 0.344, 0.041),
        VmPrice("Standard_F2s_v2", 2, 0.0846, 0.0101),
        VmPrice("Standard_F4s_v2", 4, 0.169, 0.0203),
        VmPrice("Standard_F8s_v2", 8, 0.338, 0.0406),
        VmPrice("Standard_F16s_v2", 16, 0.677, 0.0812),
        VmPrice("Standard_F32s_v2", 32, 1.353, 0.162),
        VmPrice("Standard_E4s_v5", 4, 0.252, 0.030),
        VmPrice("Standard_E8s_v5", 8, 0.504, 0.060),
        VmPrice("Standard_E16s_v5", 16, 1.008, 0.121),
        VmPrice("Standard_HB120rs_v3", 120, 3.60, 0.36),
    )
}
DEFAULT_VM = "Standard_D4s_v5"


def load_prices(path: Path | None) -> dict[str, VmPrice]:
    """The built-in table, with the sizes of a TOML file added or replaced.

    The file has one table per size: [Standard_D4s_v5] vcpus = 4, dedicated = 0.19, spot = 0.02
    """
    table = dict(PRICES)
    if path is None:
        return table
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"cannot read price file {path}: {err}") from None
    for size, row in data.items():
        if not isinstance(row, dict):
            continue  # e.g. a top-level `as_of = "..."` note
        try:
            dedicated = float(row["dedicated"])
            price = VmPrice(size, int(row["vcpus"]), dedicated, float(row.get("spot", dedicated)))
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{path}: [{size}] needs vcpus and dedicated (and optionally spot)") from None
        table[size.lower()] = price
    return table


def vm_price(size: str, table: dict[str, VmPrice] | None = None) -> VmPrice:
    table = table if table is not None else PRICES
    try:
        return table[size.lower()]
    except KeyError:
        known = ", ".join(p.size for p in table.values())
        raise UsageError(f"no price for VM size {size!r}; give --price, or one of: {known}") from None


def choose_vm(size: str, *, prices_file: Path | None = None, price: float | None = None,
              spot_price: float | None = None, vcpus: int | None = None) -> VmPrice:
    """The VM size's row of the price table, with any price the user gave in its place."""
    table = load_prices(prices_file)
    if size.lower() in table:
        row = table[size.lower()]
    elif price is not None:
        row = VmPrice(size, vcpus or 1, price, spot_price if spot_price is not None else price)
    else:
        row = vm_price(size, table)  # raises, listing the known sizes
    return VmPrice(row.size, vcpus or row.vcpus, price if price is not None else row.dedicated,
                   spot_price if spot_price is not None else row.spot)


def spot_share(settings: BatchSection) -> float:
    """The share of the pool's nodes that are Spot nodes (autoscale scales one kind only)."""
    if settings.autoscale:
        return 1.0 if settings.autoscale_spot else 0.0
    total = settings.spot_nodes + settings.dedicated_nodes
    return settings.spot_nodes / total if total else 0.0


def hourly_price(vm: VmPrice, spot: float) -> float:
    """USD per node-hour for a pool whose nodes are `spot` (0..1) Spot nodes. The one price of a
    node-hour in shardrun: `status`, `report` and `plan` all go through it."""
    return vm.spot * spot + vm.dedicated * (1 - spot)


def mix_label(spot: float) -> str:
    """'dedicated', 'Spot' or '25% Spot': how a pool's nodes are priced, in words."""
    if spot <= 0:
        return "dedicated"
    return "Spot" if spot >= 1 else f"{spot:.0%} Spot"


BUSY_BASIS = "each node's busy time, from its first attempt's start to its last attempt's end"


def busy_windows(attempts: Sequence[Mapping[str, Any]], now: float, *,
                 one_node: bool = False) -> dict[str, tuple[float, float]]:
    """Each node's busy window: its first attempt's start to its last attempt's end (or now, while
    an attempt runs). A worker `node-id/slot` is on node `node-id`; `one_node` counts every worker
    as one node (a local run: this machine)."""
    windows: dict[str, tuple[float, float]] = {}
    for a in attempts:
        node = "this machine" if one_node else str(a["worker"] or "").split("/", 1)[0]
        if not node:
            continue
        start, end = float(a["started_at"]), float(a["ended_at"] or now)
        first, last = windows.get(node, (start, end))
        windows[node] = (min(first, start), max(last, end))
    return windows


def busy_cost(vm_size: str, hourly: float | None, attempts: Sequence[Mapping[str, Any]], now: float,
              *, basis: str, one_node: bool = False) -> Cost:
    """The nodes' busy windows at `hourly` USD per node-hour (None: no price known). Boot and idle
    time are not in the ledger, so this is a lower bound of what the nodes cost."""
    windows = busy_windows(attempts, now, one_node=one_node)
    node_hours = sum(end - start for start, end in windows.values()) / 3600
    return Cost(vm_size, len(windows), node_hours, None if hourly is None else round(hourly, 4),
                None if hourly is None else node_hours * hourly, PRICES_AS_OF, basis)


def run_cost(settings: BatchSection, attempts: Sequence[Mapping[str, Any]], now: float) -> Cost:
    """A Batch run's cost: its nodes' busy time at the pool's price (its VM size and Spot share)."""
    try:
        vm = choose_vm(settings.vm_size)
    except UsageError:
        return busy_cost(settings.vm_size, None, attempts, now,
                         basis=f"{BUSY_BASIS}, with no price known for {settings.vm_size}")
    share = spot_share(settings)
    return busy_cost(vm.size, hourly_price(vm, share), attempts, now,
                     basis=f"{BUSY_BASIS}, at the {mix_label(share)} price")


ESTIMATE_BASIS = ("an estimate: this machine as one dedicated node of that size, busy from the first "
                  "attempt's start to the last attempt's end")


def estimate_cost(vm: VmPrice, attempts: Sequence[Mapping[str, Any]], now: float) -> Cost:
    """What a run on this machine would have cost as one dedicated node of `vm`: the same pricing as
    a Batch run's, with every worker on one node."""
    return busy_cost(vm.size, hourly_price(vm, 0.0), attempts, now, basis=ESTIMATE_BASIS,
                     one_node=True)
