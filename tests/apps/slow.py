"""Test app: logs its start to $CALLS_LOG, sleeps SLEEP seconds (or as many as the file SLEEP says), copies IN to OUT, logs its end.

With HOLD set, it first waits while the file HOLD exists (at most 300 s): a test holds the tasks
where they are, does what it must while they run, then lets them go, with no timing to guess.
"""

import os
import shutil
import sys
import time

task = os.environ["SHARDRUN_TASK_ID"]
log_path = os.environ["CALLS_LOG"]
with open(log_path, "a") as log:
    log.write(f"start {task} {os.getpid()}\n")
hold = os.environ.get("HOLD")
if hold:
    give_up = time.monotonic() + 300
    while os.path.exists(hold) and time.monotonic() < give_up:
        time.sleep(0.02)
sleep = os.environ.get("SLEEP", "0.1")
if os.path.isfile(sleep):  # a file holding the seconds lets a test change it between runs
    sleep = open(sleep).read()
time.sleep(float(sleep))
shutil.copyfile(sys.argv[1], sys.argv[2])
with open(log_path, "a") as log:
    log.write(f"end {task}\n")
