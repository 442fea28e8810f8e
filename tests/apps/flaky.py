"""Test app: fails its first attempt on every third task (by task number), then copies IN to OUT.

Every invocation appends "task attempt" to the file named by $CALLS_LOG, so tests can count runs.
"""

import os
import shutil
import sys

task = os.environ["SHARDRUN_TASK_ID"]
attempt = int(os.environ["SHARDRUN_ATTEMPT"])
with open(os.environ["CALLS_LOG"], "a") as log:
    log.write(f"{task} {attempt}\n")
if int(task.split("-")[1]) % 3 == 0 and attempt == 1:
    print(f"{task}: simulated failure on attempt 1", file=sys.stderr)
    sys.exit(7)
shutil.copyfile(sys.argv[1], sys.argv[2])
