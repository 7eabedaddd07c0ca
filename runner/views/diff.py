"""`runyard diff`: each job's newest results at one revision against those at another.

For every job with results at either revision, the newest top-level run at each side
(one that succeeded, else the newest at all) is compared: its own results (a
hyper-parameter parent's are its best trial's), each trial joined with the trial of
the same hyper-parameter values, each pipeline step with the step of the same name.
A result that is a number on both sides gets its change (new minus old) and its
percentage of the old value; which way is better comes from `--better` or the job's
selector. What differs between the two runs besides the results (params,
hyper-parameters, inputs, code, environment, image) is named as its possible causes.

`--fail-if EXPR` is evaluated, in the `stop_condition` language, on each joined pair of
runs with every numeric result standing for its change: `accuracy < -0.01` is crossed
by a pair whose accuracy fell by more than 0.01. Results that are not numbers on both
sides are absent, and a comparison of an absent name is false.

The typed diff is apart from its renderings (`runner.views.diff_render`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from runner.errors import RunyardError, did_you_mean
from runner.frozen import frozen
from runner.project.condition import Condition, ConditionError, parse_condition
from runner.project.selector import Selector
from runner.record.index import IndexRow
from runner.record.model import RunRecord

Verdict = Literal["better", "worse", "same", ""]  # "": no direction known, or not numbers
# The files of `function` at `revision` and their object ids (None when unknown):
# for records from before runyard wrote spec.code.
CodeAt = Callable[[str, str], Mapping[str, str | None] | None]


class Change(NamedTuple):
    """One result of one joined pair of runs."""

    result: str
    old: Any
    new: Any
    change: float | None  # new - old, when both are numbers
    percent: float | None  # the change as a percentage of |old|; None when old is 0
    verdict: Verdict


class Pair(NamedTuple):
    """A run and its counterpart: the top run (label ""), a trial or a step."""

    label: str
    old_uid: str | None
    new_uid: str | None
    old_state: str | None
    new_state: str | None
    changes: tuple[Change, ...]

    def numeric_changes(self) -> dict[str, float]:
        return {c.result: c.change for c in self.changes if c.change is not None}


class Cause(NamedTuple):
    """Something besides the results that differs between the two runs."""

    what: str  # params, hyper, input, code, environment, image, function, handler
    where: str  # "" for the whole run, else the step ("step train")
    detail: str


@frozen
class JobDiff:
    job: str
    old: RunRecord | None
    new: RunRecord | None
    pairs: tuple[Pair, ...]  # joined: both sides present
    only_old: tuple[Pair, ...]
    only_new: tuple[Pair, ...]
    causes: tuple[Cause, ...]
    better: Mapping[str, str]  # result -> "max" or "min"


class Crossing(NamedTuple):
    job: str
    label: str
    changes: Mapping[str, float]


@frozen
class Diff:
    old_revision: str
    new_revision: str
    jobs: tuple[JobDiff, ...]
    fail_if: str | None = None
    crossings: tuple[Crossing, ...] = ()


def parse_fail_if(text: str) -> Condition:
    try:
        return parse_condition(text)
    except ConditionError as error:
        raise RunyardError(f"--fail-if {text!r}: {error}") from error


def parse_better(texts: Iterable[str]) -> dict[str, str]:
    """`--better max.accuracy` (repeatable): result -> direction."""
    found = {}
    for text in texts:
        selector = Selector.parse(text)
        if selector is None or selector.best not in ("max", "min") or not selector.key:
            raise RunyardError(f"--better {text!r}: write max.RESULT or min.RESULT")
        found[selector.key] = selector.best
    return found


def revisions_with_results(rows: Iterable[IndexRow]) -> set[str]:
    """The revisions some job's top-level run ran at."""
    return {row.revision for row in rows if not row.parent and row.job}


def needed(rows: Sequence[IndexRow], revisions: Iterable[str], job: str | None) -> list[str]:
    """The uids of the runs a diff of these revisions reads: the jobs' top-level runs at
    them, each step of theirs, and of a hyper-parameter parent's trials only the first
    (its trial table holds every trial's params and results; the first stands for the
    code, image and inputs they share), at any depth."""
    if job is not None and not any(row.job == job and not row.parent for row in rows):
        jobs = sorted({row.job for row in rows if not row.parent and row.job})
        raise RunyardError(f"job {job!r} has no results on the results branch"
                           + did_you_mean(job, jobs)
                           + f" (jobs with results: {', '.join(jobs) or 'none'})")
    chosen = set(revisions)
    wanted = [row for row in rows if not row.parent and row.job and row.revision in chosen
              and (job is None or row.job == job)]
    by_parent: dict[str, list[IndexRow]] = {}
    for row in rows:
        if row.parent:
            by_parent.setdefault(row.parent, []).append(row)
    found: list[str] = []
    while wanted:
        row = wanted.pop()
        found.append(row.uid)
        children = by_parent.get(row.uid, [])
        wanted += children if row.kind != "trial" else \
            sorted(children, key=lambda child: child.iteration)[:1]
    return found


def diff_runs(records: Sequence[RunRecord], old_revision: str, new_revision: str, *,
              job: str | None = None, better: Mapping[str, str] | None = None,
              fail_if: str | None = None, code_at: CodeAt | None = None) -> Diff:
    """The diff of every job (or `job`) between the two revisions (full commit ids)."""
    condition = parse_fail_if(fail_if) if fail_if else None
    tops = [r for r in records if not r.metadata.parent and r.metadata.job
            and (job is None or r.metadata.job == job)]
    by_parent = _children(records)
    jobs = []
    for name in sorted({r.metadata.job or "" for r in tops}):
        old = _newest([r for r in tops if r.metadata.job == name and r.spec.revision == old_revision])
        new = _newest([r for r in tops if r.metadata.job == name and r.spec.revision == new_revision])
        if old is None and new is None:
            continue
        jobs.append(job_diff(name, old, new, by_parent, better or {}, code_at))
    if job is not None and not jobs:
        raise RunyardError(f"job {job!r} has no results at {old_revision[:12]} or at "
                           f"{new_revision[:12]}")
    if condition is not None:
        _check_names(condition, fail_if or "", jobs)
    _check_better(better or {}, jobs)
    crossings = tuple(_crossings(jobs, condition)) if condition else ()
    return Diff(old_revision, new_revision, tuple(jobs), fail_if, crossings)


def job_diff(name: str, old: RunRecord | None, new: RunRecord | None,
             by_parent: Mapping[str, Sequence[RunRecord]], better: Mapping[str, str],
             code_at: CodeAt | None = None) -> JobDiff:
    directions = {**_selector_direction(old), **_selector_direction(new), **better}
    old_runs, new_runs = _runs(old, by_parent), _runs(new, by_parent)
    pairs: list[Pair] = []
    only_old: list[Pair] = []
    only_new: list[Pair] = []
    for label in [*old_runs, *[key for key in new_runs if key not in old_runs]]:
        a, b = old_runs.get(label), new_runs.get(label)
        pair = _pair(label, a, b, directions)
        (pairs if a and b else only_old if a else only_new).append(pair)
    causes = _causes(old, new, by_parent, code_at) if old and new else ()
    return JobDiff(name, old, new, tuple(pairs), tuple(only_old), tuple(only_new), tuple(causes),
                   directions)


def change_of(result: str, old: Any, new: Any, direction: str | None) -> Change:
    """Both values, the change and its percentage, and whether it is better."""
    if not (_is_number(old) and _is_number(new)):
        return Change(result, old, new, None, None, "")
    change = float(new) - float(old)
    percent = 0.0 if change == 0 else None if old == 0 else change / abs(float(old)) * 100
    verdict: Verdict = "same" if change == 0 else "" if direction is None else \
        "better" if (change > 0) == (direction == "max") else "worse"
    return Change(result, old, new, change, percent, verdict)


# --- picking and joining runs ------------------------------------------------------------------

class _Run(NamedTuple):
    uid: str
    state: str
    results: Mapping[str, Any]


def _newest(records: Sequence[RunRecord]) -> RunRecord | None:
    """The newest that succeeded, else the newest (by start, then uid)."""
    ordered = sorted(records, key=lambda r: (r.status.start or "", r.metadata.uid), reverse=True)
    return next((r for r in ordered if r.succeeded), ordered[0] if ordered else None)


def _children(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    found: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.metadata.parent:
            found.setdefault(record.metadata.parent, []).append(record)
    return found


def _runs(record: RunRecord | None, by_parent: Mapping[str, Sequence[RunRecord]]
          ) -> dict[str, _Run]:
    """The run's own results ("" or "best"), its trials by params, its steps by name."""
    if record is None:
        return {}
    status = record.status
    runs = {"best" if status.trials else "": _Run(record.metadata.uid, status.state, status.results)}
    for trial in status.trials:
        runs[f"trial {params_label(trial.params)}"] = _Run(trial.uid, trial.state, trial.results)
    children = {child.metadata.uid: child for child in by_parent.get(record.metadata.uid, ())}
    for step in status.steps:
        child = children.get(step.uid)
        runs[f"step {step.name}"] = _Run(step.uid, step.state, child.status.results if child else {})
    return runs


def params_label(params: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={json.dumps(params[key], default=str)}" for key in sorted(params))


def _pair(label: str, old: _Run | None, new: _Run | None, directions: Mapping[str, str]) -> Pair:
    old_results = old.results if old else {}
    new_results = new.results if new else {}
    names = [*old_results, *[key for key in new_results if key not in old_results]]
    changes = tuple(change_of(name, old_results.get(name), new_results.get(name),
                              directions.get(name)) for name in names)
    return Pair(label, old.uid if old else None, new.uid if new else None,
                old.state if old else None, new.state if new else None, changes)


def _selector_direction(record: RunRecord | None) -> dict[str, str]:
    selector = Selector.parse(str((record.spec.hyper or {}).get("selector") or "")) if record else None
    return {selector.key: selector.best} if selector and selector.best in ("max", "min") else {}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- fail-if -----------------------------------------------------------------------------------

def _crossings(jobs: Sequence[JobDiff], condition: Condition) -> Iterable[Crossing]:
    for job in jobs:
        for pair in job.pairs:
            changes = pair.numeric_changes()
            if condition.evaluate(changes):
                yield Crossing(job.job, pair.label, {k: changes[k] for k in condition.names()
                                                     if k in changes})


def _check_names(condition: Condition, text: str, jobs: Sequence[JobDiff]) -> None:
    """A gate that reads a result no pair has as a number on both sides would never close:
    an error, not a silent pass."""
    known = {name for job in jobs for pair in job.pairs for name in pair.numeric_changes()}
    unknown = sorted(condition.names() - known)
    if unknown:
        raise RunyardError(f"--fail-if {text!r}: no run compared has {', '.join(unknown)} as a "
                           f"number at both revisions" + (f" (results: {', '.join(sorted(known))})"
                                                          if known else ""))


def _check_better(better: Mapping[str, str], jobs: Sequence[JobDiff]) -> None:
    """A --better on a result no pair has as a number would change nothing: a typo."""
    known = {name for job in jobs for pair in job.pairs for name in pair.numeric_changes()}
    for name, direction in better.items():
        if name not in known:
            raise RunyardError(f"--better {direction}.{name}: no run compared has {name} as a "
                               "number at both revisions"
                               + did_you_mean(name, known, f"{direction}.{{}}".format)
                               + (f" (results: {', '.join(sorted(known))})" if known else ""))


# --- causes ------------------------------------------------------------------------------------

def _causes(old: RunRecord, new: RunRecord, by_parent: Mapping[str, Sequence[RunRecord]],
            code_at: CodeAt | None) -> list[Cause]:
    causes = _param_causes("", old.spec.params.resolved, new.spec.params.resolved)
    if (old.spec.hyper or {}) != (new.spec.hyper or {}):
        causes.append(Cause("hyper", "", _hyper_detail(old.spec.hyper or {}, new.spec.hyper or {})))
    old_leaves, new_leaves = _leaves(old, by_parent, ""), _leaves(new, by_parent, "")
    for where in [*old_leaves, *[key for key in new_leaves if key not in old_leaves]]:
        a, b = old_leaves.get(where), new_leaves.get(where)
        if a is None or b is None:
            continue
        if where:  # a step's own params; the run's were compared above
            causes += _param_causes(where, a.spec.params.step, b.spec.params.step)
        causes += _run_causes(where, a, b, code_at)
    return causes


def _leaves(record: RunRecord, by_parent: Mapping[str, Sequence[RunRecord]],
            where: str) -> dict[str, RunRecord]:
    """The runs that ran a function: the run itself, its steps by name, or for a
    hyper-parameter parent its first trial's (all trials run the same code)."""
    children = sorted(by_parent.get(record.metadata.uid, ()), key=lambda r: r.metadata.iteration)
    if record.status.trials:
        return _leaves(children[0], by_parent, where) if children else {}
    if record.status.steps:
        by_uid = {child.metadata.uid: child for child in children}
        found: dict[str, RunRecord] = {}
        for step in record.status.steps:
            if step.uid in by_uid:
                found.update(_leaves(by_uid[step.uid], by_parent,
                                     f"{where} step {step.name}".strip()))
        return found
    return {where: record}


def _param_causes(where: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Cause]:
    changed = [key for key in sorted({*old, *new}, key=str) if old.get(key) != new.get(key)]
    return [Cause("params", where, f"{key} {_shown(old, key)} -> {_shown(new, key)}")
            for key in changed]


def _hyper_detail(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = [key for key in sorted({*old, *new}) if old.get(key) != new.get(key)]
    return ", ".join(f"{key} {_shown(old, key)} -> {_shown(new, key)}" for key in keys)


def _run_causes(where: str, old: RunRecord, new: RunRecord, code_at: CodeAt | None) -> list[Cause]:
    a, b = old.spec, new.spec
    causes = [Cause(what, where, f"{before} -> {after}") for what, before, after in (
        ("function", a.function, b.function), ("handler", a.handler, b.handler),
        ("environment", _short(a.env_hash), _short(b.env_hash)),
        ("image", _short(a.image_id), _short(b.image_id))) if before != after]
    for name in sorted({*a.inputs, *b.inputs}):
        before, after = a.inputs.get(name), b.inputs.get(name)
        if before is None or after is None or before.hash != after.hash:
            causes.append(Cause("input", where, f"{name}: {_input_text(before)} -> "
                                                f"{_input_text(after)}"))
    old_code, new_code = _code(old, code_at), _code(new, code_at)
    if old_code is not None and new_code is not None and old_code != new_code:
        files = [path for path in sorted({*old_code, *new_code})
                 if old_code.get(path) != new_code.get(path)]
        causes.append(Cause("code", where, ", ".join(files)))
    return causes


def _code(record: RunRecord, code_at: CodeAt | None) -> Mapping[str, str | None] | None:
    if record.spec.code:
        return record.spec.code
    if code_at is None or not record.spec.function or not record.spec.revision or record.spec.dirty:
        return None
    return code_at(record.spec.revision, record.spec.function)


def _input_text(item: Any) -> str:
    if item is None:
        return "(none)"
    return f"{item.uri} {_short(item.hash) or '(no hash)'}"


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    algorithm, _, digest = text.rpartition(":")
    return f"{algorithm + ':' if algorithm else ''}{digest[:12]}"


def _shown(values: Mapping[str, Any], key: str) -> str:
    return json.dumps(values[key], default=str) if key in values else "(unset)"
