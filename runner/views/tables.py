"""Views on run records: summaries, tables and comparisons, as lines of text."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runner.project.selector import Selector
from runner.record.model import RunRecord, TrialSummary
from runner.record.results import run_folder
from runner.views.runs import value_text
from runner.views.terminal import printable


def summary_lines(record: RunRecord, branch: str) -> list[str]:
    meta, status = record.metadata, record.status
    lines = [f"run {meta.uid} ({meta.name}): {status.state}"
             + (f" ({status.reason})" if status.reason else "")
             + (f" in {status.duration:.2f}s" if status.duration is not None else "")]
    if status.error:
        lines.append(f"  error: {status.error}")
    for key, value in status.results.items():
        lines.append(f"  result   {key} = {value_text(value)}")
    for artifact in status.artifacts:
        lines.append(f"  artifact {artifact.key} ({artifact.kind}, {artifact.size} bytes, "
                     f"{(artifact.hash or '')[:19]})")
    lines.append(f"  params   {value_text(dict(record.spec.params.resolved))}")
    placed = placed_text(record)
    if placed:
        lines.append(f"  swarm    {placed}")
    lines.append(f"  record   git show {branch}:{run_folder(meta.uid)}/run.yaml")
    return lines


def placed_text(record: RunRecord) -> str | None:
    """Where a run on the swarm ran: node, service and the image pinned by digest."""
    status = record.status
    if not status.service:
        return None
    return f"node {status.node or '?'}, service {status.service}, image {status.image_digest}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    cells = [[str(h) for h in headers]] + [[printable(value_text(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]


def compare_lines(records: Sequence[RunRecord]) -> list[str]:
    """Params and results side by side; '*' marks a row whose values differ."""
    headers = ["", *[r.metadata.uid for r in records]]
    rows: list[list[object]] = []
    for section, pick in (("param", _params), ("result", _results)):
        keys = sorted({k for r in records for k in pick(r)})
        for key in keys:
            values = [pick(r).get(key, "-") for r in records]
            differ = len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
            rows.append([f"{'*' if differ else ' '} {section} {key}", *values])
    return table(headers, rows)


def _params(record: RunRecord) -> Mapping[str, Any]:
    return record.spec.params.resolved


def _results(record: RunRecord) -> Mapping[str, Any]:
    return record.status.results


def trial_lines(record: RunRecord) -> list[str]:
    """A parent run's trials with their uids, best first by its selector, the best marked
    with '*'."""
    trials = record.status.trials
    if not trials:
        return []
    selector = Selector.parse((record.spec.hyper or {}).get("selector"))
    param_keys = sorted({k for t in trials for k in t.params})
    result_keys = sorted({k for t in trials for k in t.results})

    def order(trial: TrialSummary) -> tuple[int, float, int]:
        rank = selector.sort_key(trial.results) if selector else (1, 0.0)
        return (*rank, trial.iteration)

    chosen = record.status.best_iteration
    rows = [["*" if t.iteration == chosen else "", t.iteration, t.state, t.uid,
             *[t.params.get(k, "") for k in param_keys],
             *[t.results.get(k, "") for k in result_keys]]
            for t in sorted(trials, key=order)]
    result_headers = [f"{k} (result)" if k in param_keys else k for k in result_keys]
    return table(["", "#", "STATE", "UID", *param_keys, *result_headers], rows)


def step_lines(record: RunRecord) -> list[str]:
    steps = record.status.steps
    return table(["STEP", "UID", "STATE", "REASON"],
                 [[s.name, s.uid, s.state, s.reason or ""] for s in steps]) if steps else []
