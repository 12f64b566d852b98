"""A flow written in Python: each @task call is a task run of the execution, with its
own retries, logs and outputs; run again after a crash, completed steps are not redone.

    ordo run examples/python-flow/pipeline.py -i regions=3
"""

from ordo import flow, task, this


@task(retry={"attempts": 3, "delay": "1s"}, timeout="5m")
def extract(region: int) -> list:
    """A stand-in for a real export: the region's order amounts."""
    return [10 * region + n for n in range(3)]


@task
def total(amounts: list) -> int:
    print(f"totalling {len(amounts)} orders")
    return sum(amounts)


@task
def publish(grand_total: int) -> dict:
    if grand_total <= 0:
        raise ValueError("nothing to publish")
    return {"published": grand_total}


@flow(id="python-etl", namespace="examples", description="Total every region, then publish.")
def pipeline(regions: int = 2, publish_it: bool = True) -> dict:
    parts = [total.submit(extract(r)) for r in range(1, regions + 1)]  # totals in parallel
    grand_total = sum(p.result() for p in parts)
    result = {"grand_total": grand_total, "at": this.now().isoformat()}
    if publish_it:
        try:
            result.update(publish(grand_total))
        except this.TaskFailed as failed:  # after its retries: the flow decides
            result["not_published"] = str(failed)
    return result
