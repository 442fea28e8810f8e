#!/usr/bin/env python3
"""Add up the per-task counts of a merged word-count file and print the most common words.

    python3 top_words.py [out/word-counts.jsonl] [-n 20]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import NamedTuple

DEFAULT = Path(__file__).resolve().parent / "out" / "word-counts.jsonl"


class Totals(NamedTuple):
    tasks: int
    lines: int
    words: int
    counts: Counter[str]


def add_up(merged: Path) -> Totals:
    tasks = lines = words = 0
    counts: Counter[str] = Counter()
    with merged.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            tasks += 1
            lines += record["lines"]
            words += record["words"]
            counts.update(record["counts"])
    return Totals(tasks, lines, words, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the most common words of a merged count.")
    parser.add_argument("merged", nargs="?", type=Path, default=DEFAULT, help=f"default: {DEFAULT}")
    parser.add_argument("-n", type=int, default=20, help="how many words to show (default 20)")
    args = parser.parse_args()

    totals = add_up(args.merged)
    print(f"{totals.tasks} tasks, {totals.lines} lines, {totals.words} words, "
          f"{len(totals.counts)} different words (common words left out by config.json)")
    for rank, (word, n) in enumerate(totals.counts.most_common(args.n), 1):
        print(f"{rank:3d}. {word:<16} {n:6d}")


if __name__ == "__main__":
    main()
