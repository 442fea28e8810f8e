"""The azure-batch backend end to end: the real azure-batch and azure-storage-blob SDKs against our
Batch emulator and Azurite. Nothing Azure is faked in this file."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from shardrun.cli import main
from shardrun.core.ledger import Ledger
from shardrun.emulator import Emulator
from shardrun.emulator.faults import FaultConfig
from shardrun.images.engine import Engine

from .fixtures.azurite import DEV_KEY, Azurite
from .fixtures.containers import LocalRegistry, busybox_context
from .fixtures.emulator import start_emulator
from .helpers import APPS, PY, write_job


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = start_emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
    monkeypatch.setenv("AZURE_BATCH_KEY", emulator.config.account_key)
    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)


def batch_client(emu: Emulator) -> BatchClient:
    return BatchClient(emu.url, AzureNamedKeyCredential(emu.config.account_name, emu.config.account_key))


def batch_job(folder: Path, emu: Emulator, azurite: Azurite, *, lines: int = 40, per_task: int = 4,
              app: list[str] | None = None, batch: dict[str, Any] | None = None,
              run: dict[str, Any] | None = None) -> Path:
    (folder / "big.txt").write_text("".join(f"line {i}\n" for i in range(lines)))
    return write_job(folder, {
        "app": {"command": app or [PY, str(APPS / "upper.py"), "-i", "{input}", "-o", "{output}"]},
        "split": {"input": "big.txt", "method": "lines", "per_task": per_task},
        "merge": {"method": "concat", "output": "result.txt"},
        "run": {"backend": "azure-batch", "storage": "blob", "retries": 2, "timeout": "2m",
                **(run or {})},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": emu.url, "account_name": emu.config.account_name,
                  "auth": "shared_key", "dedicated_nodes": 2, "task_slots_per_node": 2,
                  "poll_interval": 0.3, **(batch or {})},
    })


def left_in(client: BatchClient) -> tuple[list[str], list[str]]:
    """Pools and jobs still there once deletions already asked for have finished (the service
    answers a delete at once and removes the pool or job afterwards)."""
    deadline = time.monotonic() + 30
    while True:
        pools, jobs = list(client.list_pools()), list(client.list_jobs())
        deleting = [x for x in (*pools, *jobs) if str(x.state).lower().endswith("deleting")]
        if not deleting or time.monotonic() > deadline:
            return sorted(p.id for p in pools), sorted(j.id for j in jobs)
        time.sleep(0.2)


def ledger(home: Path) -> Ledger:
    return Ledger(home / "ledger.sqlite")


def test_a_job_runs_on_batch_and_cleans_up_its_pool_and_job(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = batch_job(tmp_path, emulator, azurite)
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(40))
    run = ledger(shardrun_home).runs()[0]
    client = batch_client(emulator)
    assert left_in(client) == ([], [])
    kinds = ledger(shardrun_home).resources(run.run_id, live_only=False)
    assert (("batch-job", run.run_id) in kinds) and (("batch-pool", f"{run.run_id}-pool") in kinds)
    assert ledger(shardrun_home).resources(run.run_id) == [("namespace", run.run_id)]


# Logs each run of a task, waits while the file $HOLD exists (if set), naps, upper-cases.
COUNTING_APP = ['sh', '-c', 'echo "$SHARDRUN_TASK_ID" >> "$RUNS_LOG"; '
                'while [ -n "${HOLD:-}" ] && [ -e "$HOLD" ]; do sleep 0.05; done; sleep "${NAP:-0}"; '
                'tr a-z A-Z < "$INPUT_PATH" > "$OUTPUT_PATH"']


def runs_logged(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_faults_and_preemption_still_give_every_output_exactly_once(
    azurite: Azurite, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20% of requests answered 429 or 503 (half with Retry-After), Spot nodes preempted while busy.
    faults = FaultConfig(seed=7, throttle_rate=0.1, busy_rate=0.1, retry_after_share=0.5,
                         retry_after_seconds=1, preempt_rate=0.5, max_preemptions=3,
                         preempt_recover_seconds=6.0)  # a poll sees the node preempted, even on a busy machine
    emu = start_emulator(faults=faults)
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        log = tmp_path / "runs.log"
        job = batch_job(tmp_path, emu, azurite, lines=400, per_task=2, app=COUNTING_APP,
                        batch={"dedicated_nodes": 1, "spot_nodes": 3, "task_slots_per_node": 4},
                        run={"retries": 3})
        text = job.read_text().replace("[app]\n", f'[app]\nenv = {{ RUNS_LOG = "{log}", NAP = "0.05" }}\n')
        job.write_text(text)
        assert main(["run", str(job)]) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(400))
        assert emu.faults.request_faults >= 3  # the faults really happened (few requests are made)
        assert emu.faults.preemptions >= 1
        runs = runs_logged(log)
        assert sorted(set(runs)) == [f"task-{n:05d}" for n in range(1, 201)]
        # A preempted node's tasks are requeued and run again: the only way a task runs twice.
        assert len(runs) - 200 <= emu.faults.preemptions * 4
        stored = BlobServiceClient.from_connection_string(azurite.connection_string)
        run_id = ledger(shardrun_home).runs()[0].run_id
        outputs = [b.name for b in stored.get_container_client(run_id).list_blobs("outputs/")]
        assert len(outputs) == len(set(outputs)) == 200
        assert "preempted" in err
    finally:
        emu.stop()


def with_env(job: Path, **env: str) -> Path:
    values = ", ".join(f'{k} = "{v}"' for k, v in env.items())
    job.write_text(job.read_text().replace("[app]\n", f"[app]\nenv = {{ {values} }}\n"))
    return job


def test_kill_9_of_the_client_then_run_again_reattaches_and_runs_nothing_twice(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log, hold = tmp_path / "runs.log", tmp_path / "hold"
    job = with_env(batch_job(tmp_path, emulator, azurite, lines=60, per_task=1, app=COUNTING_APP),
                   RUNS_LOG=str(log), NAP="0.3", HOLD=str(hold))
    client = subprocess.Popen([sys.executable, "-m", "shardrun", "run", "-q", str(job)],
                              env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline and client.poll() is None:
            runs = ledger(shardrun_home).runs() if (shardrun_home / "ledger.sqlite").exists() else []
            if runs and ledger(shardrun_home).counts(runs[0].run_id).get("succeeded", 0) >= 8:
                run_id = runs[0].run_id
                break
            time.sleep(0.1)
        hold.touch()  # tasks that start from now on wait: the run cannot finish before the kill
        client.send_signal(signal.SIGKILL)
        client.wait()
        assert run_id is not None, client.stderr.read() if client.stderr else ""
        assert ledger(shardrun_home).counts(run_id).get("succeeded", 0) < 60  # killed mid-run
    finally:
        hold.unlink(missing_ok=True)

    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert f"re-attached to Batch job {run_id}" in err
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(60))
    runs = runs_logged(log)
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 60  # each task ran exactly once
    jobs = [r for k, r in ledger(shardrun_home).resources(run_id, live_only=False) if k == "batch-job"]
    assert jobs == [run_id]  # no second job: the same one, re-attached
    assert left_in(batch_client(emulator))[1] == []


def test_retry_failed_reruns_only_the_failed_tasks_in_a_new_job(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log, poison = tmp_path / "runs.log", tmp_path / "poison"
    poison.write_text("")
    app = ['sh', '-c', 'echo "$SHARDRUN_TASK_ID" >> "$RUNS_LOG"; '
           'if [ -e "$POISON" ] && grep -q "line 7" "$INPUT_PATH"; then echo "bad line 7" >&2; exit 3; fi; '
           'tr a-z A-Z < "$INPUT_PATH" > "$OUTPUT_PATH"']
    job = with_env(batch_job(tmp_path, emulator, azurite, lines=20, per_task=2, app=app,
                             run={"retries": 1}), RUNS_LOG=str(log), POISON=str(poison))
    assert main(["run", str(job)]) == 1
    said = capsys.readouterr()
    err = said.out + said.err
    assert "task-00004" in err and "bad line 7" in err  # the failed task, with its stderr
    run_id = ledger(shardrun_home).runs()[0].run_id
    assert runs_logged(log).count("task-00004") == 2  # first attempt and one Batch retry
    assert main(["logs", run_id, "task-00004", "--attempt", "2"]) == 0
    assert "bad line 7" in capsys.readouterr().out

    poison.unlink()
    assert main(["retry", run_id, "--failed"]) == 0, capsys.readouterr().err
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(20))
    runs = runs_logged(log)
    assert runs.count("task-00004") == 3 and all(runs.count(f"task-{n:05d}") == 1
                                                 for n in range(1, 11) if n != 4)
    jobs = [r for k, r in ledger(shardrun_home).resources(run_id, live_only=False) if k == "batch-job"]
    assert jobs == [run_id, f"{run_id}-retry1"]
    attempts = [a["attempt"] for a in ledger(shardrun_home).attempts(run_id, "task-00004")]
    assert attempts == [1, 2, 3]
    # The report of a Batch run: attempts per node, priced at the run's own VM size.
    report = tmp_path / "report.html"
    assert main(["report", run_id, "-o", str(report)]) == 0
    html = report.read_text()
    nodes = {a["worker"] for a in ledger(shardrun_home).attempts(run_id)}
    assert "12 attempts on" in html and all(n in html for n in nodes)
    assert "Standard_D2s_v5" in html and "cost (estimated)" not in html


def test_cleanup_deletes_exactly_the_runs_pool_job_and_container_not_a_decoys(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = batch_job(tmp_path, emulator, azurite, lines=8, per_task=4, batch={"keep_pool": True})
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    run_id = ledger(shardrun_home).runs()[0].run_id
    client = batch_client(emulator)
    assert [p.id for p in client.list_pools()] == [f"{run_id}-pool"]  # kept, warm

    # A decoy run whose ids contain this run's id: a substring match would delete it.
    from azure.batch import models as bm
    decoy_pool, decoy_job = f"{run_id}-pool-decoy", f"{run_id}-decoy"
    client.create_pool(bm.BatchPoolCreateOptions(
        id=decoy_pool, vm_size="standard_d2s_v3", target_dedicated_nodes=0,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="microsoft-dsvm", offer="ubuntu-hpc",
                                                     sku="2404", version="latest"),
            node_agent_sku_id="batch.node.ubuntu 24.04")))
    client.create_job(bm.BatchJobCreateOptions(id=decoy_job, pool_info=bm.BatchPoolInfo(pool_id=decoy_pool)))
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.create_container(f"{run_id}-decoy")

    assert main(["cleanup", run_id]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{run_id}-pool" in out
    assert sorted(p.id for p in client.list_pools()) == [decoy_pool]
    assert sorted(j.id for j in client.list_jobs()) == [decoy_job]
    names = {c.name for c in blobs.list_containers()}
    assert run_id not in names and f"{run_id}-decoy" in names
    assert ledger(shardrun_home).resources(run_id) == []


def test_no_secret_reaches_the_ledger_logs_or_output(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = ["sh", "-c", 'env > "$OUTPUT_PATH"']
    job = batch_job(tmp_path, emulator, azurite, lines=4, per_task=2, app=app)
    assert main(["run", str(job)]) == 0
    said = capsys.readouterr()
    run_id = ledger(shardrun_home).runs()[0].run_id
    assert main(["status", run_id]) == 0
    said_more = capsys.readouterr()
    task_env = (tmp_path / "result.txt").read_text()
    db = (shardrun_home / "ledger.sqlite").read_bytes()
    for secret in (emulator.config.account_key, DEV_KEY):
        for text in (said.out, said.err, said_more.out, task_env):
            assert secret not in text
        assert secret.encode() not in db
    assert "sig=" not in said.err + said.out + task_env and b"sig=" not in db
    assert "INPUT_PATH=/" in task_env and "SHARDRUN_TASK_ID=task-00001" in task_env
    assert "AZ_BATCH_TASK_ID=1\n" in task_env  # Batch task ids are numbers (task dependencies)
    # status prices the nodes' busy time at the VM size's hourly price
    assert "cost so far: about $" in said_more.out and "Standard_D2s_v5" in said_more.out
    from shardrun import run_status
    cost = run_status(run_id, home=shardrun_home)["cost"]
    assert cost["nodes"] >= 1 and cost["usd"] == pytest.approx(cost["node_hours"] * 0.096, abs=1e-3)


def test_a_container_app_on_an_autoscaled_spot_pool_with_a_private_registry(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, podman: Engine, registry: LocalRegistry,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few hundred tasks of an image pushed to a registry with a login: the pool gets the
    registry's credentials, nodes come and go with the pending tasks, the image's ENTRYPOINT runs."""
    repo = f"shardrun-batch-{secrets.token_hex(4)}"
    busybox_context(tmp_path)
    podman.run("build", "-q", "-t", f"localhost/{repo}:1.0", "-t", f"localhost/{repo}:latest",
               str(tmp_path), timeout=600)
    monkeypatch.setenv("REGISTRY_PW", registry.password)
    ref = f"{registry.host}/{repo}:1.0"
    emu = start_emulator(container_runtime="podman")
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
        job = batch_job(tmp_path, emu, azurite, lines=480, per_task=2,
                        batch={"dedicated_nodes": 0, "autoscale": True, "autoscale_spot": True,
                               "max_nodes": 3, "task_slots_per_node": 4, "autoscale_interval": 0.5})
        text = job.read_text().replace(
            f'[app]\ncommand = ["{PY}", "{APPS / "upper.py"}", "-i", "{{input}}", "-o", "{{output}}"]\n',
            f'[app]\nimage = "{ref}"\n')
        text += (f'[image]\nname = "localhost/{repo}"\nversion = "1.0"\nregistry = "{registry.host}"\n'
                 f'username = "{registry.username}"\npassword_secret = "REGISTRY_PW"\ntls_verify = false\n')
        job.write_text(text)
        assert main(["run", str(job)]) == 3  # not pushed yet: stopped before any pool exists
        assert "not in its registry" in capsys.readouterr().err
        assert list(batch_client(emu).list_pools()) == []
        assert ledger(shardrun_home).runs() == []  # ... and before anything was split or uploaded

        assert main(["image", "push", "-j", str(job)]) == 0, capsys.readouterr().err
        assert main(["run", str(job)]) == 0, capsys.readouterr().out
        # upper.sh in the image upper-cases INPUT_PATH into OUTPUT_PATH
        assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(480))
        run_id = ledger(shardrun_home).runs()[0].run_id
        attempts = ledger(shardrun_home).attempts(run_id)
        workers = {a["worker"] for a in attempts}
        assert 1 < len(workers) <= 3  # autoscale brought several nodes, never more than max_nodes
        assert len([a for a in attempts if a["result"] == "succeeded"]) == 240
        assert left_in(batch_client(emu))[0] == []
    finally:
        emu.stop()
        listed = podman.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        mine = [r for r in listed if f"/{repo}:" in r]
        if mine:
            podman.call("rmi", "-f", *mine)


def test_gc_finds_leaked_pools_and_jobs_by_metadata_only(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from azure.batch import models as bm

    job = batch_job(tmp_path, emulator, azurite, lines=4, per_task=2, batch={"keep_pool": True})
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    run_id = ledger(shardrun_home).runs()[0].run_id
    client = batch_client(emulator)
    vm = bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(publisher="microsoft-dsvm", offer="ubuntu-hpc",
                                                 sku="2404", version="latest"),
        node_agent_sku_id="batch.node.ubuntu 24.04")
    # A leak from a client that died elsewhere (its run is not in this ledger) ...
    client.create_pool(bm.BatchPoolCreateOptions(
        id="lost-pool", vm_size="standard_d2s_v3", target_dedicated_nodes=0, virtual_machine_configuration=vm,
        metadata=[bm.BatchMetadataItem(name="shardrun.run", value="job-000000-lost00")]))
    # ... and the user's own pool, named like ours but without our metadata: never touched.
    client.create_pool(bm.BatchPoolCreateOptions(
        id=f"{run_id}-pool-mine", vm_size="standard_d2s_v3", target_dedicated_nodes=0,
        virtual_machine_configuration=vm))
    capsys.readouterr()
    assert main(["gc", "--job", str(job), "--older-than", "0s"]) == 0
    listed = capsys.readouterr().out
    assert f"would delete Batch pool {run_id}-pool (run {run_id}, run succeeded" in listed
    assert "would delete Batch pool lost-pool (run job-000000-lost00, not in this ledger" in listed
    assert f"{run_id}-pool-mine" not in listed
    assert sorted(p.id for p in client.list_pools()) == sorted(
        [f"{run_id}-pool", "lost-pool", f"{run_id}-pool-mine"])  # listing deletes nothing
    assert main(["gc", "--job", str(job), "--older-than", "0s", "--delete"]) == 0
    assert [p.id for p in client.list_pools()] == [f"{run_id}-pool-mine"]


def test_ctrl_c_detaches_and_the_tasks_finish_without_the_client(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log, hold = tmp_path / "runs.log", tmp_path / "hold"
    hold.touch()  # the tasks wait until the client is gone: the run cannot end before the Ctrl-C
    job = with_env(batch_job(tmp_path, emulator, azurite, lines=24, per_task=1, app=COUNTING_APP),
                   RUNS_LOG=str(log), NAP="0.3", HOLD=str(hold))
    client = subprocess.Popen([sys.executable, "-m", "shardrun", "run", str(job)],
                              env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(runs_logged(log)) < 3:
            assert client.poll() is None, client.communicate()
            time.sleep(0.05)
        assert len(runs_logged(log)) >= 3, "the tasks never started"
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=60)
    finally:
        hold.unlink()
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode != 0
    assert b"detached from run" in err and b"shardrun cleanup" in err
    run_id = ledger(shardrun_home).runs()[0].run_id
    batch = batch_client(emulator)
    deadline = time.monotonic() + 120  # a bound on a hung job, not a timing assertion
    while time.monotonic() < deadline and not str(batch.get_job(run_id).state).lower().endswith("completed"):
        time.sleep(0.2)  # the job finishes on its own: terminatejob, no client needed
    assert len(runs_logged(log)) == 24

    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(24))
    assert len(runs_logged(log)) == 24  # re-attaching read the results; nothing ran again


def test_wrong_batch_credentials_stop_the_run_before_anything_is_uploaded(
    azurite: Azurite, emulator: Emulator, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
    monkeypatch.setenv("AZURE_BATCH_KEY", "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmU=")
    job = batch_job(tmp_path, emulator, azurite)
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    before = {c.name for c in blobs.list_containers()}
    assert main(["run", str(job)]) == 3
    err = capsys.readouterr().err
    assert "AuthenticationFailed" in err and "[batch] auth" in err
    assert "d3Jvbmcta2V5" not in err
    assert ledger(shardrun_home).runs() == []
    assert {c.name for c in blobs.list_containers()} == before  # nothing uploaded


def test_unusable_nodes_are_reported_and_the_run_still_completes(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # seed 0: two of the four nodes fail to start
    emu = start_emulator(faults=FaultConfig(seed=0, node_start_failure_rate=0.5))
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
        job = batch_job(tmp_path, emu, azurite, lines=12, per_task=2, batch={"dedicated_nodes": 4})
        assert main(["run", str(job)]) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert "2 of 4 node(s)" in err and "unusable" in err and "try another vm_size or image" in err
        assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(12))
    finally:
        emu.stop()


def test_a_pool_whose_every_node_is_unusable_stops_the_run_and_is_deleted(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # seed 3: all four nodes fail to start, so no task can ever run
    emu = start_emulator(faults=FaultConfig(seed=3, node_start_failure_rate=0.5))
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
        job = batch_job(tmp_path, emu, azurite, lines=12, per_task=2,
                        batch={"dedicated_nodes": 4, "poll_interval": 0.2})
        assert main(["run", str(job)]) == 3
        err = capsys.readouterr().err
        assert "every node of pool" in err and "try another vm_size or image" in err
        client = batch_client(emu)
        assert left_in(client) == ([], [])
    finally:
        emu.stop()
