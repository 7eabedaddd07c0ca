"""Hyper-parameter runs: one parent run (iteration 0) and a child run per trial.

Trials run in parallel up to `hyper.parallel`, on the Docker backend in warm
workers unless `hyper.isolation` is `container` (runner/run/workers.py). After each trial, `stop_condition`
and `max_errors` decide whether new trials may start; trials never started are
recorded `skipped` with the reason. `selector` picks the best trial, whose
results and artifacts the parent carries, with a table of every trial; without a
selector the best is the first trial that met `stop_condition` (the answer that
was asked for), or none. A selector no trial reported a number for fails the parent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, replace
from typing import Any

from runner.errors import RunyardError
from runner.project.condition import Condition, parse_condition
from runner.project.model import Hyper
from runner.project.selector import Selector
from runner.project.trials import expand_trials
from runner.record.model import RunRecord, State, TrialSummary
from runner.record.results import new_uid
from runner.run.execute import Session, new_record, skip
from runner.run.task import ParamLevels
from runner.run.workers import WorkerPool, trial_backend

# Runs trial `iteration` with these params under `parent`, with the given uid.
TrialRunner = Callable[[int, Mapping[str, Any], str, str], RunRecord]
# A record for a trial that never started (iteration, params, parent, uid).
TrialRecord = Callable[[int, Mapping[str, Any], str, str], RunRecord]


def _best(hyper: Hyper, records: list[RunRecord]) -> RunRecord | None:
    """The succeeded trial whose selected result is best; without a selector, the first
    that met the stop condition."""
    selector = Selector.parse(hyper.selector)
    if selector is None:
        condition = parse_condition(hyper.stop_condition) if hyper.stop_condition else None
        return next((r for r in records if r.succeeded and condition is not None
                     and condition.evaluate(r.status.results)), None)
    scored = [r for r in records if r.succeeded and selector.value(r.status.results) is not None]
    return min(scored, key=lambda r: selector.sort_key(r.status.results), default=None)


def run_trials(session: Session, hyper: Hyper, *, name: str, job: str | None,
               labels: Mapping[str, str], params: ParamLevels, run_trial: TrialRunner,
               never_started: TrialRecord, uid: str | None = None,
               one_run_each: bool = False) -> RunRecord:
    """`one_run_each`: a trial is one run (of a function), not a pipeline's."""
    with trial_backend(session, hyper) as used:
        concluded = _run_trials(session, used, name=name, job=job, labels=labels, params=params,
                                run_trial=run_trial, never_started=never_started, uid=uid,
                                one_run_each=one_run_each)
    return session.write(concluded, b"")  # (while the workers are removed)


def _run_trials(session: Session, hyper: Hyper, *, name: str, job: str | None,
                labels: Mapping[str, str], params: ParamLevels, run_trial: TrialRunner,
                never_started: TrialRecord, uid: str | None, one_run_each: bool) -> RunRecord:
    """Every trial run or recorded as never started; the parent's record, to write."""
    parent = uid or new_uid()
    try:
        trials = expand_trials(hyper.strategy, hyper.params, exclude=hyper.exclude,
                               max_trials=hyper.max_trials,
                               seed=session.project.params.get("seed"))
    except ValueError as error:  # what only expanding tells: excludes that leave too few
        raise RunyardError(f"{name}: {error}") from None
    record = new_record(session, uid=parent, name=name, job=job, iteration=0, parent=None,
                        labels=labels, params=params)
    record = replace(record, spec=replace(
        record.spec, hyper={k: v for k, v in asdict(hyper).items() if v is not None}))
    session.write(record)  # `running`, before any trial: a child never lacks its parent
    condition = parse_condition(hyper.stop_condition) if hyper.stop_condition else None
    done: dict[int, RunRecord] = {}
    stop: str | None = None
    started = 0
    parallel = session.at_once(hyper.parallel)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        running: dict[Future[RunRecord], int] = {}
        while started < len(trials) or running:
            while stop is None and not session.abort.is_set() and started < len(trials) \
                    and len(running) < parallel:
                started += 1
                future = pool.submit(run_trial, started, trials[started - 1], parent, new_uid())
                running[future] = started
            if not running:
                break
            if isinstance(session.backend, WorkerPool) and not _more_to_start(
                    session, stop, started, len(trials), one_run_each):
                session.backend.drain(started)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                trial = done[running.pop(future)] = future.result()
                stop = stop or _stop_reason(trial, done, hyper, condition)
    reason = "interrupted" if session.abort.is_set() else (stop or "interrupted")
    state: State = "aborted" if reason == "interrupted" else "skipped"
    for index in range(started + 1, len(trials) + 1):
        done[index] = skip(session, never_started(index, trials[index - 1], parent, new_uid()),
                           state, reason, _why_not_started(reason))
    return _conclude(record, hyper, trials, done)


def _more_to_start(session: Session, stop: str | None, started: int, total: int,
                   one_run_each: bool) -> bool:
    """Whether runs may still start in this search's workers (a pipeline trial's later
    steps may, after the last trial started)."""
    return not one_run_each or (stop is None and not session.abort.is_set() and started < total)


def _stop_reason(trial: RunRecord, done: Mapping[int, RunRecord], hyper: Hyper,
                 condition: Condition | None) -> str | None:
    if condition is not None and trial.succeeded and condition.evaluate(trial.status.results):
        return "stop_condition"
    failures = sum(r.status.state == "failed" for r in done.values())
    if hyper.max_errors is not None and failures > hyper.max_errors:
        return "max_errors"
    return None


def _why_not_started(reason: str) -> str:
    return {"stop_condition": "a finished trial met the stop condition",
            "max_errors": "too many trials failed",
            "interrupted": "stopped by an interruption"}.get(reason, reason)


def _conclude(record: RunRecord, hyper: Hyper, trials: list[dict[str, Any]],
              done: Mapping[int, RunRecord]) -> RunRecord:
    records = [done[i] for i in sorted(done)]
    summaries = tuple(TrialSummary(iteration=i, uid=done[i].metadata.uid, state=done[i].status.state,
                                   params=trials[i - 1], results=done[i].status.results,
                                   reason=done[i].status.reason) for i in sorted(done))
    record = replace(record, status=replace(record.status, trials=summaries))
    best = _best(hyper, records)
    if best is not None:
        record = replace(record, status=replace(
            record.status, best_iteration=best.metadata.iteration,
            results=dict(best.status.results), artifacts=best.status.artifacts))
    failed = sum(r.status.state == "failed" for r in records)
    note = f"{failed} of {len(trials)} trials failed" if failed else None
    if any(r.status.state == "aborted" for r in records):
        return record.ended("aborted", "interrupted", "stopped by an interruption")
    if hyper.max_errors is not None and failed > hyper.max_errors:
        return record.ended("failed", "max_errors", note)
    if not any(r.succeeded for r in records):
        return record.ended("failed", "no_trial_completed", note or "no trial completed")
    selector = Selector.parse(hyper.selector)
    if best is None and selector is not None:
        return record.ended("failed", "selector",
                            f"selector {hyper.selector}: no trial reported {selector.key} as a number")
    return record.ended("completed", None, note)
