"""The python steps of the flow-of-flows example."""


def regions():
    return {"names": ["north", "south", "east"]}


def total(amounts):
    return {"value": sum(amounts)}


def join(reports):
    return {
        "grand_total": sum(r["total"] for r in reports),
        "regions": len(reports),
        "empty": [r["region"] for r in reports if not r["orders"]],
    }


def worth_publishing(inputs, outputs):
    """run_if: RUN, SKIP (the task only) or STOP (everything not started; SUCCESS)."""
    if not inputs["publish"]:
        return "SKIP: publishing turned off"
    if outputs["join"]["grand_total"] == 0:
        return "STOP: no orders anywhere"
    return "RUN"


def summary(totals, north_rows, currency):
    """The pipeline's end: each region's total (its chain's last output) and a value
    read by path from the north child's extract task."""
    return {
        "totals": totals,
        "grand_total": sum(totals),
        "north_rows": north_rows,
        "currency": currency,
    }
