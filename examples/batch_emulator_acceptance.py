"""Acceptance run for the Batch emulator, written against the public SDKs only (azure-batch 15.x and
azure-storage-blob): a container pool, a job, N tasks with output files, then every output checked
in blob storage. It runs unchanged against the real service.

    SHARDRUN_ACCEPT_BATCH_KEY=... SHARDRUN_ACCEPT_STORAGE=... \\
        python examples/batch_emulator_acceptance.py --batch-url http://127.0.0.1:10010 \\
        --account devbatchaccount1 --tasks 500

Secrets come from the environment, never from the command line: SHARDRUN_ACCEPT_BATCH_KEY (the
Batch account key) and SHARDRUN_ACCEPT_STORAGE (a storage connection string). Exit code 0 means all
N outputs were found.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

CHUNK = 100  # the service's limit per task collection
SUBMIT_ATTEMPTS = 6
IMAGE = "localhost/shardrun-acceptance:1"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-url", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--spot", type=int, default=0, help="Spot (low-priority) nodes besides --nodes")
    parser.add_argument("--slots", type=int, default=4, help="task slots per node")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument(
        "--clear-entrypoint",
        action="store_true",
        help="run the command line instead of the image's ENTRYPOINT (containerRunOptions)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the tasks")
    return parser.parse_args()


def container_sas_url(service: BlobServiceClient, container: str) -> str:
    key = service.credential.account_key
    sas = generate_container_sas(
        service.account_name,
        container,
        account_key=key,
        permission=ContainerSasPermissions(read=True, write=True, create=True, add=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=4),
    )
    return f"{service.url.rstrip('/')}/{container}?{sas}"


def submit(client: BatchClient, job_id: str, tasks: list[bm.BatchTaskCreateOptions]) -> None:
    """Add tasks 100 at a time. TaskExists on a resubmission means the first try got through."""
    for start in range(0, len(tasks), CHUNK):
        pending = {t.id: t for t in tasks[start : start + CHUNK]}
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                result = client.create_task_collection(
                    job_id, bm.BatchTaskGroup(task_values=list(pending.values()))
                )
            except HttpResponseError as exc:
                print(f"  task collection failed ({exc.status_code}), retrying", file=sys.stderr)
                time.sleep(min(2**attempt, 10))
                continue
            for item in result.result_values or []:
                code = item.error.code if item.error else None
                if item.status == "success" or code == "TaskExists":
                    pending.pop(item.task_id, None)
            if not pending:
                break
            time.sleep(min(2**attempt, 10))
        if pending:
            raise SystemExit(f"could not add tasks {sorted(pending)[:5]}...")


def main() -> int:
    args = parse_args()
    run = uuid.uuid4().hex[:8]
    service = BlobServiceClient.from_connection_string(os.environ["SHARDRUN_ACCEPT_STORAGE"])
    container = f"acceptance-{run}"
    service.create_container(container)
    dest = container_sas_url(service, container)
    client = BatchClient(
        args.batch_url, AzureNamedKeyCredential(args.account, os.environ["SHARDRUN_ACCEPT_BATCH_KEY"])
    )
    pool_id, job_id = f"accept-pool-{run}", f"accept-job-{run}"
    image = bm.BatchVmImageReference(
        publisher="microsoft-dsvm", offer="ubuntu-hpc", sku="2204", version="latest"
    )
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v3",
            target_dedicated_nodes=args.nodes,
            target_low_priority_nodes=args.spot,
            task_slots_per_node=args.slots,
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=image,
                node_agent_sku_id="batch.node.ubuntu 22.04",
                container_configuration=bm.BatchContainerConfiguration(
                    type=bm.ContainerType.DOCKER_COMPATIBLE, container_image_names=[args.image]
                ),
            ),
        )
    )
    with contextlib.suppress(ResourceExistsError):
        client.create_job(
            bm.BatchJobCreateOptions(
                id=job_id,
                pool_info=bm.BatchPoolInfo(pool_id=pool_id),
                all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.NO_ACTION,
            )
        )
    tasks = []
    for i in range(args.tasks):
        task_id = f"task-{i:05d}"
        tasks.append(
            bm.BatchTaskCreateOptions(
                id=task_id,
                command_line="/bin/sh -c 'echo \"$AZ_BATCH_TASK_ID on $AZ_BATCH_NODE_ID\" > result.txt'",
                container_settings=bm.BatchTaskContainerSettings(
                    image_name=args.image,
                    container_run_options='--entrypoint ""' if args.clear_entrypoint else None,
                ),
                constraints=bm.BatchTaskConstraints(max_task_retry_count=2),
                output_files=[
                    bm.OutputFile(
                        file_pattern="result.txt",
                        destination=bm.OutputFileDestination(
                            container=bm.OutputFileBlobContainerDestination(
                                container_url=dest, path=f"results/{task_id}.txt"
                            )
                        ),
                        upload_options=bm.OutputFileUploadConfiguration(
                            upload_condition=bm.OutputFileUploadCondition.TASK_SUCCESS
                        ),
                    ),
                    bm.OutputFile(
                        file_pattern="../std*.txt",
                        destination=bm.OutputFileDestination(
                            container=bm.OutputFileBlobContainerDestination(
                                container_url=dest, path=f"logs/{task_id}"
                            )
                        ),
                        upload_options=bm.OutputFileUploadConfiguration(
                            upload_condition=bm.OutputFileUploadCondition.TASK_COMPLETION
                        ),
                    ),
                ],
            )
        )
    started = time.monotonic()
    submit(client, job_id, tasks)
    print(f"added {len(tasks)} tasks in {time.monotonic() - started:.1f}s")
    # Terminate on completion only now that every task is in: a job that may complete empty is not.
    client.update_job(
        job_id, bm.BatchJobUpdateOptions(all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB)
    )
    deadline = time.monotonic() + args.timeout
    counts = None
    while time.monotonic() < deadline:
        try:
            counts = client.get_job_task_counts(job_id).task_counts
        except HttpResponseError as exc:
            print(f"  counts unavailable ({exc.status_code}); polling again", file=sys.stderr)
        if counts is not None and counts.completed == args.tasks:
            break
        time.sleep(1.0)
    print(f"task counts: {counts}")
    found = {b.name for b in service.get_container_client(container).list_blobs(name_starts_with="results/")}
    expected = {f"results/{t.id}.txt" for t in tasks}
    missing = sorted(expected - found)
    sample = service.get_blob_client(container, "results/task-00000.txt").download_blob().readall().decode()
    print(f"found {len(expected & found)}/{len(expected)} outputs; task-00000 wrote: {sample.strip()}")
    client.begin_delete_job(job_id, polling_interval=1).result()
    client.begin_delete_pool(pool_id, polling_interval=1).result()
    if missing or counts is None or counts.failed:
        print(
            f"FAILED: {len(missing)} outputs missing (first: {missing[:3]}), counts {counts}", file=sys.stderr
        )
        return 1
    print(f"OK in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
