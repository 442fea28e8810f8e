"""Fault harness (issue 11): kill the client at random moments of each phase, run again, check.

Part 1 kills `shardrun run job.toml` with SIGKILL, SIGTERM or SIGINT at a random (seeded) moment of
split, run or merge, then runs `shardrun run job.toml` again, as a user would, until it exits 0 (at
most --reruns times), and checks what is left: the merged result against the expected one (lines as
multisets), tasks the ledger had as succeeded at the kill that started again, runs not in the state
they should end in, temporary files and scratch left behind, processes left running, tracebacks.
A kill that lands after the run succeeded is "late": nobody runs again (that would start a new run),
but a client stopped by SIGINT/SIGTERM must still have said that the run succeeded.

Part 2 starts two clients at the same moment, on a new job and on an interrupted one, and checks that
every task's app runs once, the result is right, and the loser exits 3 naming the owner (PID, host).

Every wait is bounded: a client that does not stop is killed and counted in the `hung` column.

    .venv/bin/python bench/faults.py              # 20 trials per signal x phase
    .venv/bin/python bench/faults.py --quick      # 2 per signal x phase, 2 per case
    .venv/bin/python bench/faults.py --trials 5 --signals KILL --phases merging
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

PHASES = ("splitting", "running", "merging")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
RIGHT_END = frozenset({"succeeded", "failed"})  # see runs_wrong()
STOP_WAIT = 30.0  # seconds a signalled client may take to stop
RUN_TIMEOUT = 120.0  # seconds one `shardrun run` may take
PHASE_WAIT = 30.0  # seconds to wait for the client to reach the phase to hit
REACH = 0.85  # kills land this far into a phase at most (its length varies with the machine's load)

SPLITTER = """\
import os, sys, time
src, outdir, per_task, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
lines = open(src).readlines()
pieces = [lines[i:i + per_task] for i in range(0, len(lines), per_task)]
for n, piece in enumerate(pieces, 1):  # piece by piece, slowly: a kill can land mid-split
    time.sleep(pause / len(pieces))
    with open(os.path.join(outdir, f"piece-{n:04d}.txt"), "w") as out:
        out.writelines(piece)
"""
APP = """\
import os, shutil, sys, time
task, attempt = os.environ["SHARDRUN_TASK_ID"], os.environ["SHARDRUN_ATTEMPT"]
with open(os.environ["CALLS_LOG"], "a") as log:
    log.write(f"start {task} {attempt} {os.getpid()}\\n")
time.sleep(float(os.environ["APP_SLEEP"]))
shutil.copyfile(sys.argv[1], sys.argv[2])
with open(os.environ["CALLS_LOG"], "a") as log:
    log.write(f"end {task} {attempt}\\n")
"""
MERGER = """\
import os, sys, time
outdir, pause = sys.argv[1], float(sys.argv[2])
names = sorted(os.listdir(outdir))
lines = [line for name in names for line in open(os.path.join(outdir, name))]
for line in lines:  # streamed slowly to stdout (the result's temp file): a kill lands mid-merge
    sys.stdout.write(line)
    sys.stdout.flush()
    time.sleep(pause / len(lines))
"""


@dataclass(frozen=True)
class Shape:
    """The job: `tasks` tasks of `rows_per_task` rows; how long each phase's work takes."""

    tasks: int = 12
    rows_per_task: int = 20
    concurrency: int = 3
    split_s: float = 0.6
    app_s: float = 0.25
    merge_s: float = 0.7

    @property
    def expected(self) -> list[str]:
        return [f"row {i}\n" for i in range(self.tasks * self.rows_per_task)]


def make_job(folder: Path, shape: Shape) -> Path:
    """A job folder: input, splitter, app and merger scripts, job.toml. Returns the job file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "big.txt").write_text("".join(shape.expected))
    for name, text in (("splitter.py", SPLITTER), ("app.py", APP), ("merger.py", MERGER)):
        (folder / name).write_text(text)
    py = sys.executable
    sections: dict[str, dict[str, object]] = {
        "app": {"command": [py, str(folder / "app.py"), "{input}", "{output}"],
                "env": {"CALLS_LOG": str(folder / "calls.log"), "APP_SLEEP": str(shape.app_s)}},
        "split": {"input": "big.txt", "per_task": shape.rows_per_task,
                  "command": [py, str(folder / "splitter.py"), "{input}", "{outdir}", "{per_task}",
                              str(shape.split_s)]},
        "merge": {"output": "result.txt",
                  "command": [py, str(folder / "merger.py"), "{outdir}", str(shape.merge_s)]},
        "run": {"concurrency": shape.concurrency, "retries": 1},
    }
    job = folder / "job.toml"
    job.write_text(tomli_w.dumps(sections), encoding="utf-8")
    return job


# -- the client and the ledger ------------------------------------------------------------------
def client_env(home: Path) -> dict[str, str]:
    return {**os.environ, "SHARDRUN_HOME": str(home)}


def start_client(job: Path, home: Path) -> subprocess.Popen[str]:
    """`shardrun run job.toml` in a session of its own, so a signal reaches it alone."""
    return subprocess.Popen([sys.executable, "-m", "shardrun", "run", str(job)],
                            env=client_env(home), cwd=job.parent,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@dataclass(frozen=True)
class Ended:
    code: int | None  # None: it did not end in time and was killed (hung)
    out: str
    err: str


def finish(client: subprocess.Popen[str], limit: float) -> Ended:
    """Wait for the client (at most `limit` s). A client still there is killed: code None (hung)."""
    try:
        out, err = client.communicate(timeout=limit)
        return Ended(client.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(client.pid, signal.SIGKILL)
        out, err = client.communicate(timeout=30)
        return Ended(None, out, err)


def query(home: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows from the ledger, read-only; none while it does not exist yet."""
    db_path = home / "ledger.sqlite"
    if not db_path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
            return list(db.execute(sql, args))
    except sqlite3.OperationalError:
        return []  # created but not yet given its tables


def latest_run(home: Path) -> tuple[str, str] | None:
    """(run id, status) of the newest run."""
    rows = query(home, "SELECT run_id, status FROM runs ORDER BY created_at DESC LIMIT 1")
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def latest_status(home: Path) -> str | None:
    run = latest_run(home)
    return run[1] if run else None


def wait_phase(home: Path, client: subprocess.Popen[str], phase: str) -> float | None:
    """The moment the run is seen in `phase`; None if the client ended first or it took too long."""
    deadline = time.monotonic() + PHASE_WAIT
    while time.monotonic() < deadline and client.poll() is None:
        if latest_status(home) == phase:
            return time.monotonic()
        time.sleep(0.005)
    return None


def calibrate(root: Path, shape: Shape, runs: int = 3) -> dict[str, float]:
    """Seconds each phase lasts: the shortest of `runs` undisturbed runs (kills land within it)."""
    each = [_phase_lengths(root / f"calibration-{n}", shape) for n in range(runs)]
    return {p: min(lengths[p] for lengths in each) for p in PHASES}


def _phase_lengths(folder: Path, shape: Shape) -> dict[str, float]:
    job = make_job(folder, shape)
    home = folder / "home"
    client = start_client(job, home)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    while client.poll() is None and time.monotonic() < deadline:
        status = latest_status(home)
        if status is not None and status not in seen:
            seen[status] = time.monotonic()
        time.sleep(0.005)
    ended = finish(client, 30)
    if ended.code != 0 or "succeeded" not in seen:
        raise SystemExit(f"calibration run failed ({ended.code}): {ended.err.strip()[-500:]}")
    order = [*PHASES, "succeeded"]
    return {p: seen[order[i + 1]] - seen[p] for i, p in enumerate(PHASES)}


def nominal_lengths(shape: Shape) -> dict[str, float]:
    """The least each phase can last: the work the scripts sleep through (no calibration)."""
    waves = -(-shape.tasks // shape.concurrency)
    return {"splitting": shape.split_s, "running": waves * shape.app_s, "merging": shape.merge_s}


# -- what is checked after the last run ---------------------------------------------------------
def result_diff(folder: Path, shape: Shape) -> tuple[int, int, bool]:
    """(lost lines, duplicated lines, identical) of the merged result against the expected one."""
    result = folder / "result.txt"
    got = Counter(result.read_text().splitlines(keepends=True)) if result.is_file() else Counter()
    want = Counter(shape.expected)
    identical = result.is_file() and result.read_text() == "".join(shape.expected)
    return sum((want - got).values()), sum((got - want).values()), identical


def starts(calls: Path, offset: int = 0) -> Counter[str]:
    """Starts per task in the app's log, from byte `offset` on."""
    if not calls.exists():
        return Counter()
    with calls.open("rb") as f:
        f.seek(offset)
        text = f.read().decode()
    return Counter(line.split()[1] for line in text.splitlines() if line.startswith("start "))


def log_size(calls: Path) -> int:
    return calls.stat().st_size if calls.exists() else 0


def succeeded_tasks(home: Path) -> set[str]:
    return {str(r[0]) for r in query(home, "SELECT task_id FROM tasks WHERE state='succeeded'")}


def runs_wrong(home: Path) -> list[str]:
    """Runs not in the state they should end in: exactly one succeeded run, the newest; any other
    is a run abandoned while splitting, which ends failed."""
    rows = query(home, "SELECT run_id, status, message FROM runs ORDER BY created_at")
    wrong = [f"{r[0]}: {r[1]}" for r in rows if r[1] not in RIGHT_END]
    wrong += [f"{r[0]}: failed ({r[2]})" for r in rows[:-1]
              if r[1] == "failed" and "splitting" not in str(r[2])]
    wrong += [f"{r[0]}: {r[1]} but not the newest" for r in rows[:-1] if r[1] == "succeeded"]
    if rows and rows[-1][1] != "succeeded":
        wrong.append(f"{rows[-1][0]}: newest run is {rows[-1][1]}")
    return wrong


def leftovers(folder: Path, home: Path) -> tuple[list[str], list[str], list[str]]:
    """(temporary files, scratch left over, attempt folders kept) after the final run succeeded.

    Temporary: `.result*` beside the result, `.part-*`/`*.tmp` in the store, anything stored for a
    run that did not succeed (an abandoned split deletes what it stored). Scratch: a succeeded
    run's `work/RUN` may keep its empty `shared/` and `tasks/` folders, and, as
    docs/task-contract.md promises, the folder of every attempt that did not succeed ("kept for
    inspection until `shardrun cleanup RUN`"): those are listed apart. Anything else there (a
    succeeded or unrecorded attempt's folder, files) and any other run's scratch is left over.
    """
    temp = [p.name for p in folder.glob(".result*")]
    store, work = home / "store", home / "work"
    ok = {str(r[0]) for r in query(home, "SELECT run_id FROM runs WHERE status='succeeded'")}
    for path in store.rglob("*") if store.exists() else []:
        rel = path.relative_to(store)
        if path.is_file() and (path.name.startswith(".part-") or path.suffix == ".tmp"
                               or rel.parts[0] not in ok):
            temp.append(f"store/{rel}")
    unsucceeded = {f"{r[0]}/tasks/{r[1]}.{r[2]}" for r in
                   query(home, "SELECT run_id, task_id, attempt FROM attempts WHERE result != 'succeeded'")}
    left, kept = [], []
    for run in work.iterdir() if work.exists() else []:
        for path in run.rglob("*"):
            rel = path.relative_to(work)
            if len(rel.parts) >= 3 and "/".join(rel.parts[:3]) in unsucceeded:
                if len(rel.parts) == 3:
                    kept.append(f"work/{rel}")
            elif path.is_file():
                temp.append(f"work/{rel}")
            elif run.name not in ok or len(rel.parts) > 2 or rel.parts[1] not in ("shared", "tasks"):
                left.append(f"work/{rel}")
    return temp, left, kept


def strays(folder: Path) -> list[int]:
    """Processes still running whose command line names the trial's folder; they are killed."""
    marker = str(folder).encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "cmdline").read_bytes() and int(proc.name) != os.getpid():
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return found


# -- part 1: kill at a random moment, run again ---------------------------------------------------
@dataclass
class Trial:
    sig: str
    phase: str
    hit: bool = False  # the ledger said `phase` just before the signal
    done_at_kill: int = 0  # tasks the ledger had as succeeded right after the kill
    late: bool = False  # the run had succeeded by the time the client ended: no run again
    outcome_hidden: bool = False  # late, yet the client (not kill -9'd) did not say it succeeded
    killed_code: int | None = None
    rerun_codes: list[int | None] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    identical: bool = False
    reran: list[str] = field(default_factory=list)  # succeeded at the kill, started again
    wrong_runs: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    scratch_left: list[str] = field(default_factory=list)
    kept_attempts: list[str] = field(default_factory=list)  # documented: kept until cleanup
    strays: int = 0
    tracebacks: int = 0
    hung: int = 0

    def findings(self) -> dict[str, object]:
        """Every check that must come out zero or empty, with what it found."""
        checks: dict[str, object] = {
            "lost lines": self.lost, "duplicated lines": self.duplicated,
            "not identical": not self.identical, "succeeded ran again": self.reran,
            "runs in wrong state": self.wrong_runs, "temp files": self.temp_files,
            "scratch left": self.scratch_left, "strays": self.strays,
            "tracebacks": self.tracebacks, "outcome hidden": self.outcome_hidden,
            "hung": self.hung,
        }
        return {name: found for name, found in checks.items() if found}

    @property
    def codes(self) -> str:
        return "->".join("hung" if c is None else str(c) for c in [self.killed_code, *self.rerun_codes])


def run_until_ok(job: Path, home: Path, reruns: int) -> tuple[list[int | None], int, int]:
    """`shardrun run job.toml` until it exits 0, at most `reruns` times: (codes, tracebacks, hung)."""
    codes: list[int | None] = []
    tracebacks = hung = 0
    for _ in range(reruns):
        ended = finish(start_client(job, home), RUN_TIMEOUT)
        codes.append(ended.code)
        tracebacks += "Traceback" in ended.err
        hung += ended.code is None
        if ended.code == 0:
            break
    return codes, tracebacks, hung


def kill_trial(folder: Path, shape: Shape, sig: str, phase: str, delay: float,
               reruns: int = 3) -> Trial:
    """One trial: signal the client `delay` s into `phase`, run again until it succeeds, check."""
    trial = Trial(sig, phase)
    job = make_job(folder, shape)
    home, calls = folder / "home", folder / "calls.log"
    client = start_client(job, home)
    seen = wait_phase(home, client, phase)
    if seen is not None:
        time.sleep(max(0.0, seen + delay - time.monotonic()))
        trial.hit = latest_status(home) == phase and client.poll() is None
    if client.poll() is None:
        client.send_signal(SIGNALS[sig])
    killed = finish(client, STOP_WAIT)
    trial.killed_code = killed.code
    trial.hung += killed.code is None
    trial.tracebacks += "Traceback" in killed.err
    done_at_kill, offset = succeeded_tasks(home), log_size(calls)
    trial.done_at_kill = len(done_at_kill)
    # Too late: the run had succeeded. `shardrun runs` says so, and a user would not run again
    # (that would start a new run). A client that could still speak must have said so too.
    run = latest_run(home)
    trial.late = run is not None and run[1] == "succeeded"
    trial.outcome_hidden = (trial.late and sig != "KILL"
                            and f"{run and run[0]}: succeeded" not in killed.out)
    if not trial.late:
        trial.rerun_codes, tracebacks, hung = run_until_ok(job, home, reruns)
        trial.tracebacks += tracebacks
        trial.hung += hung
    trial.lost, trial.duplicated, trial.identical = result_diff(folder, shape)
    again = starts(calls, offset)
    trial.reran = sorted(t for t in done_at_kill if again[t])
    trial.wrong_runs = runs_wrong(home)
    trial.temp_files, trial.scratch_left, trial.kept_attempts = leftovers(folder, home)
    trial.strays = len(strays(folder))
    return trial


def fault_table(trials: list[Trial]) -> list[list[str]]:
    rows = []
    for sig in SIGNALS:
        for phase in PHASES:
            group = [t for t in trials if t.sig == sig and t.phase == phase]
            if not group:
                continue
            codes = Counter(t.codes for t in group)
            rows.append([
                f"SIG{sig}", phase, str(len(group)), str(sum(t.hit for t in group)),
                str(sum(t.late for t in group)),
                str(sum(t.lost for t in group)), str(sum(t.duplicated for t in group)),
                str(sum(not t.identical for t in group)), str(sum(len(t.reran) for t in group)),
                str(sum(len(t.wrong_runs) for t in group)), str(sum(len(t.temp_files) for t in group)),
                str(sum(len(t.scratch_left) for t in group)), str(sum(t.strays for t in group)),
                str(sum(t.tracebacks for t in group)), str(sum(t.outcome_hidden for t in group)),
                str(sum(t.hung for t in group)),
                ", ".join(f"{c} x{n}" for c, n in codes.most_common()),
                str(sum(len(t.kept_attempts) for t in group)),
            ])
    return rows


FAULT_HEADER = ["signal", "phase", "trials", "hit", "late", "lost lines", "dup lines", "not identical",
                "succeeded ran again", "runs wrong state", "temp files", "scratch left", "strays",
                "tracebacks", "outcome hidden", "hung", "exit codes (kill->reruns)",
                "kept attempt folders"]


# -- part 2: two clients at the same moment -------------------------------------------------------
@dataclass
class Pair:
    case: str
    right_result: bool = False
    twice: list[str] = field(default_factory=list)
    loser_right: bool = False
    codes: tuple[int | None, ...] = ()
    hung: int = 0
    note: str = ""


def pair_trial(folder: Path, shape: Shape, interrupted: bool) -> Pair:
    """Two `shardrun run` at once on a new job, or on one stopped with SIGINT halfway."""
    pair = Pair("interrupted job" if interrupted else "new job")
    job = make_job(folder, shape)
    home, calls = folder / "home", folder / "calls.log"
    done_before: set[str] = set()
    cut_off: set[str] = set()
    offset = 0
    if interrupted:
        first = start_client(job, home)
        deadline = time.monotonic() + RUN_TIMEOUT
        while (len(succeeded_tasks(home)) < shape.tasks // 2 and first.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.01)
        first.send_signal(signal.SIGINT)
        pair.hung += finish(first, STOP_WAIT).code is None
        done_before, offset = succeeded_tasks(home), log_size(calls)
        cut_off = set(starts(calls)) - done_before
    clients = [start_client(job, home), start_client(job, home)]
    outcomes = [finish(c, RUN_TIMEOUT) for c in clients]
    pair.codes = tuple(ended.code for ended in outcomes)
    pair.hung += sum(code is None for code in pair.codes)
    pair.right_result = result_diff(folder, shape)[2]
    after = starts(calls, offset)
    pair.twice = sorted(t for t, n in after.items()
                        if (t in done_before and n > 0) or n > 1)
    # a task cut off by the Ctrl-C runs at most once more; any other ran at most once in all
    pair.twice += sorted(t for t in cut_off if after[t] > 1 and t not in pair.twice)
    if sorted(c or 0 for c in pair.codes) == [0, 3]:
        winner = clients[pair.codes.index(0)]
        message = outcomes[pair.codes.index(3)].err
        pair.loser_right = (f"is being worked on by PID {winner.pid} on {socket.gethostname()}"
                            in message and "Traceback" not in message)
        pair.note = message.strip().splitlines()[-1] if message.strip() else ""
    strays(folder)
    return pair


PAIR_HEADER = ["case", "trials", "right results", "tasks run twice", "loser messages right",
               "hung", "exit codes"]


def pair_table(pairs: list[Pair]) -> list[list[str]]:
    rows = []
    for case in ("new job", "interrupted job"):
        group = [p for p in pairs if p.case == case]
        if group:
            codes = Counter(",".join(str(c) for c in sorted(p.codes, key=str)) for p in group)
            rows.append([case, str(len(group)), str(sum(p.right_result for p in group)),
                         str(sum(len(p.twice) for p in group)),
                         str(sum(p.loser_right for p in group)), str(sum(p.hung for p in group)),
                         ", ".join(f"{c} x{n}" for c, n in codes.most_common())])
    return rows


# -- output ---------------------------------------------------------------------------------------
def markdown(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def details(trials: list[Trial]) -> list[str]:
    """Each kind of finding (run ids, task ids and temp names made generic) and how often."""
    kinds: Counter[str] = Counter()
    for t in trials:
        for kind, items in (("temp file", t.temp_files), ("scratch left", t.scratch_left),
                            ("run in wrong state", t.wrong_runs), ("ran again", t.reran)):
            for item in items:
                generic = re.sub(r"\bjob-\d{6}-[a-z0-9]{6}\b", "RUN", item)
                generic = re.sub(r"task-\d{5}", "task-N", generic)
                generic = re.sub(r"(\.result\.txt\.|\.part-)\w+", r"\1XXXX", generic)
                kinds[f"SIG{t.sig} {t.phase}: {kind}: {generic}"] += 1
    return [f"  {n:3d} x {kind}" for kind, n in sorted(kinds.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per signal x phase")
    parser.add_argument("--pairs", type=int, default=10, help="two-client trials per case")
    parser.add_argument("--quick", action="store_true", help="2 trials each, 2 pairs per case")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--signals", nargs="+", choices=list(SIGNALS), default=list(SIGNALS))
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--reruns", type=int, default=3, help="at most this many runs after a kill")
    parser.add_argument("--keep", action="store_true", help="keep the trial folders")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.pairs = 2, 2
    rng = random.Random(args.seed)
    shape = Shape()
    root = Path(tempfile.mkdtemp(prefix="shardrun-faults-"))
    began = time.monotonic()
    try:
        lengths = calibrate(root, shape)
        print("phase lengths (s): " + ", ".join(f"{p} {s:.2f}" for p, s in lengths.items()),
              flush=True)
        plan = [(sig, phase) for sig in args.signals for phase in args.phases
                for _ in range(args.trials)]
        rng.shuffle(plan)  # signals and phases interleaved: machine load spreads over all cells
        trials = []
        for n, (sig, phase) in enumerate(plan, 1):
            delay = rng.uniform(0.0, REACH * lengths[phase])
            trial = kill_trial(root / f"t{n:04d}", shape, sig, phase, delay, args.reruns)
            trials.append(trial)
            found = ", ".join(trial.findings())
            print(f"  {n}/{len(plan)} SIG{sig} {phase} +{delay:.2f}s "
                  f"({trial.done_at_kill}/{shape.tasks} done): {trial.codes}"
                  f"{'  <- ' + found if found else ''}", flush=True)
            if not args.keep:
                shutil.rmtree(root / f"t{n:04d}", ignore_errors=True)
        pairs = []
        for n in range(args.pairs * 2):
            pair = pair_trial(root / f"p{n:04d}", shape, interrupted=n % 2 == 1)
            pairs.append(pair)
            print(f"  pair {n + 1}/{args.pairs * 2} {pair.case}: codes {pair.codes} "
                  f"twice {pair.twice} | {pair.note}", flush=True)
            if not args.keep:
                shutil.rmtree(root / f"p{n:04d}", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\nKills at a random moment of each phase, then `shardrun run` again until it exits 0:\n")
    print(markdown(FAULT_HEADER, fault_table(trials)))
    findings = details(trials)
    if findings:
        print("\nFindings (one example per kind):")
        print("\n".join(findings))
    print("\nTwo clients at the same moment:\n")
    print(markdown(PAIR_HEADER, pair_table(pairs)))
    print(f"\nwall time {time.monotonic() - began:.0f} s; seed {args.seed}; trial folders under {root}"
          f"{'' if args.keep else ' (deleted)'}")
    failing = any(t.findings() for t in trials) or any(
        p.twice or not p.right_result or not p.loser_right or p.hung for p in pairs)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
