"""The report's pages as typed models, made from a snapshot of the results branch.

Reading is apart (`read_snapshot`): everything a page needs comes from the records and
push records it returns, and from two readers (a run's log, an artifact's first bytes),
so a faster read side can stand in for it. A record that cannot be read is left out
and named, with where it is and why, on the overview page: a broken record never keeps
the other pages from rendering.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.project.model import Pipeline
from runner.project.selector import Selector
from runner.record.index import key_params, row_of
from runner.record.model import Artifact, PushRecord, RunRecord, StepSummary
from runner.record.results import ResultsBranch, run_folder, unique_prefixes
from runner.views.previews import IMAGE_TYPES, Preview, ReadHead, file_type, preview
from runner.views.pushes import PushRow, push_rows
from runner.views.runs import Query, RunRow, list_runs, number, value_text

LOG_TAIL = 256 * 1024  # of a log, the page shows the end
SHOWN = 20  # pushes, and runs of no job, on the overview
TREND_POINTS = 30
COMPARE_RUNS = 50  # columns of a comparison page at most

Kept = Callable[[Artifact], "str | None"]
"""Where the site keeps a copy of an artifact's stored object; None when it keeps none."""
Definitions = Callable[[str, str], "Pipeline | None"]
"""(revision, pipeline name) -> the pipeline as committed then, None when unknown."""


class Problem(NamedTuple):
    where: str
    message: str


@frozen
class Snapshot:
    """What the report is made from: every readable record, and what could not be read."""

    branch: str
    tip: str | None
    runs: tuple[RunRecord, ...]  # newest first (by start: a uid need not sort by time)
    pushes: tuple[PushRecord, ...]  # newest received first
    problems: tuple[Problem, ...] = ()


def read_snapshot(results: ResultsBranch) -> Snapshot:
    """Every run and push record of the branch (the one place the report reads records), all
    read at one commit, in one stream of requests."""
    tip = results.store.tip()
    runs, pushes, problems = [], [], []
    for uid, read in results.all_records(tip):
        if isinstance(read, RunyardError):
            problems.append(Problem(f"{run_folder(uid)}/run.yaml", str(read)))
        else:
            runs.append(read)
    for path, push in results.push_records(tip):
        if isinstance(push, RunyardError):
            problems.append(Problem(path, str(push)))
        else:
            pushes.append(push)
    pushes.sort(key=lambda push: push.received or "", reverse=True)
    runs.sort(key=lambda run: (run.status.start or "", run.metadata.uid), reverse=True)
    return Snapshot(results.branch, tip, tuple(runs), tuple(pushes), tuple(problems))


# --- names of pages ----------------------------------------------------------------------------


def slug(text: str) -> str:
    """A file name for `text` (a job name or uid from a record, which may be anything)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".")[:80]
    if safe == text and safe:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def run_page(uid: str) -> str:
    return f"run/{slug(uid)}.html"


def job_page(job: str) -> str:
    return f"job/{slug(job)}.html"


def compare_page(name: str) -> str:
    return f"compare/{slug(name)}.html"


def object_file(artifact: Artifact) -> str | None:
    """Where the site keeps a copy of the artifact's stored object."""
    if not artifact.hash or not re.fullmatch(r"sha256:[0-9a-f]{64}", artifact.hash):
        return None
    kind = file_type(artifact)
    extension = f".{kind}" if re.fullmatch(r"[a-z0-9]{1,8}", kind) else ""
    return f"objects/{artifact.hash.removeprefix('sha256:')}{extension}"


# --- the overview ------------------------------------------------------------------------------


class Point(NamedTuple):
    uid: str
    revision: str
    start: str
    value: float


class JobSummary(NamedTuple):
    name: str
    runs: int
    last: RunRow
    selector: str | None
    current: bool | None  # None: not known (no push recorded)
    why: str
    trend: tuple[Point, ...]


class Overview(NamedTuple):
    branch: str
    tip: str | None
    jobs: tuple[JobSummary, ...]
    loose: tuple[RunRow, ...]  # top-level runs of no job
    pushes: tuple[PushRow, ...]
    problems: tuple[Problem, ...]


def overview(snapshot: Snapshot) -> Overview:
    tops = [record for record in snapshot.runs if not record.metadata.parent]
    prefixes = unique_prefixes(record.metadata.uid for record in snapshot.runs)
    by_job: dict[str, list[RunRecord]] = {}
    for record in tops:
        if record.metadata.job:
            by_job.setdefault(record.metadata.job, []).append(record)
    head = next((push for push in snapshot.pushes if push.plan), None)
    jobs = tuple(_job_summary(name, runs, head, prefixes) for name, runs in sorted(by_job.items()))
    loose = tuple(_line(record, prefixes, 0) for record in tops if not record.metadata.job)
    return Overview(snapshot.branch, snapshot.tip, jobs, loose[:SHOWN],
                    tuple(push_rows(snapshot.pushes[:SHOWN])), snapshot.problems)


def _job_summary(name: str, runs: Sequence[RunRecord], head: PushRecord | None,
                 prefixes: Mapping[str, str]) -> JobSummary:
    selector = selector_of(runs[0])
    key = selector.key if selector else _first_number(runs)
    trend = _series(runs, key)[-TREND_POINTS:] if key else ()
    current, why = _staleness(name, runs[0], head)
    return JobSummary(name, len(runs), _line(runs[0], prefixes, 0),
                      f"{selector.best}.{selector.key}" if selector else key, current, why, trend)


def _line(record: RunRecord, prefixes: Mapping[str, str], depth: int) -> RunRow:
    return RunRow(row_of(record), prefixes[record.metadata.uid], depth)


def _staleness(job: str, newest: RunRecord, head: PushRecord | None) -> tuple[bool | None, str]:
    """Whether the job's newest results are those of the newest pushed revision, and why."""
    if head is None:
        return None, "no push recorded: its runs were started by hand"
    revision = head.revision[:12]
    if newest.spec.revision == head.revision:
        return True, f"ran at the newest push {revision}"
    decision = next((job_ for job_ in (head.plan or {}).get("jobs") or []
                     if isinstance(job_, dict) and job_.get("name") == job), None)
    reasons = "; ".join(str(r) for r in (decision or {}).get("reasons") or [])
    if decision is None:
        return False, f"not in the plan of the newest push {revision}"
    if not decision.get("runs"):
        return True, f"the newest push {revision} did not need it" + (f": {reasons}" if reasons else "")
    return False, f"the newest push {revision} planned it ({reasons or 'changed'}) but no run of " \
                  "that revision is recorded"


def selector_of(record: RunRecord) -> Selector | None:
    selector = (record.spec.hyper or {}).get("selector")
    return Selector.parse(selector) if isinstance(selector, str) else None


def _first_number(runs: Sequence[RunRecord]) -> str | None:
    return next((key for record in runs for key, value in record.status.results.items()
                 if number(value) is not None), None)


def _series(runs: Sequence[RunRecord], key: str) -> tuple[Point, ...]:
    """The result `key` of each run that has it as a number, oldest first."""
    points = [Point(r.metadata.uid, r.spec.revision[:12], r.status.start or "", value)
              for r in runs if (value := number(r.status.results.get(key))) is not None]
    return tuple(sorted(points, key=lambda point: point.start))


# --- a job -------------------------------------------------------------------------------------


class JobView(NamedTuple):
    name: str
    rows: tuple[RunRow, ...]
    series: Mapping[str, tuple[Point, ...]]  # each numeric result against the revision
    not_numbers: Mapping[str, int]  # results some runs hold as something else than a number


def job_view(snapshot: Snapshot, job: str) -> JobView:
    records = [r for r in snapshot.runs if r.metadata.job == job]
    tops = [r for r in records if not r.metadata.parent]
    rows = tuple(list_runs([row_of(r) for r in records], Query(job=job), unique_prefixes))
    selector = selector_of(tops[0]) if tops else None
    keys = sorted({key for r in tops for key in r.status.results},
                  key=lambda key: (selector is None or key != selector.key, key))  # its own first
    series = {key: _series(tops, key) for key in keys}
    not_numbers = {key: sum(1 for r in tops if key in r.status.results
                            and number(r.status.results[key]) is None) for key in keys}
    return JobView(job, rows, {k: v for k, v in series.items() if v},
                   {k: n for k, n in not_numbers.items() if n})


# --- a run -------------------------------------------------------------------------------------


class ArtifactView(NamedTuple):
    artifact: Artifact
    type: str
    preview: Preview
    file: str | None  # the copy in the site, when one is kept


class TrialRow(NamedTuple):
    iteration: int
    uid: str
    state: str
    reason: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    selected: float | None
    best: bool


class HyperView(NamedTuple):
    selector: str | None
    param_keys: tuple[str, ...]
    result_keys: tuple[str, ...]
    trials: tuple[TrialRow, ...]
    excluded: tuple[str, ...]
    chart: Mapping[str, Any]  # for the charts: numeric params and results of each trial


class DagNode(NamedTuple):
    name: str
    uid: str
    state: str
    duration: float | None
    x: int
    y: int


class DagEdge(NamedTuple):
    source: str
    target: str
    label: str
    kind: str  # "data" or "after"
    path: str  # SVG path data
    label_x: int
    label_y: int


class DagView(NamedTuple):
    nodes: tuple[DagNode, ...]
    edges: tuple[DagEdge, ...]
    width: int
    height: int
    note: str


class RunView(NamedTuple):
    record: RunRecord
    kind: str  # "function", "hyper" or "pipeline"
    provenance: tuple[tuple[str, str], ...]
    inputs: tuple[tuple[str, str, str], ...]  # name, uri, hash
    params: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # level -> (name, value)
    results: tuple[tuple[str, str], ...]
    artifacts: tuple[ArtifactView, ...]
    log: str
    log_cut: int  # bytes of the log's head left out
    rerun: str
    children: tuple[RunRow, ...]
    hyper: HyperView | None
    dag: DagView | None


def children_of(snapshot: Snapshot) -> dict[str, list[RunRecord]]:
    """Each parent's uid, and its trials or steps."""
    found: dict[str, list[RunRecord]] = {}
    for record in snapshot.runs:
        if record.metadata.parent:
            found.setdefault(record.metadata.parent, []).append(record)
    return found


def run_view(record: RunRecord, children: Sequence[RunRecord], log: bytes, read_head: ReadHead,
             kept: Kept, definitions: Definitions | None = None) -> RunView:
    meta, spec, status = record.metadata, record.spec, record.status
    kind = "hyper" if status.trials or spec.hyper else "pipeline" if spec.pipeline else "function"
    prefixes = unique_prefixes(r.metadata.uid for r in children)
    return RunView(
        record, kind, _provenance(record),
        tuple((name, i.uri, i.hash or "") for name, i in spec.inputs.items()),
        tuple((level, tuple((k, value_text(v)) for k, v in values.items()))
              for level in ("project", "pipeline", "job", "override", "step", "resolved")
              if (values := getattr(spec.params, level))),
        tuple((key, value_text(value)) for key, value in status.results.items()),
        tuple(ArtifactView(a, file_type(a), preview(a, read_head), kept(a))
              for a in status.artifacts),
        log[-LOG_TAIL:].decode("utf-8", errors="replace"), max(len(log) - LOG_TAIL, 0),
        f"runyard rerun {meta.uid}",
        tuple(_line(r, prefixes, 1) for r in children),
        hyper_view(record) if kind == "hyper" else None,
        dag_view(record, children, definitions) if kind == "pipeline" and status.steps else None)


def _provenance(record: RunRecord) -> tuple[tuple[str, str], ...]:
    meta, spec, status = record.metadata, record.spec, record.status
    trigger = spec.trigger
    rows = [("state", status.state + (f" ({status.reason})" if status.reason else "")),
            ("job", meta.job or ""), ("project", meta.project),
            ("parent", meta.parent or ""), ("iteration", str(meta.iteration or "")),
            ("attempt", str(meta.attempt)), ("rerun of", meta.rerun_of or ""),
            ("revision", spec.revision + (" (with local changes)" if spec.dirty else "")),
            ("function", spec.function or ""), ("pipeline", spec.pipeline or ""),
            ("handler", spec.handler or ""), ("command", " ".join(spec.command or ())),
            ("image", spec.image or ""), ("image id", spec.image_id or ""),
            ("environment hash", spec.env_hash or ""), ("backend", spec.backend),
            ("trigger", " ".join(filter(None, (trigger.kind, trigger.ref, trigger.detail)))),
            ("host", status.host or ""), ("runner", status.runner or ""),
            ("swarm node", status.node or ""), ("swarm service", status.service or ""),
            ("image digest", status.image_digest or ""),
            ("start", status.start or ""), ("end", status.end or ""),
            ("duration", f"{status.duration:.3f}s" if status.duration is not None else ""),
            ("exit code", "" if status.exit_code is None else str(status.exit_code)),
            ("error", status.error or ""), ("run key", spec.run_key or "")]
    return tuple((label, text) for label, text in rows if text)


def hyper_view(record: RunRecord) -> HyperView:
    status, hyper = record.status, record.spec.hyper or {}
    selector = selector_of(record)
    trials = status.trials
    param_keys = tuple(sorted({k for t in trials for k in t.params}))
    result_keys = tuple(sorted({k for t in trials for k in t.results}))
    rows = tuple(TrialRow(t.iteration, t.uid, t.state, t.reason or "",
                          tuple(value_text(t.params.get(k, "")) for k in param_keys),
                          tuple(value_text(t.results.get(k, "")) for k in result_keys),
                          selector.value(t.results) if selector else None,
                          t.iteration == status.best_iteration) for t in trials)
    excluded = tuple(json.dumps(item, default=str) for item in hyper.get("exclude") or [])
    numeric_params = [k for k in param_keys if any(number(t.params.get(k)) is not None for t in trials)]
    numeric_results = sorted((k for k in result_keys
                              if any(number(t.results.get(k)) is not None for t in trials)),
                             key=lambda k: (selector is None or k != selector.key, k))
    chart = {"selector": selector.key if selector else None,
             "params": numeric_params, "results": numeric_results,
             "trials": [{"iteration": t.iteration, "state": t.state,
                         "values": {k: number(v) for k, v in {**t.params, **t.results}.items()
                                    if number(v) is not None}} for t in trials]}
    return HyperView(f"{selector.best}.{selector.key}" if selector else None, param_keys,
                     result_keys, rows, excluded, chart)


# --- the pipeline's graph ------------------------------------------------------------------------

NODE_W, NODE_H, GAP_X, GAP_Y = 170, 54, 90, 30


def dag_view(record: RunRecord, steps: Sequence[RunRecord],
             definitions: Definitions | None) -> DagView:
    """The steps in layers (each after all it waits for), data edges labelled with the output
    they carry; `after` edges come from the pipeline's definition when it can be read."""
    summaries = record.status.steps
    by_name = {r.metadata.name: r for r in steps}
    pipeline = definitions(record.spec.revision, record.spec.pipeline or "") if definitions else None
    links = _links_from(pipeline) if pipeline else _links_by_hash(summaries, by_name)
    note = "" if pipeline else "the pipeline's definition could not be read: edges found by " \
                               "the artifacts the steps passed on; `after` edges are not shown"
    layer: dict[str, int] = {}
    for step in summaries:  # the record lists steps in the pipeline's order: upstream first
        layer[step.name] = 1 + max((layer.get(src, 0) for src, dst, _, _ in links
                                    if dst == step.name and src in layer), default=-1)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for step in summaries:
        column = layer[step.name]
        rows[column] = rows.get(column, 0) + 1
        place[step.name] = (20 + column * (NODE_W + GAP_X), 20 + (rows[column] - 1) * (NODE_H + GAP_Y))
    nodes = tuple(DagNode(s.name, s.uid, s.state, by_name[s.name].status.duration
                          if s.name in by_name else None, *place[s.name]) for s in summaries)
    edges = tuple(_edge(link, place[link[0]], place[link[1]]) for link in links
                  if link[0] in place and link[1] in place)
    width = 40 + (max(layer.values(), default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = 40 + max(rows.values(), default=1) * (NODE_H + GAP_Y) - GAP_Y + NODE_H
    return DagView(nodes, edges, width, height, note)


def _edge(link: tuple[str, str, str, str], source: tuple[int, int],
          target: tuple[int, int]) -> DagEdge:
    """A curve from the source's right side to the target's left; one that skips layers
    bends below the steps between, and an `after` edge runs a little apart from a data edge."""
    shift = 10 if link[3] == "after" else 0
    x1, y1 = source[0] + NODE_W, source[1] + NODE_H // 2 + shift
    x2, y2 = target[0], target[1] + NODE_H // 2 + shift
    if x2 - x1 > GAP_X:  # over other steps: under them
        low = max(y1, y2) + NODE_H
        path = f"M{x1},{y1} C{x1 + 60},{low} {x2 - 60},{low} {x2},{y2}"
        return DagEdge(*link, path, (x1 + x2) // 2, low - 4)
    path = f"M{x1},{y1} C{x1 + 45},{y1} {x2 - 45},{y2} {x2},{y2}"
    return DagEdge(*link, path, (x1 + x2) // 2, (y1 + y2) // 2 - 4 + shift)


def _links_from(pipeline: Pipeline) -> list[tuple[str, str, str, str]]:
    links = []
    for step in pipeline.steps:
        for uri in step.inputs.values():
            if uri.startswith("step://"):
                source, _, output = uri.removeprefix("step://").partition("/")
                links.append((source, step.name, output, "data"))
        links += [(before, step.name, "after", "after") for before in step.after]
    return links


def _links_by_hash(summaries: Sequence[StepSummary], by_name: Mapping[str, RunRecord]) \
        -> list[tuple[str, str, str, str]]:
    made: dict[str, tuple[str, str]] = {}
    links = []
    for step in summaries:
        record = by_name.get(step.name)
        if record is None:
            continue
        for run_input in record.spec.inputs.values():
            if run_input.hash in made:
                source, key = made[run_input.hash]
                links.append((source, step.name, key, "data"))
        for artifact in record.status.artifacts:
            if artifact.hash:
                made.setdefault(artifact.hash, (step.name, artifact.key))
    return links


# --- comparing runs ----------------------------------------------------------------------------


class CompareRow(NamedTuple):
    section: str
    key: str
    values: tuple[str, ...]
    differ: bool


class CompareView(NamedTuple):
    title: str
    runs: tuple[RunRecord, ...]
    rows: tuple[CompareRow, ...]
    images: tuple[tuple[tuple[str, str | None], ...], ...]  # per run: (key, file)


def compare_view(title: str, records: Sequence[RunRecord], kept: Kept) -> CompareView:
    rows = []
    sections: tuple[tuple[str, Callable[[RunRecord], Mapping[str, Any]]], ...] = (
        ("run", lambda r: {"state": r.status.state, "revision": r.spec.revision[:12],
                           "duration": r.status.duration, "image": r.spec.image}),
        ("param", key_params), ("result", lambda r: r.status.results),
        ("artifact", lambda r: {a.key: (a.hash or "")[:19] for a in r.status.artifacts}))
    for section, pick in sections:
        for key in sorted({k for r in records for k in pick(r)}):
            values = tuple(value_text(pick(r).get(key, "-")) for r in records)
            rows.append(CompareRow(section, key, values, len(set(values)) > 1))
    images = tuple(tuple((a.key, kept(a)) for a in r.status.artifacts
                         if file_type(a) in IMAGE_TYPES) for r in records)
    return CompareView(title, tuple(records), tuple(rows), images)


def compared_runs(snapshot: Snapshot) -> dict[str, tuple[str, list[RunRecord]]]:
    """The comparisons the site has: each job's newest top-level runs, each search's trials."""
    found: dict[str, tuple[str, list[RunRecord]]] = {}
    by_uid = {r.metadata.uid: r for r in snapshot.runs}
    for record in snapshot.runs:
        meta = record.metadata
        if meta.job and not meta.parent:
            name, title = f"job-{meta.job}", f"the newest runs of job {meta.job}"
            runs = found.setdefault(name, (title, []))[1]
            if len(runs) < COMPARE_RUNS:
                runs.append(record)
        selector = selector_of(record)
        if record.status.trials:
            ranked = sorted(record.status.trials, key=lambda t: (
                *(selector.sort_key(t.results) if selector else (0, 0.0)), t.iteration))
            trials = [by_uid[t.uid] for t in ranked if t.uid in by_uid][:COMPARE_RUNS]
            found[f"trials-{meta.uid}"] = (f"the best trials of run {meta.uid}", trials)
    return found
