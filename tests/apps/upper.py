"""Test app: -i IN -o OUT [-c CONFIG]; writes IN upper-cased, prefixed by config["prefix"] if given."""

import json
import sys

args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
prefix = ""
if args.get("-c"):
    with open(args["-c"]) as f:
        prefix = json.load(f).get("prefix", "")
with open(args["-i"], encoding="utf-8") as f:
    text = f.read()
with open(args["-o"], "w", encoding="utf-8") as f:
    f.write(prefix + text.upper())
