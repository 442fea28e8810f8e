#!/usr/bin/env python3
"""Build orders.json, the classic example's big job: a JSON array of orders to price.

    python3 make_orders.py [--count 600] [--out orders.json]

Orders use the SKUs and customers in reference.db; a few name a SKU that does not exist, to show
how the app reports a bad order without failing the whole task. Seeded, so the file is the same
every time. orders.json is committed too.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
from pathlib import Path

SEED = 7
HERE = Path(__file__).resolve().parent
UNKNOWN_SKU = "SKU-9999"


def make_orders(db_path: Path, count: int) -> list[dict[str, object]]:
    rng = random.Random(SEED)
    db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        skus = [r[0] for r in db.execute("SELECT sku FROM products ORDER BY sku")]
        customers = [r[0] for r in db.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
        countries = [r[0] for r in db.execute("SELECT country FROM tax_rates ORDER BY country")]
    finally:
        db.close()
    bad = set(rng.sample(range(count), 3))
    orders: list[dict[str, object]] = []
    for n in range(count):
        items = [{"sku": sku, "qty": rng.randint(1, 3)} for sku in rng.sample(skus, rng.randint(1, 4))]
        if n in bad:
            items.append({"sku": UNKNOWN_SKU, "qty": 1})
        orders.append({
            "order_id": f"ORD-{n + 1:05d}",
            "customer_id": rng.choice(customers),
            "ship_to": rng.choice(countries),
            "items": items,
        })
    return orders


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the example's orders.json.")
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--db", type=Path, default=HERE / "reference.db")
    parser.add_argument("--out", type=Path, default=HERE / "orders.json")
    args = parser.parse_args()
    orders = make_orders(args.db, args.count)
    # One order per line: small, and easy to read or diff.
    lines = ",\n".join(json.dumps(o) for o in orders)
    args.out.write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(orders)} orders)")


if __name__ == "__main__":
    main()
