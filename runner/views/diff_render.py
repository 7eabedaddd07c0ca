"""`runyard diff` rendered: a table of text cells (plain, or coloured by rich), Markdown
for a pull request, and the dict `--json` prints."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from runner.views.diff import Change, Diff, JobDiff, Pair
from runner.views.runs import value_text
from runner.views.tables import table
from runner.views.terminal import printable

HEADERS = ("RUN", "RESULT", "A", "B", "CHANGE", "%", "")
VERDICT_STYLES = {"better": "green", "worse": "red", "same": "dim"}


def change_text(change: Change) -> str:
    """The change; for values that are not both numbers, whether they differ."""
    if change.change is None:
        return "" if change.old == change.new else "changed"
    return f"{change.change:+.6g}" if change.change else "0"


def percent_text(change: Change) -> str:
    if change.change is None:
        return ""
    if change.percent is None:
        return "n/a"
    return f"{change.percent:+.2f}%" if change.percent else "0.00%"


def title(diff: Diff) -> str:
    return f"diff {diff.old_revision[:12]} (A) .. {diff.new_revision[:12]} (B)"


def job_heading(job: JobDiff) -> str:
    def side(record: Any) -> str:
        return "no run" if record is None else f"{record.metadata.uid} ({record.status.state})"

    return f"job {job.job}: {side(job.old)} -> {side(job.new)}"


def cause_lines(job: JobDiff) -> list[str]:
    """What differs besides the results; or that nothing recorded does."""
    if job.old is None or job.new is None:
        return []
    if not job.causes:
        return ["same params, inputs, code and environment"]
    return [f"changed {cause.what}{f' ({cause.where})' if cause.where else ''}: {cause.detail}"
            for cause in job.causes]


def run_label(pair: Pair, job: JobDiff | None = None) -> str:
    """The pair's name; a parent's best trial with its iteration at each side."""
    if pair.label == "best" and job is not None and job.old and job.new:
        old, new = job.old.status.best_iteration, job.new.status.best_iteration
        return f"best #{old}" if old == new else f"best #{old} -> #{new}"
    return pair.label or "run"


def rows(job: JobDiff) -> list[tuple[tuple[str, ...], str]]:
    """The job's table: (cells, verdict) per result of each joined pair."""
    found: list[tuple[tuple[str, ...], str]] = []
    for pair in job.pairs:
        if not pair.changes:
            found.append(((run_label(pair, job), "(no results)", pair.old_state or "",
                           pair.new_state or "", "", "", ""), ""))
        for change in pair.changes:
            found.append(((run_label(pair, job), change.result, _value(change.old), _value(change.new),
                           change_text(change), percent_text(change), change.verdict), change.verdict))
    return found


def one_sided_lines(job: JobDiff) -> list[str]:
    return [f"only in {side}: {run_label(pair)} {uid} ({state})"
            for side, pairs in (("A", job.only_old), ("B", job.only_new)) for pair in pairs
            for uid, state in [(pair.old_uid or pair.new_uid, pair.old_state or pair.new_state)]]


def crossing_lines(diff: Diff) -> list[str]:
    return [f"--fail-if {diff.fail_if!r} crossed: job {c.job} {c.label or 'run'}: "
            + ", ".join(f"{name} {value:+.6g}" for name, value in c.changes.items())
            for c in diff.crossings]


def _value(value: object) -> str:
    return "-" if value is None else value_text(value)


# --- plain and rich ----------------------------------------------------------------------------

def plain_lines(diff: Diff) -> list[str]:
    lines = [title(diff)]
    for job in diff.jobs:
        lines += ["", job_heading(job), *[f"  {line}" for line in cause_lines(job)]]
        found = rows(job)
        if found:
            lines += [f"  {line}" for line in table(HEADERS, [cells for cells, _ in found])]
        lines += [f"  {line}" for line in one_sided_lines(job)]
    if not diff.jobs:
        lines.append("no job has results at either revision")
    return lines


def rich_diff(diff: Diff) -> Group:
    parts: list[Any] = [Text(printable(title(diff)), style="bold")]
    for job in diff.jobs:
        parts += [Text(""), Text(printable(job_heading(job)), style="bold")]
        parts += [Text(printable(f"  {line}"), style="yellow") for line in cause_lines(job)]
        found = rows(job)
        if found:
            parts.append(_rich_table(found))
        parts += [Text(printable(f"  {line}"), style="dim") for line in one_sided_lines(job)]
    if not diff.jobs:
        parts.append(Text("no job has results at either revision"))
    return Group(*parts)


def _rich_table(found: Sequence[tuple[tuple[str, ...], str]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 2))
    for header in HEADERS:
        table.add_column(header, justify="right" if header in ("A", "B", "CHANGE", "%") else "left")
    for cells, verdict in found:
        style = VERDICT_STYLES.get(verdict, "")
        table.add_row(*[Text(printable(cell), style=style if i >= 4 else "")
                        for i, cell in enumerate(cells)])
    return table


# --- markdown ----------------------------------------------------------------------------------

MARKDOWN_SPECIAL = frozenset("\\|`*_[]#~")
MARKS = {"better": "🟢 better", "worse": "🔴 worse", "same": "same", "": ""}


def markdown(diff: Diff) -> str:
    """A Markdown report for a pull request; what comes from a record is escaped."""
    lines = [f"### runyard diff `{diff.old_revision[:12]}` .. `{diff.new_revision[:12]}`"]
    for job in diff.jobs:
        lines += ["", f"#### job {_md(job_heading(job).removeprefix('job '))}", ""]
        lines += [f"- {_md(line)}" for line in [*cause_lines(job), *one_sided_lines(job)]]
        found = rows(job)
        if found:
            lines += ["", "| run | result | A | B | change | % | |",
                      "|---|---|---:|---:|---:|---:|---|"]
            lines += ["| " + " | ".join([*(_md(cell) for cell in cells[:6]), MARKS[verdict]]) + " |"
                      for cells, verdict in found]
    if not diff.jobs:
        lines += ["", "No job has results at either revision."]
    lines += [f"\n**{_md(line)}**" for line in crossing_lines(diff)]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Text from a record as inert Markdown in a table cell: no HTML, no pipes, no code."""
    escaped = "".join("\\" + char if char in MARKDOWN_SPECIAL else char
                      for char in printable(text))
    return html.escape(escaped, quote=False).replace("\n", " ")


# --- json --------------------------------------------------------------------------------------

def diff_dict(diff: Diff) -> dict[str, Any]:
    return {"old_revision": diff.old_revision, "new_revision": diff.new_revision,
            "fail_if": diff.fail_if,
            "crossed": [c._asdict() for c in diff.crossings],
            "jobs": [_job_dict(job) for job in diff.jobs]}


def _job_dict(job: JobDiff) -> dict[str, Any]:
    def side(record: Any) -> dict[str, Any] | None:
        return None if record is None else {
            "uid": record.metadata.uid, "state": record.status.state,
            "revision": record.spec.revision}

    return {"job": job.job, "old": side(job.old), "new": side(job.new),
            "better": dict(job.better),
            "causes": [cause._asdict() for cause in job.causes],
            "pairs": [_pair_dict(pair) for pair in job.pairs],
            "only_old": [_pair_dict(pair) for pair in job.only_old],
            "only_new": [_pair_dict(pair) for pair in job.only_new]}


def _pair_dict(pair: Pair) -> dict[str, Any]:
    return {"label": pair.label, "old_uid": pair.old_uid, "new_uid": pair.new_uid,
            "old_state": pair.old_state, "new_state": pair.new_state,
            "changes": [change._asdict() for change in pair.changes]}
