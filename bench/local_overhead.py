"""Local overhead: shardrun vs `xargs -P` vs GNU `parallel` on N trivial tasks (issue 2, item 11).

The same real program (`cp IN OUT`) runs once per input file, with the same concurrency, three ways,
side by side in one run. The order of the three alternates between repeats and the median is
reported. Each tool must produce all N outputs, or the benchmark fails. Then shardrun alone runs
1,000 to 10,000 tasks, to show whether its time per task stays flat (linear growth).

shardrun's time is end to end, as a user sees it: CLI start, split, ledger, the tasks, and the concat
merge. xargs and parallel only run the app.

    .venv/bin/python bench/local_overhead.py            # 2,000 tasks, 3 repeats, 1k..10k scaling
    .venv/bin/python bench/local_overhead.py --quick    # a fast smoke run
    .venv/bin/python bench/local_overhead.py -n 500 --input-kib 1024 --sizes ''
                                                        # bigger inputs: what copying them costs
    PYTHONPATH=src .venv/bin/python bench/local_overhead.py --sizes '' --vs-src ../main/src
                                                        # this checkout against another, side by side

The job uses the `files` splitter (one input file per task). shardrun copies each input into its
store (a reflink where the filesystem can), never links it, so `--input-kib` shows that cost.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tomli_w

APP = "cp"  # the same real program for all three: cp IN OUT
TARGET_VS_PARALLEL = 1.0  # shardrun no slower than GNU parallel
TARGET_VS_XARGS = 1.5  # shardrun within 1.5x of xargs -P
LINEAR_TOLERANCE = 1.3  # cost of an extra task at the largest sizes vs the smallest


class BenchError(Exception):
    """A tool failed or did not produce all its outputs: the numbers would mean nothing."""


def make_inputs(folder: Path, count: int, kib: int = 0) -> list[str]:
    """`count` files of one line, or of `kib` KiB of lines; zero-padded names, so every tool sees
    the same task order."""
    folder.mkdir(parents=True)
    width = max(6, len(str(count)))
    names = []
    for i in range(1, count + 1):
        name = f"in-{i:0{width}d}.txt"
        line = f"line {i}\n".encode()
        body = line * max(1, kib * 1024 // len(line))
        (folder / name).write_bytes(body)
        names.append(name)
    return names


def shardrun_argv() -> list[str]:
    """The installed CLI beside this interpreter (what a user runs), else `python -m shardrun`."""
    beside = Path(sys.executable).with_name("shardrun")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("shardrun")
    return [found] if found else [sys.executable, "-m", "shardrun"]


def _timeout(count: int) -> float:
    return 120.0 + count * 0.05  # generous: 50 ms per task on top of two minutes


def _check(proc: subprocess.CompletedProcess[bytes], tool: str) -> None:
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"{tool} exited {proc.returncode}: {' | '.join(tail)}")


def _verify_folder(tool: str, inputs: Path, outputs: Path, names: list[str]) -> None:
    made = sum(1 for _ in outputs.iterdir())
    if made != len(names):
        raise BenchError(f"{tool}: {made} outputs for {len(names)} inputs")
    for n in names:
        if (outputs / n).read_bytes() != (inputs / n).read_bytes():
            raise BenchError(f"{tool}: output {n} differs from its input")


def run_shardrun(inputs: Path, names: list[str], jobs: int, scratch: Path,
                 src: Path | None = None) -> float:
    """One fresh run (fresh SHARDRUN_HOME) through the CLI; the merged result is checked. `src`:
    another checkout's src/ to run instead of the installed shardrun (`--vs-src`)."""
    home, merged, job = scratch / "home", scratch / "merged.txt", scratch / "job.toml"
    job.write_text(tomli_w.dumps({
        "app": {"command": [APP, "{input}", "{output}"]},
        "split": {"input": str(inputs), "method": "files", "per_task": 1},
        "merge": {"method": "concat", "output": str(merged)},
        "run": {"concurrency": jobs},
    }), encoding="utf-8")
    env = os.environ | {"SHARDRUN_HOME": str(home)}
    if src is not None:  # the same command, loading that checkout's package first
        env["PYTHONPATH"] = str(src)
    start = time.perf_counter()
    proc = subprocess.run([*shardrun_argv(), "run", str(job)], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=_timeout(len(names)), check=False)
    elapsed = time.perf_counter() - start
    _check(proc, "shardrun")
    expected = b"".join((inputs / n).read_bytes() for n in names)
    if not merged.is_file() or merged.read_bytes() != expected:
        raise BenchError(f"shardrun: merged result {merged} is not the {len(names)} inputs in order")
    return elapsed


def _run_tool(tool: str, argv: list[str], inputs: Path, names: list[str], scratch: Path) -> float:
    """`argv` (xargs or parallel) runs `APP NAME OUT/NAME` for each NUL-separated name on its stdin."""
    out = scratch / "out"
    out.mkdir()
    start = time.perf_counter()
    proc = subprocess.run([*argv, APP, "{}", f"{out}/{{}}"], cwd=inputs, input="\0".join(names).encode(),
                          capture_output=True, timeout=_timeout(len(names)), check=False)
    elapsed = time.perf_counter() - start
    _check(proc, tool)
    _verify_folder(tool, inputs, out, names)
    return elapsed


def run_xargs(inputs: Path, names: list[str], jobs: int, scratch: Path) -> float:
    return _run_tool("xargs", ["xargs", "-0", "-P", str(jobs), "-I", "{}"], inputs, names, scratch)


def run_parallel(inputs: Path, names: list[str], jobs: int, scratch: Path) -> float:
    argv = ["parallel", "--will-cite", "-0", "-j", str(jobs)]
    return _run_tool("parallel", argv, inputs, names, scratch)


Runner = Callable[[Path, list[str], int, Path], float]
TOOLS: dict[str, Runner] = {"shardrun": run_shardrun, "xargs -P": run_xargs, "parallel": run_parallel}


def timed(tool: Runner, inputs: Path, names: list[str], jobs: int, base: Path) -> float:
    # Nothing is deleted until the end: on this disk, deleting a tree of thousands of files slows
    # every file operation for seconds afterwards, so it would tax whichever tool ran next.
    scratch = Path(tempfile.mkdtemp(dir=base, prefix="run-"))
    return tool(inputs, names, jobs, scratch)


VS = "shardrun B"  # the name of the second shardrun, from --vs-src


def compare(base: Path, count: int, jobs: int, repeats: int, kib: int = 0,
            vs_src: Path | None = None) -> dict[str, float]:
    """Median wall time per tool; the order rotates each repeat so no tool always goes first."""
    inputs = base / f"inputs-{count}"
    names = make_inputs(inputs, count, kib)
    tools = dict(TOOLS)
    if vs_src is not None:
        tools[VS] = functools.partial(run_shardrun, src=vs_src)
    order = list(tools)
    times: dict[str, list[float]] = {name: [] for name in order}
    for r in range(repeats):
        turn = order[r % len(order):] + order[: r % len(order)]
        for name in turn:
            times[name].append(timed(tools[name], inputs, names, jobs, base))
        print(f"  repeat {r + 1}/{repeats}: "
              + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in turn), flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def cli_startup(repeats: int = 5) -> float:
    """Median time of `shardrun --version`: the fixed cost every run pays before any work."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([*shardrun_argv(), "--version"], capture_output=True, check=True, timeout=60)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def scaling(base: Path, sizes: list[int], jobs: int) -> list[tuple[int, float]]:
    rows = []
    for n in sizes:
        inputs = base / f"scale-{n}"
        names = make_inputs(inputs, n)
        rows.append((n, timed(run_shardrun, inputs, names, jobs, base)))
        print(f"  {n:>6} tasks: {rows[-1][1]:.2f}s", flush=True)
    return rows


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_compare(medians: dict[str, float], count: int, jobs: int, kib: int = 0) -> None:
    size = f", inputs of {kib} KiB" if kib else ""
    print(f"\n{count} tasks of `{APP} IN OUT`, concurrency {jobs}{size} (median wall time)")
    for name, t in medians.items():
        print(f"  {name:<10} {t:8.2f}s   {t / count * 1000:6.2f} ms/task")
    vs_parallel = medians["shardrun"] / medians["parallel"]
    vs_xargs = medians["shardrun"] / medians["xargs -P"]
    print(f"  shardrun/parallel = {vs_parallel:.2f}  (target <= {TARGET_VS_PARALLEL:.1f})  "
          f"{verdict(vs_parallel <= TARGET_VS_PARALLEL)}")
    print(f"  shardrun/xargs    = {vs_xargs:.2f}  (target <= {TARGET_VS_XARGS:.1f})  "
          f"{verdict(vs_xargs <= TARGET_VS_XARGS)}")
    if VS in medians:
        print(f"  {VS}/xargs  = {medians[VS] / medians['xargs -P']:.2f}   "
              f"shardrun/{VS} = {medians['shardrun'] / medians[VS]:.2f}")


def report_scaling(rows: list[tuple[int, float]]) -> None:
    """Per-task time, and the marginal cost of each extra task (which excludes the fixed start-up)."""
    print("\nshardrun run time by task count")
    marginals = []
    for i, (n, t) in enumerate(rows):
        line = f"  {n:>6} tasks  {t:8.2f}s  {t / n * 1000:6.2f} ms/task"
        if i:
            prev_n, prev_t = rows[i - 1]
            marginals.append((t - prev_t) / (n - prev_n))
            line += f"  {marginals[-1] * 1000:6.2f} ms per extra task since {prev_n}"
        print(line)
    if len(marginals) < 2:
        print("  (three or more sizes are needed to judge linearity)")
        return
    growth = marginals[-1] / marginals[0]
    print(f"  cost per extra task grows {growth:.2f}x from the first step to the last "
          f"(linear if <= {LINEAR_TOLERANCE}x)  {verdict(growth <= LINEAR_TOLERANCE)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--tasks", type=int, default=2000, help="tasks in the comparison [2000]")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                   help="concurrency for all three tools [CPU count]")
    p.add_argument("-r", "--repeats", type=int, default=3, help="repeats of the comparison [3]")
    p.add_argument("--sizes", default="1000,2000,5000,10000",
                   help="task counts for the scaling run, comma-separated; '' skips it")
    p.add_argument("--input-kib", type=int, default=0,
                   help="size of each input file in KiB [0: one short line]")
    p.add_argument("--vs-src", type=Path, metavar="SRC",
                   help="also time another checkout's shardrun (its src/ folder) as 'shardrun B', "
                        "in the same rotation: e.g. main against a branch")
    p.add_argument("--quick", action="store_true",
                   help="fast run: 300 tasks, 1 repeat, scaling 250,500,1000")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.repeats, args.sizes = 300, 1, "250,500,1000"
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if (args.tasks < 1 or args.jobs < 1 or args.repeats < 1 or args.input_kib < 0
            or any(s < 1 for s in args.sizes)):
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in (APP, "xargs", "parallel") if shutil.which(tool) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (scripts/install-test-deps.sh installs them)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="shardrun-bench-") as tmp:
        base = Path(tmp)
        try:
            print(f"shardrun CLI start-up (`shardrun --version`): {cli_startup():.3f}s")
            print(f"comparison: {args.tasks} tasks, concurrency {args.jobs}, {args.repeats} repeat(s)")
            medians = compare(base, args.tasks, args.jobs, args.repeats, args.input_kib,
                              args.vs_src.resolve() if args.vs_src else None)
            report_compare(medians, args.tasks, args.jobs, args.input_kib)
            if args.sizes:
                print(f"\nscaling: shardrun on {', '.join(map(str, args.sizes))} tasks")
                report_scaling(scaling(base, args.sizes, args.jobs))
        except (BenchError, subprocess.TimeoutExpired) as err:
            print(f"benchmark failed: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
