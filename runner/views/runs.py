"""`runs list` as rows: top-level runs with their children folded (or unfolded under
them), filtered by job, state and a condition, sorted by a result. Rendering is apart:
`cells` turns a row into text, for a plain table or a coloured one.

A top-level run is one without a parent: a function run, a hyper-parameter parent or
a pipeline run. Its children (trials, steps) are found by their parent, at any depth (a
trial of a pipeline job has steps of its own). All of it reads the index of the results
branch (runner.record.index), never a record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from runner.errors import RunyardError, did_you_mean
from runner.project.condition import Condition, ConditionError, parse_condition
from runner.record.index import IndexRow

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
    """One line of `runs list`: a run (its index row), and how it is shown."""

    run: IndexRow
    prefix: str  # the uid's shortest prefix no other run shares
    depth: int  # 0 for a top-level run, 1 for its trials or steps, ...


def parse_where(text: str) -> Condition:
    """The `--where` condition; a RunyardError with the parser's message when malformed."""
    try:
        return parse_condition(text)
    except ConditionError as error:
        raise RunyardError(f"--where {text!r}: {error}") from error


Prefixes = Callable[[list[str]], Mapping[str, str]]  # uids -> their shortest unique prefixes


def list_runs(rows: Sequence[IndexRow], query: Query, prefixes: Prefixes) -> list[RunRow]:
    """The top-level runs the query picks, newest first unless sorted; with `unfold`, each
    followed by its children (those the query's condition picks), depth first. `rows`
    holds the children too when `unfold` asks for them."""
    tops = [row for row in rows if not row.parent and _picked(row, query)]
    _check_names(query, [row for row in rows if _picked(row, query)])
    tops = [top for top in _ordered(tops, query) if _meets(top, query.where)][:query.limit]
    lines = [(top, 0) for top in tops]
    if query.unfold:
        by_parent = _children(rows)
        lines = [line for top in tops for line in _with_children(top, 0, by_parent, query)]
    shortened = prefixes([row.uid for row, _ in lines])
    return [RunRow(row, shortened[row.uid], depth) for row, depth in lines]


def target_warning(query: Query, rows: Sequence[IndexRow]) -> str | None:
    """What to say of a --job no recorded run has: a typo, or a job that has not run yet
    (so a warning, and the empty list a script expects, not an error)."""
    targets = {target_of(row) for row in rows if not row.parent}
    if not query.job or not targets or query.job in targets:
        return None
    return (f"--job: no run recorded is of a job or function named {query.job!r}"
            f"{did_you_mean(query.job, targets)} (recorded: {', '.join(sorted(targets))})")


def target_of(row: IndexRow) -> str:
    """What a top-level run ran: its job, or the function or pipeline run by itself."""
    return row.job or row.name


def _check_names(query: Query, rows: Sequence[IndexRow]) -> None:
    """A --where or --sort that names what no run has would list nothing, or not sort,
    without a word: a misspelt name is an error, as in `diff --fail-if`."""
    if not rows:
        return
    results = {name for row in rows for name in row.results}
    if query.sort is not None and query.sort.result not in results:
        raise RunyardError(f"--sort: no run listed has a result named {query.sort.result!r}"
                           f"{did_you_mean(query.sort.result, results)} (results: "
                           f"{', '.join(sorted(results)) or 'none'})")
    known = results | {name for row in rows for name in row.params}
    unknown = sorted(query.where.names() - known) if query.where is not None else []
    if unknown:
        raise RunyardError(f"--where: no run listed has a result or param named {unknown[0]!r}"
                           f"{did_you_mean(unknown[0], known)} (results and params: "
                           f"{', '.join(sorted(known)) or 'none'})")


def _children(rows: Sequence[IndexRow]) -> dict[str, list[IndexRow]]:
    """Each parent's children: trials by their iteration, steps by when they started."""
    by_parent: dict[str, list[IndexRow]] = {}
    for row in rows:
        if row.parent:
            by_parent.setdefault(row.parent, []).append(row)
    for children in by_parent.values():
        children.sort(key=lambda row: (row.iteration, row.start or "", row.uid))
    return by_parent


def _with_children(row: IndexRow, depth: int, by_parent: Mapping[str, list[IndexRow]],
                   query: Query) -> list[tuple[IndexRow, int]]:
    picked = _ordered([child for child in by_parent.get(row.uid, []) if _meets(child, query.where)],
                      query)
    return [(row, depth), *[line for child in picked
                            for line in _with_children(child, depth + 1, by_parent, query)]]


def _picked(row: IndexRow, query: Query) -> bool:
    return ((not query.job or target_of(row) == query.job)
            and (not query.state or row.state == query.state))


def _meets(row: IndexRow, where: Condition | None) -> bool:
    """Whether the run's results and params (results win) meet the condition."""
    return where is None or where.evaluate({**row.params, **row.results})


def _ordered(rows: list[IndexRow], query: Query) -> list[IndexRow]:
    """Sorted by the query's result (runs without it last, either way); else as given."""
    sort = query.sort
    if sort is None:
        return rows
    having = [row for row in rows if number(row.results.get(sort.result)) is not None]
    lacking = [row for row in rows if number(row.results.get(sort.result)) is None]
    having.sort(key=lambda row: number(row.results.get(sort.result)) or 0.0,
                reverse=sort.descending)
    return having + lacking


def number(value: object) -> float | None:
    """A result or param as a number to sort or chart by; None for a text, a bool or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if value != value else float(value)


# --- rendering ---------------------------------------------------------------------------------

HEADERS = ("UID", "JOB", "STATE", "REVISION", "STARTED", "DURATION", "RUNS", "BEST", "PARAMS",
           "RESULTS")


def cells(line: RunRow) -> tuple[str, ...]:
    """The row as the table's text cells; a child is indented and named by its iteration
    (a trial) or its name (a step)."""
    run, indent = line.run, "  " * line.depth
    job = target_of(run) if not line.depth else f"#{run.iteration}" if run.iteration else run.name
    runs = f"{run.children} {run.kind}s" if run.children else ""
    return (f"{indent}{line.prefix}", f"{indent}{job}", run.state, run.revision[:12],
            (run.start or "")[:19].replace("T", " "), duration_text(run.duration), runs,
            "" if run.best is None else f"#{run.best}", brief(run.params), brief(run.results))


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
