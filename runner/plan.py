"""What a change between two revisions affects, and so what a push must run.

A function is affected when its YAML, its code (any file under a package) or
its environment's files change; a job when it is new or changed, its pipeline
changed, a function it uses is affected, or one of its input files changed. A
job with `triggers` runs on push only if it has a push trigger, and with push
`paths` only when a changed file matches them.

What cannot be read of the old revision (it is not in the repository, has no
project folder, does not load, or a function's environment files are gone)
counts as changed, and the plan says so in its notes: a broken old revision
never stops a plan.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.git import changed_paths, commit_of
from runner.project.environment import function_files, image_spec
from runner.project.loader import PROJECT_FILE, load_project
from runner.project.model import Function, Job, Project, is_repo_path
from runner.project.source import GitSource, ProjectSource
from runner.project.yamlread import read_document


class FunctionChange(NamedTuple):
    name: str
    reasons: tuple[str, ...]
    environment_changed: bool
    env_hash: str


class JobDecision(NamedTuple):
    name: str
    runs: bool
    reasons: tuple[str, ...]


@frozen
class Plan:
    """What a change between two revisions affects, and what is to run."""

    old: str | None
    new: str
    changed: tuple[str, ...]
    functions: tuple[FunctionChange, ...]
    jobs: tuple[JobDecision, ...]
    notes: tuple[str, ...] = ()

    @property
    def to_run(self) -> list[str]:
        return [job.name for job in self.jobs if job.runs]

    def images(self) -> dict[str, list[str]]:
        """Environments to build (hash prefix -> the functions that share it)."""
        built: dict[str, list[str]] = {}
        for f in self.functions:
            if f.environment_changed:
                built.setdefault(f.env_hash[:12], []).append(f.name)
        return built

    def to_dict(self) -> dict[str, Any]:
        # fresh lists: a shared reasons tuple would come out of YAML as an &id001 alias
        return {"old": self.old, "new": self.new, "changed": list(self.changed),
                "functions": [{**f._asdict(), "reasons": list(f.reasons)}
                              for f in self.functions],
                "images": self.images(),
                "jobs": [{**j._asdict(), "reasons": list(j.reasons)} for j in self.jobs],
                "to_run": self.to_run, "notes": list(self.notes)}


def changed_files(source: GitSource, old: str | None) -> list[str]:
    """Files of the project that differ between `old` (None: nothing) and the source's revision."""
    return changed_paths(source.git_dir, old, source.revision or "", source.prefix)


@dataclass
class OldSide:
    """What could be read of the old revision, and notes on what could not."""

    revision: str | None
    source: GitSource | None = None
    project: Project | None = None
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def make_plan(project: Project, source: GitSource, old: str | None,
              base_image_ids: Mapping[str, str] | None = None) -> Plan:
    """The plan of a push from `old` to the source's revision. `base_image_ids` (image
    name -> id, from the engine) makes the environment hashes those `build` tags."""
    with closing(read_old_side(source, old)) as side:
        # An invalid old revision has no project; its job files still say which jobs existed.
        old_jobs = set(side.project.jobs) if side.project else _old_names(side.source, "jobs")
        return plan_changes(project, source, changed_files(source, side.revision), side.project,
                            side.source, old, old_jobs, base_image_ids, side.notes)


def read_old_side(source: GitSource, old: str | None) -> OldSide:
    """The old revision's source and project, as far as they can be read."""
    if old is None:
        return OldSide(None)
    if commit_of(source.git_dir, old) is None:
        return OldSide(None, notes=[f"old revision {old[:12]} is not in this repository: "
                                    "every file counts as changed, every job as new"])
    side = OldSide(old)
    try:
        side.source = GitSource(source.repo, old, source.prefix)
    except RunyardError as error:
        side.notes.append(f"old revision {old[:12]} cannot be read ({error}): "
                          "every job counts as new")
        return side
    try:
        side.project = _load(side.source)
    except RunyardError as error:
        side.notes.append(f"the project of old revision {old[:12]} does not load "
                          f"({error.message}): environments count as changed")
    return side


def plan_changes(project: Project, source: ProjectSource, changed: Sequence[str],
                 old_project: Project | None, old_source: ProjectSource | None,
                 old: str | None, old_jobs: set[str],
                 base_image_ids: Mapping[str, str] | None = None,
                 notes: list[str] | None = None) -> Plan:
    """The plan for a set of changed files (from a diff, or from a file watcher); what
    cannot be read of the old side is added to `notes`."""
    changed_set, ids = set(changed), base_image_ids or {}
    old_side = _OldEnvironments(old_project, old_source, ids, notes if notes is not None else [])
    functions = tuple(_function_change(f, project, source, old_side, changed_set, ids)
                      for f in sorted(project.functions.values(), key=lambda f: f.name))
    affected = {f.name: f.reasons for f in functions if f.reasons}
    jobs = tuple(_job_decision(job, project, changed, affected, old_jobs)
                 for job in sorted(project.jobs.values(), key=lambda j: j.name))
    return Plan(old, source.revision or "working tree", tuple(sorted(changed)), functions, jobs,
                tuple(old_side.notes))


@dataclass
class _OldEnvironments:
    """The old revision's environment hashes, function by function."""

    project: Project | None
    source: ProjectSource | None
    base_image_ids: Mapping[str, str]
    notes: list[str]

    def changed(self, function: Function, new_hash: str) -> bool:
        if self.project is None or self.source is None:
            return True
        old_function = self.project.functions.get(function.name)
        if old_function is None:
            return True

        try:
            spec = image_spec(self.project, old_function, self.source, self.base_image_ids)
        except RunyardError as error:
            self.notes.append(f"function {function.name}: the old environment cannot be read "
                              f"({error}): counted as changed")
            return True
        return spec.env_hash != new_hash


def _function_change(function: Function, project: Project, source: ProjectSource,
                     old: _OldEnvironments, changed: set[str],
                     base_image_ids: Mapping[str, str]) -> FunctionChange:
    reasons = []
    if PROJECT_FILE in changed:
        reasons.append("project.yaml changed")
    for path in function_files(function, source):
        hits = _under(path, changed)
        if hits:
            what = "definition" if path == function.file else \
                ("environment" if path == function.environment.requirements_file else "code")
            reasons.append(f"{what} changed ({', '.join(hits[:3])}{', ...' if len(hits) > 3 else ''})")

    env_hash = image_spec(project, function, source, base_image_ids).env_hash
    env_changed = bool(reasons) and old.changed(function, env_hash)
    return FunctionChange(function.name, tuple(reasons), env_changed, env_hash)


def _load(source: GitSource) -> Project:
    """The old revision's project, unchecked: it is only compared against, never run."""

    return load_project(source, check=False)


def _job_decision(job: Job, project: Project, changed: Sequence[str],
                  affected: dict[str, tuple[str, ...]], old_jobs: set[str]) -> JobDecision:
    if not job.runs_on_push:
        return JobDecision(job.name, False, ("schedule only: never runs on push",))
    reasons = _job_reasons(job, project, changed, affected, old_jobs)
    paths = job.triggers.paths if job.triggers else None
    if paths is not None:
        matched = [p for p in changed if any(_glob(p, g) for g in paths)]
        own = [r for r in reasons if r.startswith(("new job", "job changed"))]
        reasons = own + ([f"paths matched ({', '.join(matched[:3])})"] if matched else [])
    if not reasons:
        return JobDecision(job.name, False, ("nothing it uses changed",))
    return JobDecision(job.name, True, tuple(reasons))


def _job_reasons(job: Job, project: Project, changed: Sequence[str],
                 affected: dict[str, tuple[str, ...]], old_jobs: set[str]) -> list[str]:
    reasons = []
    if job.name not in old_jobs:
        reasons.append("new job")
    elif job.file in changed:
        reasons.append("job changed")
    functions = [job.run.function] if job.run.function else []
    inputs = list(job.inputs.values())
    if job.run.pipeline:
        pipeline = project.pipelines[job.run.pipeline]
        if pipeline.file in changed:
            reasons.append(f"pipeline {pipeline.name} changed")
        functions += [step.function for step in pipeline.steps]
        inputs += [uri for step in pipeline.steps for uri in step.inputs.values()]
    for name in dict.fromkeys(functions):
        if name in affected:
            reasons.append(f"function {name} changed")
    for uri in inputs:
        if is_repo_path(uri) and uri in changed:
            reasons.append(f"input {uri} changed")
    return reasons


def _old_names(old_source: GitSource | None, folder: str) -> set[str]:
    """Names of the old revision's objects of a kind (none without an old revision)."""
    if old_source is None:
        return set()

    names = set()
    for path in old_source.files(folder):
        try:
            data = read_document(path, old_source.read(path)).data
        except RunyardError:
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            names.add(data["name"])
    return names


def _under(path: str, changed: Iterable[str]) -> list[str]:
    folder = path.rstrip("/") + "/"
    return [p for p in changed if p == path or p.startswith(folder)]


def _glob(path: str, pattern: str) -> bool:
    """A glob where `**` crosses folders and `*` does not."""
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.fullmatch(regex, path) is not None or fnmatch.fnmatchcase(path, pattern)


def plan_lines(plan: Plan) -> list[str]:
    """The plan in the spirit of `terraform plan`."""
    old = plan.old[:12] if plan.old else "(nothing)"
    lines = [f"runyard plan {old}..{plan.new[:12]}: {len(plan.changed)} files changed",
             *(f"note: {note}" for note in plan.notes), ""]
    lines.append("functions:")
    for f in plan.functions:
        mark = "~" if f.reasons else " "
        lines.append(f"  {mark} {f.name:<20} {'; '.join(f.reasons) or 'unchanged'}")
    images = plan.images()
    if images:
        lines += ["", "images to build:"]
        lines += [f"  + {digest}  for {', '.join(names)}" for digest, names in images.items()]
    lines += ["", "jobs:"]
    for job in plan.jobs:
        mark = "+" if job.runs else " "
        verdict = "will run" if job.runs else "will not run"
        lines.append(f"  {mark} {job.name:<20} {verdict}: {'; '.join(job.reasons)}")
    runs = len(plan.to_run)
    lines += ["", f"Plan: {runs} job{'s' if runs != 1 else ''} to run, "
                  f"{len(plan.jobs) - runs} not."]
    return lines
