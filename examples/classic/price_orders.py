#!/usr/bin/env python3
"""Price a batch of orders: the classic `app -i input -o output -c config.json` shape.

    python3 price_orders.py -i orders-part.json -o priced.json -c config.json

The input is a JSON array of orders ({"order_id", "customer_id", "ship_to", "items": [{"sku",
"qty"}]}). Prices, customer tiers and tax rates come from a read-only SQLite database named by the
config ("database"), found in the working directory or else beside the config file. The output is a
JSON array with one priced (or rejected) order per input order, in the same order. Money is Decimal
throughout and written as strings, so no float rounding creeps in.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

CENT = Decimal("0.01")


class Rejected(Exception):
    """An order that cannot be priced; it is reported in the output, not fatal for the task."""


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def find_database(name: str, config_path: Path) -> Path:
    path = Path(name)
    for candidate in (path, config_path.parent / path):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"price_orders: database {name!r} not found in {Path.cwd()} or beside {config_path}")


class Pricer:
    def __init__(self, db: sqlite3.Connection, config: dict[str, Any]) -> None:
        self.db = db
        self.currency = str(config.get("currency", "EUR"))
        self.discounts = {k: Decimal(v) for k, v in config.get("tier_discounts", {}).items()}
        self.shipping_fee = money(Decimal(config.get("shipping_fee", "0")))
        self.free_shipping_from = Decimal(config.get("free_shipping_from", "Infinity"))

    def _one(self, sql: str, key: str, what: str) -> tuple[Any, ...]:
        row = self.db.execute(sql, (key,)).fetchone()
        if row is None:
            raise Rejected(f"unknown {what} {key!r}")
        return tuple(row)

    def price(self, order: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "order_id": order.get("order_id"),
            "customer_id": order.get("customer_id"),
            "ship_to": order.get("ship_to"),
            "currency": self.currency,
        }
        try:
            out.update(self._price(order))
            out["status"] = "priced"
        except Rejected as err:
            out.update(status="rejected", reason=str(err))
        return out

    def _price(self, order: dict[str, Any]) -> dict[str, Any]:
        name, tier = self._one("SELECT name, tier FROM customers WHERE customer_id = ?",
                               str(order.get("customer_id")), "customer")
        (rate,) = self._one("SELECT rate FROM tax_rates WHERE country = ?", str(order.get("ship_to")),
                            "country")
        items = order.get("items") or []
        if not items:
            raise Rejected("no items")
        lines = []
        subtotal = Decimal(0)
        for item in items:
            qty = item.get("qty")
            if not isinstance(qty, int) or qty < 1:
                raise Rejected(f"bad quantity {qty!r} for {item.get('sku')!r}")
            product, unit = self._one("SELECT name, unit_price FROM products WHERE sku = ?",
                                      str(item.get("sku")), "sku")
            amount = money(Decimal(unit) * qty)
            subtotal += amount
            lines.append({"sku": item["sku"], "name": product, "qty": qty, "unit_price": unit,
                          "amount": str(amount)})
        discount = money(subtotal * self.discounts.get(tier, Decimal(0)))
        net = subtotal - discount
        shipping = money(Decimal(0)) if net >= self.free_shipping_from else self.shipping_fee
        tax = money((net + shipping) * Decimal(rate))
        return {
            "customer": name,
            "tier": tier,
            "lines": lines,
            "subtotal": str(subtotal),
            "discount": str(discount),
            "shipping": str(shipping),
            "tax_rate": rate,
            "tax": str(tax),
            "total": str(net + shipping + tax),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="Price a batch of orders.")
    parser.add_argument("-i", "--input", required=True, type=Path, help="JSON array of orders")
    parser.add_argument("-o", "--output", required=True, type=Path, help="where the priced orders go")
    parser.add_argument("-c", "--config", required=True, type=Path, help="config.json")
    args = parser.parse_args()

    config = json.loads(args.config.read_text(encoding="utf-8"))
    orders = json.loads(args.input.read_text(encoding="utf-8"))
    if not isinstance(orders, list):
        raise SystemExit(f"price_orders: {args.input}: expected a JSON array of orders")
    db_path = find_database(str(config.get("database", "reference.db")), args.config)
    # Read-only: many tasks share one database file and none may change it.
    db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        pricer = Pricer(db, config)
        priced = [pricer.price(order) for order in orders]
    finally:
        db.close()
    args.output.write_text(json.dumps(priced, indent=1) + "\n", encoding="utf-8")
    rejected = sum(1 for p in priced if p["status"] == "rejected")
    print(f"priced {len(priced) - rejected} orders, rejected {rejected}")


if __name__ == "__main__":
    main()
