"""pytest stays a test-only dependency: shardrun, its CLI and its providers never import it."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import shardrun, shardrun.cli.main, shardrun.providers.local, shardrun.providers.azure
leaked = sorted(m for m in sys.modules if m == "pytest" or m.startswith("shardrun.testing"))
print(",".join(leaked))
"""


def test_shardrun_imports_neither_pytest_nor_its_contract_suites() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
