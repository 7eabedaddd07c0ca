"""The project's functions and their history: the revisions at which a function's
definition, code or environment changed, and the runs made with each version.

The history walks the commits of the project (`git log`), reads the project at each
one that touched it (unchecked: an old revision is only read), and marks a new version
of a function where the blob of its YAML, the objects of its code files or its
environment hash differ from the commit before. A run belongs to the version its
`spec.revision` falls in; runs of revisions outside the history are left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import NamedTuple

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.git import Commit, Repository, log
from runner.project.environment import function_files, image_spec
from runner.project.loader import load_project
from runner.project.model import Function, Project
from runner.project.source import GitSource, ProjectSource
from runner.record.model import RunRecord


@frozen
class Engine:
    """What the Docker engine holds, as far as it is known: base image ids by name (the
    environment hash covers them) and the project's images by environment hash (None:
    the engine was not reached, so whether an image is there is unknown)."""

    base_image_ids: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, str] | None = None

    def image(self, env_hash: str | None) -> str | None:
        return None if self.images is None or env_hash is None else self.images.get(env_hash)


class Fingerprint(NamedTuple):
    """What makes a version of a function: its YAML, its code files, its environment."""

    definition: str | None
    code: tuple[tuple[str, str | None], ...]
    env_hash: str | None

    def reasons(self, older: Fingerprint | None) -> tuple[str, ...]:
        if older is None:
            return ("created",)
        pairs = (("definition", self.definition, older.definition),
                 ("code", self.code, older.code), ("environment", self.env_hash, older.env_hash))
        return tuple(what for what, new, old in pairs if new != old) or ("restored",)


class RunRef(NamedTuple):
    uid: str
    job: str | None
    state: str
    revision: str
    start: str | None


class Version(NamedTuple):
    revision: str
    date: str
    subject: str
    reasons: tuple[str, ...]
    env_hash: str | None
    image: str | None  # its tag, when the engine still holds it
    runs: tuple[RunRef, ...]


class FunctionSummary(NamedTuple):
    name: str
    file: str
    code: str | None
    handler: str | None
    env_hash: str | None
    image: str | None
    changed: str | None  # the revision of its newest version
    changed_date: str | None


class CodeFile(NamedTuple):
    path: str
    text: str


class FunctionCode(NamedTuple):
    name: str
    revision: str
    file: str
    definition: str
    files: tuple[CodeFile, ...]


@dataclass
class VersionWalk:
    """The versions of every function, found commit by commit, oldest first."""

    engine: Engine
    versions: dict[str, list[tuple[Commit, Fingerprint]]] = field(default_factory=dict)
    current: dict[str, Fingerprint] = field(default_factory=dict)
    version_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, commit) -> version

    def step(self, commit: Commit, project: Project | None, source: GitSource | None) -> None:
        if project is not None and source is not None:
            now = {name: fingerprint(project, function, source, self.engine)
                   for name, function in project.functions.items()}
            for name, mark in now.items():
                if mark != self.current.get(name):
                    self.versions.setdefault(name, []).append((commit, mark))
            self.current = now
        for name in self.current:
            self.version_of[(name, commit.commit)] = self.versions[name][-1][0].commit


def fingerprint(project: Project, function: Function, source: GitSource,
                engine: Engine) -> Fingerprint:
    files = [path for path in function_files(function, source) if path != function.file]
    return Fingerprint(source.object_id(function.file),
                       tuple((path, source.object_id(path)) for path in files),
                       env_hash(project, function, source, engine))


def env_hash(project: Project, function: Function, source: ProjectSource,
             engine: Engine) -> str | None:
    """The function's environment hash, None when its environment cannot be read."""
    try:
        return image_spec(project, function, source, engine.base_image_ids).env_hash
    except RunyardError:
        return None


def _projects(repo: Repository, head: str, prefix: str
              ) -> Iterator[tuple[Commit, Project | None, GitSource | None]]:
    """Each commit of `head`'s history, oldest first, with the project where it changed."""
    touched = {c.commit for c in log(repo.git_dir, head, [prefix])} if prefix else None
    for commit in reversed(log(repo.git_dir, head)):
        if touched is not None and commit.commit not in touched:
            yield commit, None, None
            continue
        try:
            with closing(GitSource(repo, commit.commit, prefix)) as source:
                yield commit, load_project(source, check=False), source
        except RunyardError:  # no project there, or one that does not load: no change seen
            yield commit, None, None


def walk(repo: Repository, head: str, prefix: str, engine: Engine) -> VersionWalk:
    done = VersionWalk(engine)
    for commit, project, source in _projects(repo, head, prefix):
        done.step(commit, project, source)
    return done


def function_list(project: Project, source: ProjectSource, history: VersionWalk,
                  engine: Engine) -> list[FunctionSummary]:
    """Every function of the project at its revision, and when it last changed."""
    found = []
    for name, function in sorted(project.functions.items()):
        versions = history.versions.get(name)
        newest = versions[-1][0] if versions else None
        hash_ = env_hash(project, function, source, engine)
        found.append(FunctionSummary(name, function.file, function.code, function.handler, hash_,
                                     engine.image(hash_), newest.commit if newest else None,
                                     newest.date if newest else None))
    return found


def function_history(name: str, project: Project, history: VersionWalk, runs: Sequence[RunRecord],
                     engine: Engine) -> list[Version]:
    """The versions of function `name`, newest first, each with the runs made with it."""
    require(project, name)
    by_version: dict[str, list[RunRef]] = {}
    for record in runs:
        version = history.version_of.get((name, record.spec.revision))
        if record.spec.function == name and record.metadata.iteration == 0 and version:
            by_version.setdefault(version, []).append(RunRef(
                record.metadata.uid, record.metadata.job, record.status.state,
                record.spec.revision, record.status.start))
    return [Version(commit.commit, commit.date, commit.subject, mark.reasons(older),
                    mark.env_hash, engine.image(mark.env_hash),
                    tuple(by_version.get(commit.commit, ())))
            for (commit, mark), older in _with_older(history.versions.get(name, []))][::-1]


def _with_older(versions: list[tuple[Commit, Fingerprint]]
                ) -> list[tuple[tuple[Commit, Fingerprint], Fingerprint | None]]:
    return [(version, versions[i - 1][1] if i else None) for i, version in enumerate(versions)]


def require(project: Project, name: str) -> Function:
    """The function `name` of the project; a RunyardError naming the known ones else."""
    function = project.functions.get(name)
    if function is None:
        known = ", ".join(sorted(project.functions)) or "none"
        raise RunyardError(f"no function {name!r} at revision {(project_revision(project))[:12]} "
                           f"(known: {known})")
    return function


def project_revision(project: Project) -> str:
    return project.revision or "the working tree"


def function_code(project: Project, source: ProjectSource, name: str) -> FunctionCode:
    """The definition and the code files of function `name` as the source holds them."""
    function = require(project, name)
    paths = [file for path in function_files(function, source) if path != function.file
             for file in (source.files(path) or [path])]
    return FunctionCode(name, project_revision(project), function.file, _text(source, function.file),
                        tuple(CodeFile(path, _text(source, path)) for path in dict.fromkeys(paths)))


def _text(source: ProjectSource, path: str) -> str:
    return source.read(path).decode("utf-8", "replace")
