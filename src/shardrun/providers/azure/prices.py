"""Azure VM prices: the table every cost in shardrun uses (status, report and plan)."""

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
    """USD per node-hour for a pool whose nodes are `spot` (0..1) Spot nodes."""
    return vm.spot * spot + vm.dedicated * (1 - spot)


def run_cost(settings: BatchSection, attempts: Sequence[Mapping[str, Any]], now: float) -> Cost:
    """Each node's busy window (its first attempt's start to its last attempt's end, or now) at the
    pool's hourly price. Boot and idle time are not in the ledger, so this is a lower bound."""
    windows: dict[str, list[float]] = {}
    for a in attempts:
        node = str(a["worker"] or "").split("/", 1)[0]
        if not node:
            continue
        end = a["ended_at"] or now
        w = windows.setdefault(node, [a["started_at"], end])
        w[0], w[1] = min(w[0], a["started_at"]), max(w[1], end)
    node_hours = sum(e - s for s, e in windows.values()) / 3600
    basis = "busy time of each node"
    try:
        vm = choose_vm(settings.vm_size)
    except UsageError:
        return Cost(settings.vm_size, len(windows), node_hours, None, None, PRICES_AS_OF,
                    f"{basis}; no price known for {settings.vm_size}")
    hourly = hourly_price(vm, spot_share(settings))
    return Cost(vm.size, len(windows), node_hours, round(hourly, 4), node_hours * hourly,
                PRICES_AS_OF, basis)
