"""A local emulator of the Azure Batch data plane (REST api-version 2025-06-01), for offline runs and tests.

    with Emulator(EmulatorConfig(port=0)) as emu:
        key = AzureNamedKeyCredential(emu.config.account_name, emu.config.account_key)
        client = BatchClient(emu.url, key)

See docs/emulator.md for what it covers and where it knowingly differs from the service. The names
below load on first use, so `shardrun --help` does not import the emulator's dependencies.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DEV_ACCOUNT_KEY": ".config",
    "DEV_ACCOUNT_NAME": ".config",
    "EmulatorConfig": ".config",
    "FaultConfig": ".faults",
    "Emulator": ".server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
