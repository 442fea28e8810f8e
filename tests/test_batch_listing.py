"""The monitor's task listing (batch_monitor.list_task_pages): List Tasks read as JSON, page by page,
through the SDK client's pipeline, against the project's Batch emulator."""

from __future__ import annotations

import pytest

pytest.importorskip("azure.batch")
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from shardrun.providers.azure.batch_listing import COMPLETED_SELECT, list_task_pages, task_record
from shardrun.providers.azure.batch_monitor import error_code, explain, task_events

from .fixtures.emulator import start_emulator


def test_pages_follow_next_links_and_records_hold_what_the_monitor_reads() -> None:
    emu = start_emulator()
    try:
        client = BatchClient(emu.url, AzureNamedKeyCredential(emu.config.account_name, emu.config.account_key))
        vm = bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="p", offer="o", sku="s"), node_agent_sku_id="n")
        client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="x", virtual_machine_configuration=vm))
        client.create_job(bm.BatchJobCreateOptions(id="job_1", pool_info=bm.BatchPoolInfo(pool_id="p")))
        ids = [f"t{i:03d}" for i in range(25)]
        client.create_task_collection("job_1", bm.BatchTaskGroup(task_values=[
            bm.BatchTaskCreateOptions(id=i, command_line="x", display_name=f"{i} attempt 3") for i in ids]))
        for i in ids[:5]:
            client.terminate_task("job_1", i)  # the pool has no node: the others stay active

        pages = list(list_task_pages(client, "job_1", ["id", "state"], page_size=10))
        assert [len(p) for p in pages] == [10, 10, 5]
        assert sorted(t["id"] for p in pages for t in p) == ids

        query = "state eq 'completed' and stateTransitionTime ge DateTime'2000-01-01T00:00:00Z'"
        done = [task_record(t) for p in list_task_pages(client, "job_1", COMPLETED_SELECT, query) for t in p]
        assert sorted(t.id for t in done) == ids[:5]
        assert all(t.completed and t.display_name == f"{t.id} attempt 3" for t in done)
        assert all(t.state_transition_time is not None and t.state_transition_time.tzinfo for t in done)
        final = task_events(done[0], first_attempt=3, now=0.0)[-1]
        # terminated before it ran: failureInfo TaskEnded, which the monitor calls a timeout
        assert final.final and final.attempt == 3 and final.result == "timeout"
        assert final.reason == "timed out (TaskEnded)"

        with pytest.raises(HttpResponseError) as caught:
            list(list_task_pages(client, "no-such-job", ["id"]))
        assert error_code(caught.value) == "JobNotFound"
        assert "JobNotFound" in str(explain(caught.value, "list the tasks of job no-such-job"))
    finally:
        emu.stop()
