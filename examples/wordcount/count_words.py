#!/usr/bin/env python3
"""Count the words in one piece of text and write the counts as one JSON line.

    python3 count_words.py -i piece.txt -o counts.jsonl -c config.json

The config names words to leave out of the per-word counts ("skip_words"); they still count in the
piece's total, so the totals of all pieces add up to the word count of the whole text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from pathlib import Path

# A word is letters, with inner apostrophes kept: "don't" and "man's" are one word each.
WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


def count_words(text: str, lowercase: bool, skip: set[str]) -> tuple[int, Counter[str]]:
    words = WORD.findall(text)
    if lowercase:
        words = [w.lower() for w in words]
    return len(words), Counter(w for w in words if w not in skip)


def main() -> None:
    parser = argparse.ArgumentParser(description="Count the words in one piece of text.")
    parser.add_argument("-i", "--input", required=True, type=Path, help="a piece of text")
    parser.add_argument("-o", "--output", required=True, type=Path, help="where the JSON line goes")
    parser.add_argument("-c", "--config", required=True, type=Path, help="config.json")
    args = parser.parse_args()

    config = json.loads(args.config.read_text(encoding="utf-8"))
    lowercase = bool(config.get("lowercase", True))
    skip = {w.lower() if lowercase else w for w in config.get("skip_words", [])}
    # The book is ASCII; "replace" keeps a stray byte from failing the whole task.
    text = args.input.read_text(encoding="utf-8", errors="replace")
    total, counts = count_words(text, lowercase, skip)
    record = {
        "task": os.environ.get("SHARDRUN_TASK_ID", "local"),  # set by shardrun for every task
        "lines": len(text.splitlines()),
        "words": total,
        "counts": dict(counts.most_common()),
    }
    args.output.write_text(json.dumps(record) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
