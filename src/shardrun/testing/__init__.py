"""Contract suites every provider runs, importable (like fsspec.tests.abstract).

- `shardrun.testing.store_contract.StoreContract`: what every store must do.
- `shardrun.testing.compute_contract.ComputeContract`: what every compute backend must do.

Subclass one in your test suite and override its fixtures (docs/architecture.md, "Adding a
provider"). These modules import pytest; shardrun itself never imports them.
"""
