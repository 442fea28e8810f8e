#!/usr/bin/env python3
"""Build reference.db, the read-only lookup database every task of the classic example uses.

    python3 make_reference_db.py [reference.db]

The data is made up but fixed (a seeded generator), so running this again gives the same rows.
reference.db is committed too, so the example runs without this step.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path

SEED = 20240601
HERE = Path(__file__).resolve().parent

CATEGORIES = {
    "tools": ["Hammer", "Screwdriver Set", "Spirit Level", "Hand Saw", "Pliers", "Tape Measure"],
    "garden": ["Trowel", "Hose Reel", "Pruning Shears", "Watering Can", "Rake", "Seed Tray"],
    "kitchen": ["Chef Knife", "Cutting Board", "Saucepan", "Colander", "Whisk", "Pepper Mill"],
    "office": ["Stapler", "Desk Lamp", "Notebook", "Fountain Pen", "Paper Tray", "Label Maker"],
}
FINISHES = ["Basic", "Pro", "Compact", "Deluxe", "Steel"]

# VAT-like rates per destination country.
TAX_RATES = {"DE": "0.19", "FR": "0.20", "NL": "0.21", "IT": "0.22", "ES": "0.21", "AT": "0.20",
             "BE": "0.21", "IE": "0.23", "PL": "0.23", "SE": "0.25"}
TIERS = ["standard"] * 6 + ["silver"] * 3 + ["gold"]
FIRST = ["Ada", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gita", "Hugo", "Ines", "Jon", "Kai", "Lena"]
LAST = ["Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Jansen", "Kowalski"]

SCHEMA = """
CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    unit_price TEXT NOT NULL          -- decimal string, e.g. '12.50', so no float rounding
);
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('standard', 'silver', 'gold'))
);
CREATE TABLE tax_rates (
    country TEXT PRIMARY KEY,
    rate TEXT NOT NULL
);
"""


def build(path: Path) -> None:
    rng = random.Random(SEED)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.executescript(SCHEMA)
        sku = 1000
        for category, items in CATEGORIES.items():
            for item in items:
                for finish in FINISHES:
                    sku += 1
                    cents = rng.randrange(199, 6000)
                    price = f"{cents // 100}.{cents % 100:02d}"
                    db.execute("INSERT INTO products VALUES (?, ?, ?, ?)",
                               (f"SKU-{sku}", f"{item} {finish}", category, price))
        for n in range(1, 121):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            db.execute("INSERT INTO customers VALUES (?, ?, ?)", (f"C{n:04d}", name, rng.choice(TIERS)))
        db.executemany("INSERT INTO tax_rates VALUES (?, ?)", sorted(TAX_RATES.items()))
        db.commit()
        db.execute("VACUUM")  # smallest file, no free pages
    finally:
        db.close()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "reference.db"
    build(target)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
