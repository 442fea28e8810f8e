#!/usr/bin/env python3
"""Split a big JSON array of orders into input1.json, input2.json, ... (the classic guide's splitter).

    python3 splitter.py BigJob.json -o input_folder/ [--per-task 25]

Each piece is itself a JSON array of up to --per-task orders; pieces keep the orders' order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def split(big: Path, outdir: Path, per_task: int) -> list[Path]:
    orders = json.loads(big.read_text(encoding="utf-8"))
    if not isinstance(orders, list):
        raise SystemExit(f"splitter: {big}: expected a JSON array of orders")
    outdir.mkdir(parents=True, exist_ok=True)
    pieces = []
    for n, start in enumerate(range(0, len(orders), per_task), 1):
        piece = outdir / f"input{n}.json"
        piece.write_text(json.dumps(orders[start : start + per_task]), encoding="utf-8")
        pieces.append(piece)
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description="Split a JSON array of orders into pieces.")
    parser.add_argument("big", type=Path, help="the whole job: a JSON array of orders")
    parser.add_argument("-o", "--outdir", required=True, type=Path, help="folder for input1.json, ...")
    parser.add_argument("--per-task", type=int, default=25, help="orders per piece (default 25)")
    args = parser.parse_args()
    if args.per_task < 1:
        parser.error("--per-task must be at least 1")
    pieces = split(args.big, args.outdir, args.per_task)
    print(f"splitter: {len(pieces)} pieces in {args.outdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
