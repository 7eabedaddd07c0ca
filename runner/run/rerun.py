"""Run a recorded run again as it was (`runyard rerun`): its revision, handler, params at
every level, inputs by content hash from the artifact store, and its image by id.

A hyper-parameter parent or a pipeline run reruns whole; any other run (a trial, a step,
a function run) reruns alone. The new record's `metadata.rerun_of` names the old one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from runner.errors import RunyardError
from runner.git import commit_of
from runner.project.loader import find_project_root, load_project, open_project
from runner.record.compare import Comparison, Counterpart, compare
from runner.record.model import RunInput, RunRecord
from runner.record.results import ResultsBranch, new_uid
from runner.run.backends import DockerBackend
from runner.run.execute import OnLine, Session, execute
from runner.run.inputs import STORE_SCHEME, input_filename
from runner.run.launch import HyperOptions, run_interruptibly, run_target
from runner.run.session import session_for
from runner.run.task import RECORDED, ParamLevels, Task, function_task, job_task

Note = Callable[[str], None]


def recorded_run(project_dir: Path, uid: str) -> tuple[Path, RunRecord]:
    """The project's root and the run whose uid starts with `uid`, whose revision must
    still be in the repository."""
    if not uid.strip():
        raise RunyardError("rerun needs a run's uid (or the start of one)")
    root = find_project_root(project_dir)
    source, git_dir = open_project(root, None, False)
    with closing(source), closing(ResultsBranch(git_dir, load_project(source).results_branch)) as results:
        record = results.read(results.find(uid))
    revision = record.spec.revision
    if not revision or commit_of(git_dir, revision) is None:
        raise RunyardError(f"run {record.metadata.uid} ran revision {revision or '(none)'}, "
                           "which is no longer in the repository: it cannot be run again")
    return root, record


def rerun(project_dir: Path, uid: str, *, exact: bool = False, backend: str | None = None,
          on_line: OnLine = lambda name, line: None) -> Comparison:
    """Run the recorded run `uid` again and compare the two."""
    root, old = recorded_run(project_dir, uid)
    parent = old.metadata.parent
    if parent is not None and old.spec.function is None:
        # a trial of a pipeline job: its steps ran through its parent's hyper-parameters
        raise RunyardError(f"run {old.metadata.uid} is a pipeline run inside run {parent} "
                           f"(trial {old.metadata.iteration}): it reruns with its parent "
                           f"(runyard rerun {parent}), or rerun one of its steps alone")
    if exact and old.spec.dirty:
        raise RunyardError(f"run {old.metadata.uid} ran uncommitted changes: it cannot be "
                           "had exactly as recorded")
    if exact and backend not in (None, old.spec.backend):
        raise RunyardError(f"run {old.metadata.uid} ran on the {old.spec.backend} backend: "
                           f"--exact cannot rerun it on {backend}")
    notes = [f"run {old.metadata.uid} ran uncommitted changes: this rerun runs revision "
             f"{old.spec.revision[:12]} as committed"] if old.spec.dirty else []
    with session_for(*open_project(root, old.spec.revision, False),
                     backend=backend or old.spec.backend,
                     on_line=on_line) as session:
        family = _descendants(session, old)
        _use_images(session, [old, *family], exact, notes.append)
        session.rerun_of = old.metadata.uid
        uid_ = new_uid()
        if _whole(old):
            inputs = _inputs(session, _job_inputs(session, old, family), exact, notes.append)
            new = run_interruptibly(session, lambda: _rerun_whole(session, old, family, inputs, uid_))
        else:
            task = _task(session, old, _inputs(session, old.spec.inputs, exact, notes.append))
            new = run_interruptibly(session, lambda: execute(session, task, uid_))
        return compare(old, new, _counterparts(session, old, new), notes)


def _whole(record: RunRecord) -> bool:
    """A hyper-parameter parent or a pipeline run: it reruns with all its children."""
    spec = record.spec
    return record.metadata.parent is None and (spec.hyper is not None or spec.function is None)


def _descendants(session: Session, record: RunRecord) -> list[RunRecord]:
    """The trials and steps of a run, and theirs."""
    found = []
    for uid in [t.uid for t in record.status.trials] + [s.uid for s in record.status.steps]:
        child = session.results.read(uid)
        found += [child, *_descendants(session, child)]
    return found


def _counterparts(session: Session, old: RunRecord, new: RunRecord,
                  label: str = "") -> list[Counterpart]:
    """Each trial (by iteration) and step (by name) of `old` with its namesake in `new`,
    and theirs."""
    trials = {t.iteration: t.uid for t in new.status.trials}
    steps = {s.name: s.uid for s in new.status.steps}
    pairs = [(f"trial {t.iteration}", t.uid, trials.get(t.iteration)) for t in old.status.trials]
    pairs += [(f"step {s.name}", s.uid, steps.get(s.name)) for s in old.status.steps]
    found: list[Counterpart] = []
    for name, old_uid, new_uid_ in pairs:
        old_child = session.results.read(old_uid)
        new_child = session.results.read(new_uid_) if new_uid_ else None
        found.append((label + name, old_child, new_child))
        if new_child is not None:
            found += _counterparts(session, old_child, new_child, f"{label}{name} ")
    return found


def _job_inputs(session: Session, old: RunRecord,
                family: list[RunRecord]) -> dict[str, RunInput]:
    """The inputs a whole run was given (the job's and those given by hand), as its
    function runs read them: all their inputs but a pipeline step's own."""
    project = session.project
    job = project.jobs.get(old.metadata.job or "")
    pipeline = project.pipelines.get(job.run.pipeline or "") if job else None
    steps = {s.uid: s.name for record in [old, *family] for s in record.status.steps}
    found: dict[str, RunInput] = {}
    for record in family:
        step = pipeline.step(steps.get(record.metadata.uid, "")) if pipeline else None
        own = step.inputs if step else {}
        found.update({name: item for name, item in record.spec.inputs.items()
                      if record.spec.function and name not in own})
    return found


def _rerun_whole(session: Session, old: RunRecord, family: list[RunRecord],
                 inputs: Mapping[str, str], uid: str) -> RunRecord:
    """The same job (or function) with the recorded overrides, hyper-parameters and
    handler; a hyper-parameter search over a pipeline names no handler."""
    hyper: Mapping[str, Any] = old.spec.hyper or {}
    target = old.metadata.job or next((r.spec.function for r in family if r.spec.function), "")
    options = HyperOptions(**{k: hyper.get(k) for k in
                              ("strategy", "stop_condition", "max_errors", "parallel",
                               "isolation")})
    values = {name: list(v) for name, v in hyper.get("params", {}).items()}
    job = session.project.jobs.get(target)
    handler = None if job and job.run.pipeline else \
        next((r.spec.handler for r in family if r.spec.function), None)
    return run_target(session, target, uid, handler=handler,
                      params=old.spec.params.override, inputs=inputs,
                      hyper=values or None, selector=hyper.get("selector"), options=options,
                      name=old.metadata.name)


def _task(session: Session, old: RunRecord, inputs: Mapping[str, str]) -> Task:
    """One run of the recorded function, with the recorded params at every level."""
    project, spec, meta = session.project, old.spec, old.metadata
    job = project.jobs.get(meta.job or "")
    if spec.function is None or spec.function not in project.functions:
        raise RunyardError(f"run {meta.uid}: its function {spec.function!r} is not in the "
                           f"project at revision {spec.revision[:12]}")
    base = (job_task(project, job, handler=spec.handler) if job and job.run.function
            else function_task(project, spec.function, handler=spec.handler))
    levels = {level: dict(getattr(spec.params, level))
              for level in RECORDED}
    return dataclasses.replace(base, name=meta.name, job=meta.job, labels=meta.labels,
                               params=ParamLevels(**levels), inputs=inputs)


def _inputs(session: Session, recorded: Mapping[str, RunInput], exact: bool,
            note: Note) -> dict[str, str]:
    """Inputs by content hash, from the artifact store, under the name the run saw; one
    missing there is read again from its URI (refused with `exact`)."""
    chosen = {}
    for name, item in recorded.items():
        if item.hash and session.store.path_of(item.hash).is_file():
            chosen[name] = f"{STORE_SCHEME}{item.hash}/{input_filename(item.uri)}"
            continue
        if exact:
            raise RunyardError(f"input {name} ({item.uri}) is missing from the artifact store: "
                               "it cannot be had exactly as recorded")
        note(f"input {name}: missing from the artifact store, read again from {item.uri}")
        chosen[name] = item.uri
    return chosen


def _use_images(session: Session, records: list[RunRecord], exact: bool, note: Note) -> None:
    """Each function's recorded image by id while the engine still has it; else the image
    built from the revision's environment, and whether its environment hash matches."""
    if not isinstance(session.backend, DockerBackend):
        return
    recorded: dict[str, tuple[str, str | None]] = {}
    for record in records:
        spec = record.spec
        if spec.function and spec.image_id and spec.function in session.images:
            recorded.setdefault(spec.function, (spec.image_id, spec.env_hash))
    images = dict(session.images)
    for function, (image_id, env_hash) in recorded.items():
        built = images[function]
        if built.image_id == image_id or _has_image(session.backend, image_id):
            images[function] = built._replace(
                tag=built.tag if built.image_id == image_id else image_id, image_id=image_id,
                env_hash=env_hash or built.env_hash)
            note(f"image of {function}: {image_id[:19]}, as recorded")
            continue
        same = built.env_hash == env_hash
        if exact and not same:
            raise RunyardError(f"image {image_id[:19]} of {function} is gone and the "
                               "rebuilt one's environment hash differs from the record's")
        note(f"image of {function}: {image_id[:19]} is gone, rebuilt as "
             f"{built.image_id[:19]}; environment hash {'matches' if same else 'differs'}")
    session.images = images


def _has_image(backend: DockerBackend, image_id: str) -> bool:
    return backend.engine.inspect_image(image_id) is not None
