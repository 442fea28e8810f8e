"""Container overhead: the same job through the process runtime and the podman runtime (issue 3, item 7).

N one-line inputs, one task each, the same trivial app (`cp IN OUT`): once as host processes, once
as containers of a FROM scratch busybox image built here. Both runs go through the shardrun CLI end
to end, must produce every output, and alternate in order between repeats; medians are reported.
It prints the per-task cost of each and the container/process ratio.

    .venv/bin/python bench/container_overhead.py              # 100 tasks, concurrency 2, 3 repeats
    .venv/bin/python bench/container_overhead.py --quick      # 20 tasks, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

IMAGE_FILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""


class BenchError(Exception):
    """A run failed or lost outputs: its time would mean nothing."""


def shardrun_argv() -> list[str]:
    beside = Path(sys.executable).with_name("shardrun")
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "shardrun"]


def build_image(folder: Path) -> str:
    busybox = shutil.which("busybox")
    if busybox is None or shutil.which("podman") is None:
        raise BenchError("needs podman and busybox-static: run scripts/install-test-deps.sh")
    folder.mkdir()
    shutil.copyfile(busybox, folder / "busybox")
    (folder / "busybox").chmod(0o755)
    (folder / "Containerfile").write_text(IMAGE_FILE)
    ref = f"localhost/shardrun-bench-{secrets.token_hex(4)}:1"
    subprocess.run(["podman", "build", "-q", "-t", ref, str(folder)], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    return ref


def write_job(folder: Path, count: int, jobs: int, image: str | None) -> Path:
    inputs = folder / "inputs"
    inputs.mkdir(parents=True)
    for i in range(count):
        (inputs / f"in-{i:06d}.txt").write_text(f"line {i}\n")
    run: dict[str, object] = {"concurrency": jobs, "retries": 0}
    if image is None:
        app: dict[str, object] = {"command": ["cp", "{input}", "{output}"]}
        run["runtime"] = "process"
    else:
        app = {"image": image, "command": ["/bin/cp", "{input}", "{output}"]}
        run |= {"runtime": "podman", "container_options": ["--network", "none"]}
    job = folder / "job.toml"
    job.write_text(tomli_w.dumps({
        "app": app,
        "split": {"input": "inputs", "method": "files", "per_task": 1},
        "merge": {"method": "concat", "output": "merged.txt"},
        "run": run,
    }), encoding="utf-8")
    return job


def time_run(workdir: Path, count: int, jobs: int, image: str | None) -> float:
    folder = Path(tempfile.mkdtemp(dir=workdir))
    job = write_job(folder, count, jobs, image)
    env = os.environ | {"SHARDRUN_HOME": str(folder / "home")}
    started = time.perf_counter()
    proc = subprocess.run([*shardrun_argv(), "run", "-q", str(job)], env=env, capture_output=True,
                          timeout=600 + count * 5)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"{'podman' if image else 'process'} run failed: "
                         f"{proc.stderr.decode(errors='replace')[-500:]}")
    lines = (folder / "merged.txt").read_text().splitlines()
    if sorted(lines) != sorted(f"line {i}" for i in range(count)):
        raise BenchError(f"{'podman' if image else 'process'} run lost outputs")
    shutil.rmtree(folder, ignore_errors=True)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="concurrency for both runtimes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.repeats = 20, 1
    workdir = Path(tempfile.mkdtemp(prefix="shardrun-bench-"))
    image = None
    try:
        image = build_image(workdir / "image")
        times: dict[str, list[float]] = {"process": [], "podman": []}
        for r in range(args.repeats):
            order = ["process", "podman"] if r % 2 == 0 else ["podman", "process"]
            for name in order:
                times[name].append(time_run(workdir, args.tasks, args.jobs,
                                            image if name == "podman" else None))
        med = {k: statistics.median(v) for k, v in times.items()}
        per_task = {k: v / args.tasks for k, v in med.items()}
        ratio = med["podman"] / med["process"]
        if args.json:
            print(json.dumps({"tasks": args.tasks, "jobs": args.jobs, "median_s": med,
                              "per_task_s": per_task, "ratio": ratio}))
        else:
            slot = {k: v * args.jobs for k, v in per_task.items()}  # what one task holds a slot for
            print(f"{args.tasks} tasks, concurrency {args.jobs}, median of {args.repeats} run(s):")
            print("  runtime   total      per task   slot time per task")
            for k in ("process", "podman"):
                print(f"  {k:8s} {med[k]:6.2f} s  {per_task[k] * 1000:7.1f} ms  {slot[k] * 1000:9.1f} ms")
            print(f"  ratio podman/process: {ratio:.1f}x "
                  f"(a container adds about {(slot['podman'] - slot['process']) * 1000:.0f} ms per task)")
        return 0
    except BenchError as err:
        print(f"container_overhead: {err}", file=sys.stderr)
        return 1
    finally:
        if image:
            subprocess.run(["podman", "rmi", "-f", image], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
