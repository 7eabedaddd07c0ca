"""`runs list` as rows: top-level runs with their children folded (or unfolded under
them), filtered by job, state and a condition, sorted by a result. Rendering is apart:
`cells` turns a row into text, for a plain table or a coloured one.

A top-level run is one without a parent: a function run, a hyper-parameter parent or
a pipeline run. Its children (trials, steps) are found by `metadata.parent`, at any
depth (a trial of a pipeline job has steps of its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from runner.errors import RunyardError
from runner.project.condition import Condition, ConditionError, parse_condition
from runner.record.model import RunRecord

MIN_PREFIX = 7
SHOWN_KEYS = 4  # params and results shown per row; --json has them all


class SortKey(NamedTuple):
    """`--sort RESULT` (ascending) or `--sort -RESULT` (descending)."""

    result: str
    descending: bool

    @classmethod
    def parse(cls, text: str) -> SortKey:
        name = text.removeprefix("-")
        if not name:
            raise RunyardError(f"--sort {text!r}: name a result, e.g. accuracy or -accuracy")
        return cls(name, text.startswith("-"))


class Query(NamedTuple):
    job: str | None = None
    state: str | None = None
    where: Condition | None = None
    sort: SortKey | None = None
    limit: int | None = None
    unfold: bool = False


class RunRow(NamedTuple):
    """One line of `runs list`: a run, and under it (when unfolded) its children."""

    uid: str
    prefix: str
    depth: int
    name: str
    job: str | None
    state: str
    revision: str
    start: str | None
    duration: float | None
    iteration: int
    children: int  # trials or steps
    kind: str  # "trial", "step" or "" (no children)
    best: int | None
    params: Mapping[str, Any]
    results: Mapping[str, Any]


def parse_where(text: str) -> Condition:
    """The `--where` condition; a RunyardError with the parser's message when malformed."""
    try:
        return parse_condition(text)
    except ConditionError as error:
        raise RunyardError(f"--where {text!r}: {error}") from error


def short_prefixes(uids: Iterable[str]) -> dict[str, str]:
    """Each uid's shortest prefix that no other uid shares, of MIN_PREFIX characters at least."""
    ordered = sorted(set(uids))
    found = {}
    for i, uid in enumerate(ordered):
        neighbours = ordered[max(i - 1, 0):i] + ordered[i + 1:i + 2]
        shared = max((_common_length(uid, other) for other in neighbours), default=0)
        found[uid] = uid[:max(MIN_PREFIX, shared + 1)]
    return found


def _common_length(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def list_runs(records: Sequence[RunRecord], query: Query) -> list[RunRow]:
    """The top-level runs the query picks, newest first unless sorted; with `unfold`, each
    followed by its children (those the query's condition picks), depth first."""
    prefixes = short_prefixes(r.metadata.uid for r in records)
    by_parent = _children(records)
    tops = [record for record in records if not record.metadata.parent and _picked(record, query)]
    top_rows = _ordered([run_row(r, prefixes, 0) for r in tops], query)
    top_rows = [row for row in top_rows if _meets(row, query.where)][:query.limit]
    if not query.unfold:
        return top_rows
    return [line for row in top_rows for line in _with_children(row, by_parent, prefixes, query)]


def matching_records(records: Sequence[RunRecord], query: Query) -> list[RunRecord]:
    """Every record (children too) the query picks, in the order `list_runs` sorts: `--json`."""
    rows = {r.metadata.uid: (r, run_row(r, {}, 0)) for r in records if _picked(r, query)}
    kept = _ordered([row for _, row in rows.values() if _meets(row, query.where)], query)
    return [rows[row.uid][0] for row in kept][:query.limit]


def _children(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Each parent's children, in the order its table of trials or steps lists them."""
    position = {uid: i for record in records for i, uid in enumerate(
        [*(t.uid for t in record.status.trials), *(s.uid for s in record.status.steps)])}
    by_parent: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.metadata.parent:
            by_parent.setdefault(record.metadata.parent, []).append(record)
    for children in by_parent.values():
        children.sort(key=lambda r: (position.get(r.metadata.uid, len(position)), r.metadata.uid))
    return by_parent


def _with_children(row: RunRow, by_parent: Mapping[str, list[RunRecord]],
                   prefixes: Mapping[str, str], query: Query) -> list[RunRow]:
    below = [run_row(r, prefixes, row.depth + 1) for r in by_parent.get(row.uid, [])]
    picked = _ordered([child for child in below if _meets(child, query.where)], query)
    return [row, *[line for child in picked
                   for line in _with_children(child, by_parent, prefixes, query)]]


def run_row(record: RunRecord, prefixes: Mapping[str, str], depth: int) -> RunRow:
    meta, spec, status = record.metadata, record.spec, record.status
    best = next((t for t in status.trials if t.iteration == status.best_iteration), None)
    children, kind = ((len(status.trials), "trial") if status.trials
                      else (len(status.steps), "step") if status.steps else (0, ""))
    return RunRow(meta.uid, prefixes.get(meta.uid, meta.uid[:MIN_PREFIX]), depth, meta.name, meta.job,
                  status.state, spec.revision[:12], status.start, status.duration, meta.iteration,
                  children, kind, status.best_iteration,
                  {**key_params(record), **(best.params if best else {})}, status.results)


def key_params(record: RunRecord) -> dict[str, Any]:
    """The resolved params but those the project gives every run, as it gives them."""
    params = record.spec.params
    return {key: value for key, value in params.resolved.items()
            if key not in params.project or params.project[key] != value}


def _picked(record: RunRecord, query: Query) -> bool:
    return ((not query.job or record.metadata.job == query.job)
            and (not query.state or record.status.state == query.state))


def _meets(row: RunRow, where: Condition | None) -> bool:
    """Whether the row's results and resolved params (results win) meet the condition."""
    return where is None or where.evaluate({**row.params, **row.results})


def _ordered(rows: list[RunRow], query: Query) -> list[RunRow]:
    """Sorted by the query's result (runs without it last, either way); else as given."""
    sort = query.sort
    if sort is None:
        return rows
    having = [row for row in rows if _number(row.results.get(sort.result)) is not None]
    lacking = [row for row in rows if _number(row.results.get(sort.result)) is None]
    having.sort(key=lambda row: _number(row.results.get(sort.result)) or 0.0,
                reverse=sort.descending)
    return having + lacking


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if value != value else float(value)  # NaN is no number to sort by


# --- rendering ---------------------------------------------------------------------------------

HEADERS = ("UID", "JOB", "STATE", "REVISION", "STARTED", "DURATION", "RUNS", "BEST", "PARAMS",
           "RESULTS")


def cells(row: RunRow) -> tuple[str, ...]:
    """The row as the table's text cells; a child is indented and named by its iteration
    (a trial) or its name (a step)."""
    indent = "  " * row.depth
    job = row.job or "-" if not row.depth else f"#{row.iteration}" if row.iteration else row.name
    runs = f"{row.children} {row.kind}s" if row.children else ""
    return (f"{indent}{row.prefix}", f"{indent}{job}", row.state, row.revision,
            (row.start or "")[:19].replace("T", " "), duration_text(row.duration), runs,
            "" if row.best is None else f"#{row.best}", brief(row.params), brief(row.results))


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def brief(values: Mapping[str, Any]) -> str:
    shown = " ".join(f"{k}={value_text(v)}" for k, v in list(values.items())[:SHOWN_KEYS])
    return shown + (" …" if len(values) > SHOWN_KEYS else "")


def value_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)
