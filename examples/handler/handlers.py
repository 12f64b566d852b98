"""The handler example: ``handler(system, this, inputs)`` style code."""


def add(values):
    return {"total": sum(values)}


def orchestrate(system, this, inputs):
    this.log(f"tally flow takes inputs {sorted(system.flow('tally')['inputs'])}")
    # start every batch first (wait=False), then wait for each: they run in parallel
    children = {
        name: this.flow("tally", wait=False, values=values)
        for name, values in inputs["batches"].items()
    }
    for name, child in children.items():
        total = child.wait()["total"]
        this.log(f"batch {name}: child execution {child.id} totalled {total}")
        this.connect(
            "example-db",
            query="INSERT INTO tallies VALUES (:batch, :total)",
            params={"batch": name, "total": total},
        )
    rows = this.connect("example-db", query="SELECT batch, total FROM tallies ORDER BY batch")
    this.output("tallies", rows["rows"])
    grand = sum(r["total"] for r in rows["rows"])
    if grand > 1000:
        return this.warning(f"unusually large grand total {grand}")
    return this.success(f"{len(children)} batches tallied", grand_total=grand)
