"""Describe a CSV data set: summary statistics, missing values, and histograms as PNG images."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from collections import Counter
from typing import Any

from PIL import Image, ImageDraw, ImageFont

MISSING = {"", "na", "n/a", "nan", "null", "none"}
WIDTH, HEIGHT, MARGIN = 640, 400, 56


def describe(context: Any, dataset: Any, bins: int = 10, max_histograms: int = 20,
             delimiter: str = ",") -> None:
    header, rows = read_csv(dataset.local_path(), delimiter)
    columns = {name: [row[i] if i < len(row) else "" for row in rows] for i, name in enumerate(header)}
    summary = {name: column_summary(values) for name, values in columns.items()}
    numeric = [name for name, stats in summary.items() if stats["type"] == "numeric"]
    missing = sum(stats["missing"] for stats in summary.values())
    cells = len(rows) * len(header)
    context.log_artifact("summary", body=json.dumps(summary, indent=2), format="json")
    keys: set[str] = set()
    for name in numeric[:max(0, int(max_histograms))]:
        values = [float(value) for value in columns[name] if not is_missing(value)]
        key = artifact_key(f"hist-{name}", keys)
        context.log_artifact(key, body=histogram_png(name, values, int(bins)), format="png", kind="plot")
    context.log_results({
        "rows": len(rows), "columns": len(header), "numeric_columns": len(numeric),
        "missing_cells": missing, "missing_ratio": round(missing / cells, 6) if cells else 0.0,
    })
    context.logger.info(f"{len(rows)} rows, {len(header)} columns, {missing} missing cells")


def read_csv(path: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty: a CSV data set needs a header row")
        return header, [row for row in reader if row]


def is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING


def as_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def column_summary(values: list[str]) -> dict[str, Any]:
    present = [value for value in values if not is_missing(value)]
    numbers = [as_number(value) for value in present]
    base = {"count": len(present), "missing": len(values) - len(present)}
    if present and all(number is not None for number in numbers):
        floats = [number for number in numbers if number is not None]
        quartiles = statistics.quantiles(floats, n=4, method="inclusive") if len(floats) > 1 else floats * 3
        return {"type": "numeric", **base,
                "mean": statistics.fmean(floats),
                "std": statistics.stdev(floats) if len(floats) > 1 else 0.0,
                "min": min(floats), "25%": quartiles[0], "50%": quartiles[1], "75%": quartiles[2],
                "max": max(floats)}
    counts = Counter(present)
    top = counts.most_common(1)
    return {"type": "categorical", **base, "unique": len(counts),
            "top": top[0][0] if top else None, "top_count": top[0][1] if top else 0}


def artifact_key(wanted: str, taken: set[str]) -> str:
    """An artifact key (letters, digits, '_', '.', '-') from a column name, unique in `taken`."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "_", wanted).lstrip(".-")[:100] or "hist"
    unique, number = key, 2
    while unique in taken:
        unique, number = f"{key}-{number}", number + 1
    taken.add(unique)
    return unique


def histogram_png(title: str, values: list[float], bins: int) -> bytes:
    """A bar chart of how `values` fall into `bins` equal bins, with its title and axis labels."""
    bins = max(1, bins)
    low, high = min(values), max(values)
    if low == high:  # one value: a bin of width 1 around it
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    left, top, right, bottom = MARGIN + 8, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN
    draw.text((WIDTH // 2, MARGIN // 2), f"{title} (n={len(values)})", fill="black", font=font, anchor="mm")
    tallest = max(counts)
    step = (right - left) / bins
    for index, count in enumerate(counts):
        bar_top = bottom - (bottom - top) * count / tallest
        draw.rectangle([left + index * step + 1, bar_top, left + (index + 1) * step - 1, bottom],
                       fill="#4c78a8", outline="#2f4b7c")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=1)
    for count in sorted({0, tallest // 2, tallest}):
        y = bottom - (bottom - top) * count / tallest
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((left - 8, y), str(count), fill="black", font=font, anchor="rm")
    every = max(1, math.ceil(bins / 5))  # at most about six labels under the bars
    for edge in sorted({*range(0, bins + 1, every), bins}):
        x = left + edge * step
        draw.line([(x, bottom), (x, bottom + 4)], fill="black")
        draw.text((x, bottom + 8), f"{low + edge * width:.4g}", fill="black", font=font, anchor="ma")
    draw.text((left, top - 8), "count", fill="black", font=font, anchor="mb")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
