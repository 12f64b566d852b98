# A plain script: reads the config file and writes outputs with ordo.this.
import csv
import json
import os

from ordo import this

with open(os.environ["ORDO_CONFIG"]) as f:
    config = json.load(f)
with open("out/inventory.csv") as f:
    rows = list(csv.DictReader(f))
low = [r["item"] for r in rows if int(r["count"]) < config["threshold"]]
print(f"{len(rows)} items, {len(low)} below {config['threshold']}")
this.output("low", low)
