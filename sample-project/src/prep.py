"""Clean the raw accounts table and split it into train and test rows (stdlib only)."""

import csv
import random

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract"]


def prepare(context, raw, sample: int = 1000, test_size: float = 0.25):
    with open(raw.local_path(), newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if all(row[f] for f in FEATURES)]
    if context.get_secret("WAREHOUSE_TOKEN"):
        context.logger.info("warehouse token present; a real job would pull fresh rows here")
    random.Random(context.get_param("seed", 0)).shuffle(rows)
    rows = rows[:sample]
    cut = int(len(rows) * (1 - test_size))
    for key, part in (("train_set", rows[:cut]), ("test_set", rows[cut:])):
        path = f"{key}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(part[0]))
            writer.writeheader()
            writer.writerows(part)
        context.log_artifact(key, local_path=path, kind="dataset")
    churn_rate = sum(int(row[context.get_param("label", "churned")]) for row in rows) / len(rows)
    context.logger.info(f"kept {len(rows)} rows; {cut} for training")
    return {"rows": len(rows), "churn_rate": round(churn_rate, 4)}
