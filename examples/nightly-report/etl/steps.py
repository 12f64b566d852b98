"""Plain Python functions used by the demo flow's python task."""

from __future__ import annotations

import csv
from collections import defaultdict

from ordo import this


def totals(path: str, limit: int) -> dict[str, object]:
    """Sum amounts per customer; return the top ``limit`` as an output."""
    sums: dict[str, float] = defaultdict(float)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            sums[row["customer"]] += float(row["amount"])
    top = sorted(sums.items(), key=lambda kv: kv[1], reverse=True)[:limit]
    this.metric("customers", len(sums))
    print(f"{len(sums)} customers, keeping {len(top)}")
    return {"top": [{"customer": c, "total": round(t, 2)} for c, t in top]}
