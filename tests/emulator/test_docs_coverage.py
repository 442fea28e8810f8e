"""docs/emulator.md lists exactly the operations the emulator implements; the less used ones work."""

from __future__ import annotations

import re
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as bm

from shardrun.emulator.api import HANDLERS
from shardrun.emulator.server import Emulator  # noqa: F401  (registers every handler)

from .conftest import make_job, make_pool, wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "emulator.md"


def test_coverage_table_matches_the_handlers() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## Coverage", 1)[1].split("Not implemented:", 1)[0]
    assert set(re.findall(r"`(\w+_\w+)`", table)) == set(HANDLERS)


def test_pool_update_node_counts_and_job_disable_enable(client: BatchClient) -> None:
    make_pool(client, nodes=2)
    client.update_pool(
        "pool1", bm.BatchPoolUpdateOptions(metadata=[bm.BatchMetadataItem(name="k", value="v")])
    )
    assert client.get_pool("pool1").metadata[0].value == "v"
    wait_for(lambda: all(n.state == "idle" for n in client.list_nodes("pool1")), what="idle nodes")
    counts = list(client.list_pool_node_counts())
    assert counts[0].pool_id == "pool1" and counts[0].dedicated.idle == 2 and counts[0].dedicated.total == 2
    make_job(client)
    client.begin_disable_job(
        "job1", bm.BatchJobDisableOptions(disable_tasks="wait"), polling_interval=0.1
    ).result()
    client.create_task("job1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    assert client.get_job("job1").state == "disabled" and client.get_task("job1", "t").state == "active"
    client.begin_enable_job("job1", polling_interval=0.1).result()
    wait_for(lambda: client.get_task("job1", "t").state == "completed", what="task after enable")
