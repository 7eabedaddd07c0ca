"""The report as a site: the page models of `runner.views.report` rendered through the
Jinja2 templates of `templates/report/` (autoescaped: whatever a record holds is text),
with its assets and copies of the artifacts it shows. The same pages are written to a
folder (`runyard report`), committed to the results branch, and served live (`runyard ui`).

Nothing a page loads leaves the site: the charting library (plotly.js, which ships
inside the plotly Python package) is copied into `assets/`, images into `objects/`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import jinja2

from runner.errors import RunyardError
from runner.files import package_file
from runner.forked import forked_map
from runner.git import Repository
from runner.project.loader import load_project
from runner.project.model import Pipeline
from runner.project.source import GitSource
from runner.record.artifacts import ArtifactStore
from runner.record.model import Artifact
from runner.record.results import ResultsBranch
from runner.views.previews import ReadHead
from runner.views.report import (
    Definitions,
    Snapshot,
    children_of,
    compare_page,
    compare_view,
    compared_runs,
    job_page,
    job_view,
    object_file,
    overview,
    run_page,
    run_view,
)
from runner.views.runs import duration_text, value_text

OBJECT_LIMIT = 2 << 20  # an artifact larger than this is not copied into the site
LOGS_AT_ONCE = 256  # logs read ahead of the run pages that show them (a log is 16 MiB at most)
PAGES_AT_ONCE = 5000  # pages rendered before they are handed on, when they are handed on
PAGES_A_PROCESS = 500  # pages rendered a process, at least, when there are many
ASSETS = ("report.css", "report.js", "live.js")
PLOTLY = "plotly.min.js"
Handled = TypeVar("Handled")


class Readers(NamedTuple):
    """How the site reads what is not in the records."""

    logs: Callable[[Sequence[str]], list[bytes]]  # of runs, by uid, read in one go
    head: ReadHead
    object_path: Callable[[str], Path | None]  # the stored file of a content hash
    definitions: Definitions | None = None
    close: Callable[[], None] = lambda: None  # stop the git processes reads went through


def templates() -> jinja2.Environment:
    folder = package_file("templates", "report")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(duration=duration_text, value=value_text, when=_when)
    env.globals.update(run_page=run_page, job_page=job_page, compare_page=compare_page)
    return env


def _when(moment: str | None) -> str:
    return (moment or "")[:19].replace("T", " ")


def plotly_js() -> bytes:
    return (resources.files("plotly") / "package_data" / PLOTLY).read_bytes()


class Site:
    """The pages of one snapshot; `live` pages poll the server that serves them."""

    def __init__(self, snapshot: Snapshot, readers: Readers, live: bool = False) -> None:
        self.snapshot = snapshot
        self.readers = readers
        self.live = live
        self.env = templates()
        self.by_uid = {record.metadata.uid: record for record in snapshot.runs}
        self.comparisons = compared_runs(snapshot)
        self.children = children_of(snapshot)
        # each page's path, and what it shows
        self.job_paths = {job_page(job): job for job in
                          sorted({r.metadata.job for r in snapshot.runs if r.metadata.job})}
        self.compare_paths = {compare_page(name): name for name in self.comparisons}
        self.run_paths = {run_page(record.metadata.uid): record for record in snapshot.runs}
        self._kept: dict[str, Path] | None = None

    def pages(self) -> list[str]:
        return ["index.html", *self.job_paths, *self.compare_paths, *self.run_paths]

    def render(self, path: str, logs: Mapping[str, bytes] | None = None) -> bytes | None:
        """The page at `path`, None when there is none; a run's log from `logs` when given."""
        page = self._page(path, logs)
        if page is None:
            return None
        template, values = page
        root = "../" * path.count("/")
        # the tip only where it belongs: a page that shows what did not change stays the same
        # file, so the report committed with each push adds only the pages that changed
        tip = self.snapshot.tip if self.live or path == "index.html" else None
        return self.env.get_template(template).render(
            root=root, live=self.live, branch=self.snapshot.branch, tip=tip, path=path,
            **values).encode()

    def _page(self, path: str, logs: Mapping[str, bytes] | None) -> tuple[str, dict[str, Any]] | None:
        if path == "index.html":
            return "overview.html.j2", {"view": overview(self.snapshot)}
        if path in self.job_paths:
            job = self.job_paths[path]
            return "job.html.j2", {"view": job_view(self.snapshot, job),
                                   "compare": compare_page(f"job-{job}")}
        if path in self.compare_paths:
            title, records = self.comparisons[self.compare_paths[path]]
            return "compare.html.j2", {"view": compare_view(title, records, self.kept)}
        record = self.run_paths.get(path)
        if record is None:
            return None
        readers = self.readers
        uid = record.metadata.uid
        log = logs[uid] if logs is not None and uid in logs else readers.logs([uid])[0]
        view = run_view(record, self.children.get(uid, []), log, readers.head, self.kept,
                        readers.definitions)
        compare = compare_page(f"trials-{record.metadata.uid}") if view.hyper else None
        return "run.html.j2", {"view": view, "compare": compare}

    def asset(self, name: str) -> bytes | None:
        if name == PLOTLY:
            return plotly_js()
        if name in ASSETS:
            return package_file("templates", "report", "assets", name).read_bytes()
        return None

    def objects(self) -> dict[str, Path]:
        """The stored files the site keeps a copy of, by their path in the site."""
        if self._kept is None:
            self._kept = {}
            for record in self.snapshot.runs:
                for artifact in record.status.artifacts:
                    target = object_file(artifact)
                    if target is None or target in self._kept or (artifact.size or 0) > OBJECT_LIMIT:
                        continue
                    stored = self.readers.object_path(artifact.hash or "")
                    if stored is not None and stored.is_file() and stored.stat().st_size <= OBJECT_LIMIT:
                        self._kept[target] = stored
        return self._kept

    def kept(self, artifact: Artifact) -> str | None:
        target = object_file(artifact)
        return target if target is not None and target in self.objects() else None

    def files(self) -> Iterator[tuple[str, bytes]]:
        """Every file of the site: its pages, assets and copies of artifacts."""
        yield from self.each_page(lambda path, page: (path, page))
        yield from self.other_files()

    def each_page(self, handle: Callable[[str, bytes], Handled],
                  at_once: int = PAGES_AT_ONCE) -> Iterator[Handled]:
        """`handle(path, page)` of every page, in the process that rendered it: a process a
        core when there are many (what `handle` returns comes back pickled, `at_once` pages'
        worth at a time)."""
        pages = self.pages()
        for at in range(0, len(pages), at_once):
            yield from forked_map(
                lambda share: [handle(path, page) for path, page in self.page_files(share)],
                pages[at:at + at_once], PAGES_A_PROCESS,
                before_fork=self.readers.close)  # each process reads its logs through its own git

    def page_files(self, pages: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """The pages at `pages`; the logs of run pages read some at a time."""
        for at in range(0, len(pages), LOGS_AT_ONCE):
            batch = pages[at:at + LOGS_AT_ONCE]
            uids = [self.run_paths[page].metadata.uid for page in batch if page in self.run_paths]
            logs = dict(zip(uids, self.readers.logs(uids), strict=True))
            for page in batch:
                yield page, self.render(page, logs) or b""

    def other_files(self) -> Iterator[tuple[str, bytes]]:
        """The assets and the copies of artifacts."""
        for name in (*ASSETS, PLOTLY):
            yield f"assets/{name}", self.asset(name) or b""
        for target, stored in self.objects().items():
            yield target, stored.read_bytes()


def write_site(site: Site, folder: Path) -> int:
    """Write the site into `folder` (each page by the process that rendered it); the
    number of files written."""
    _writable_folder(folder)
    pages = list(site.each_page(functools.partial(_write_file, folder), at_once=len(site.pages())))
    return len(pages) + len([_write_file(folder, *file) for file in site.other_files()])


def _writable_folder(folder: Path) -> None:
    """`folder` is there (made if need be) and a folder, or the user hears why not."""
    if folder.exists() and not folder.is_dir():
        raise RunyardError(f"cannot write the report to {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunyardError(f"cannot write the report to {folder}: "
                           f"{error.strerror or error}") from None


def _write_file(folder: Path, path: str, data: bytes) -> str:
    target = folder / path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as error:  # a full disk, a read-only folder: the user's to fix
        raise RunyardError(f"cannot write the report's {target}: "
                           f"{error.strerror or error}") from None
    return path


def readers_for(results: ResultsBranch, store: ArtifactStore | None,
                repo: Repository | None = None, prefix: str = "") -> Readers:
    """Readers of the branch's logs, of the artifact store (None: no previews) and of the
    pipelines as committed (from `repo`, when the project's history is at hand)."""

    def object_path(digest: str) -> Path | None:
        if store is None:
            return None
        try:
            return store.path_of(digest)
        except RunyardError:  # a record's hash that is no content hash
            return None

    def head(digest: str, limit: int) -> bytes | None:
        path = object_path(digest)
        if path is None or not path.is_file():
            return None
        with path.open("rb") as handle:
            return handle.read(limit)

    return Readers(results.logs, head, object_path,
                   _definitions(repo, prefix) if repo is not None else None, results.close)


def _definitions(repo: Repository, prefix: str) -> Definitions:
    pipelines: dict[str, Mapping[str, Pipeline]] = {}

    def definition(revision: str, name: str) -> Pipeline | None:
        if revision not in pipelines:
            pipelines[revision] = _pipelines_at(repo, revision, prefix)
        return pipelines[revision].get(name)

    return definition


def _pipelines_at(repo: Repository, revision: str, prefix: str) -> Mapping[str, Pipeline]:
    try:
        with closing(GitSource(repo, revision, prefix)) as source:
            return load_project(source, check=False).pipelines
    except RunyardError:  # gone from the repository, or never a project that loads
        return {}
