"""Split a CSV data set into train and test sets, reproducibly, optionally stratified."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from typing import Any


def split(context: Any, dataset: Any, test_size: float = 0.2, seed: int = 42, stratify: str = "",
          delimiter: str = ",") -> None:
    test_size = float(test_size)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, not {test_size}")
    with open(dataset.local_path(), newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        rows = [row for row in reader if row]
    if not header:
        raise ValueError("the data set is empty: it needs a header row")
    groups = _groups(header, rows, stratify)
    shuffle = random.Random(int(seed))
    train: list[list[str]] = []
    test: list[list[str]] = []
    for key in sorted(groups):
        members = groups[key]
        shuffle.shuffle(members)
        cut = round(len(members) * test_size)
        test += members[:cut]
        train += members[cut:]
    shuffle.shuffle(train)  # not grouped by the stratifying column's values
    shuffle.shuffle(test)
    if not train or not test:
        raise ValueError(f"{len(rows)} rows cannot be split with test_size {test_size}: "
                         "one of the sets would be empty")
    context.log_artifact("train_set", body=_csv(header, train, delimiter), format="csv", kind="dataset")
    context.log_artifact("test_set", body=_csv(header, test, delimiter), format="csv", kind="dataset")
    context.log_results({"train_rows": len(train), "test_rows": len(test)})


def _groups(header: list[str], rows: list[list[str]], stratify: str) -> dict[str, list[list[str]]]:
    if not stratify:
        return {"": list(rows)}
    if stratify not in header:
        raise ValueError(f"stratify: no column {stratify!r}; the columns are {header}")
    column = header.index(stratify)
    groups: dict[str, list[list[str]]] = defaultdict(list)
    for row in rows:
        groups[row[column] if column < len(row) else ""].append(row)
    return groups


def _csv(header: list[str], rows: list[list[str]], delimiter: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
