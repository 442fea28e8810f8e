"""Test app: writes the task's environment and working directory as JSON to OUTPUT_PATH, and
prints the whole environment to stdout, so a secret that reached the task would be in its log."""

import json
import os

names = [k for k in os.environ if k.startswith(("AZ_BATCH_", "SHARDRUN_")) or k.endswith("_PATH")]
data = {k: os.environ[k] for k in names}
data["cwd"] = os.getcwd()
data["cwd_files"] = sorted(os.listdir("."))
data["ref"] = open("ref.db").read() if os.path.exists("ref.db") else None
data["leaked"] = sorted(k for k in os.environ if "SECRET" in k or "KEY" in k)
data["input"] = open(os.environ["INPUT_PATH"], encoding="utf-8").read()
with open(os.environ["OUTPUT_PATH"], "w", encoding="utf-8") as f:
    json.dump(data, f)
    f.write("\n")
for name in sorted(os.environ):
    print(f"{name}={os.environ[name]}")
