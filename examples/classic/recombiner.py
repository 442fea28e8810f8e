#!/usr/bin/env python3
"""Combine the priced-order outputs in a folder into one CSV report (the classic guide's recombiner).

    python3 recombiner.py output_folder/ > priced-orders.csv

Outputs are read in natural name order (output2 before output10), which is the task order when
shardrun runs it. One CSV row per order; rejected orders keep their row, with the reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import TextIO

COLUMNS = ["order_id", "customer_id", "customer", "tier", "ship_to", "status", "items", "subtotal",
           "discount", "shipping", "tax", "total", "currency", "reason"]


def natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def recombine(folder: Path, stream: TextIO) -> tuple[int, int]:
    files = sorted((p for p in folder.iterdir() if p.suffix == ".json"), key=natural_key)
    if not files:
        raise SystemExit(f"recombiner: no .json outputs in {folder}")
    out = csv.writer(stream, lineterminator="\n")
    out.writerow(COLUMNS)
    orders = rejected = 0
    for path in files:
        for order in json.loads(path.read_text(encoding="utf-8")):
            if "status" not in order:
                raise SystemExit(f"recombiner: {path} is not an output of price_orders.py (no status)")
            lines = order.get("lines", [])
            row = dict(order, items=sum(line["qty"] for line in lines) if lines else "")
            out.writerow([row.get(c, "") for c in COLUMNS])
            orders += 1
            rejected += order["status"] == "rejected"
    return orders, rejected


def main() -> None:
    parser = argparse.ArgumentParser(description="Combine priced-order outputs into one CSV.")
    parser.add_argument("folder", type=Path, help="folder of output JSON files")
    args = parser.parse_args()
    orders, rejected = recombine(args.folder, sys.stdout)
    print(f"recombiner: {orders} orders, {rejected} rejected", file=sys.stderr)


if __name__ == "__main__":
    main()
