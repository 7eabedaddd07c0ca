"""`runyard watch`: on every change to a project's files, check it again and say
what a push would run (or the errors); optionally rerun the affected jobs on the
working tree with the local backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from runner.errors import ProjectInvalid, RunyardError
from runner.plan import plan_changes, plan_lines
from runner.project.loader import load_project, open_project
from runner.project.model import Project
from runner.project.source import DirectorySource
from runner.run.launch import run_target
from runner.run.session import session_for

IGNORED_PARTS = {".git", ".runyard", "__pycache__", ".mypy_cache", ".pytest_cache"}
QUIET_SECONDS = 0.3

Emit = Callable[[str], None]


class ProjectWatcher:
    """Collects changed paths from the file system and checks the project when they settle."""

    def __init__(self, root: Path, emit: Emit, rerun: bool = False) -> None:
        self.root = root.resolve()
        self.emit = emit
        self.rerun = rerun
        self.pending: set[str] = set()
        self.deleted: set[str] = set()
        self.lock = threading.Lock()
        self.last_event = 0.0
        self.project: Project | None = self._load_quietly()

    def note(self, path: str, deleted: bool = False) -> None:
        """A file changed (called from watchdog's thread)."""
        try:
            relative = Path(path).resolve().relative_to(self.root)
        except ValueError:
            return
        if relative.parts and not IGNORED_PARTS & set(relative.parts) \
                and not relative.name.endswith(("~", ".swp", ".swx")):
            with self.lock:
                self.pending.add(relative.as_posix())
                if deleted:
                    self.deleted.add(relative.as_posix())
                self.last_event = time.monotonic()

    def settle(self) -> bool:
        """Check the project when changes have been quiet a moment; True when it did."""
        with self.lock:
            if not self.pending or time.monotonic() - self.last_event < QUIET_SECONDS:
                return False
            # a file that is gone and was not deleted was an editor's temporary file
            changed = sorted(p for p in self.pending
                             if p in self.deleted or (self.root / p).is_file())
            self.pending, self.deleted = set(), set()
        if changed:
            self.check(changed)
        return bool(changed)

    def check(self, changed: list[str]) -> None:
        source = DirectorySource(self.root)
        self.emit(f"changed: {', '.join(changed)}")
        try:
            project = load_project(source)
        except ProjectInvalid as error:
            for problem in error.problems:
                self.emit(str(problem))
            self.emit(error.message)
            return
        except RunyardError as error:
            self.emit(str(error))
            return
        old_jobs = set(self.project.jobs) if self.project else set()
        plan = plan_changes(project, source, changed, self.project, source, None, old_jobs)
        self.project = project
        for line in plan_lines(plan)[2:]:
            self.emit(line)
        if self.rerun and plan.to_run:
            self._rerun(plan.to_run)

    def _rerun(self, jobs: list[str]) -> None:

        with session_for(*open_project(self.root, None, True), backend="local",
                         on_line=lambda name, line: self.emit(f"{name} | {line}")) as session:
            for job in jobs:
                record = run_target(session, job)
                self.emit(f"job {job}: {record.status.state} ({record.metadata.uid})")

    def _load_quietly(self) -> Project | None:
        try:
            return load_project(DirectorySource(self.root))
        except RunyardError:
            return None


def watch(root: Path, emit: Emit, rerun: bool = False,
          stop: threading.Event | None = None) -> None:
    """Watch until `stop` is set (or forever)."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    watcher = ProjectWatcher(root, emit, rerun)

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.is_directory or event.event_type in ("opened", "closed_no_write"):
                return
            # an editor's save is often a temporary file moved over the real one
            path = event.dest_path if event.event_type == "moved" else event.src_path
            watcher.note(str(path), deleted=event.event_type == "deleted")

    observer = Observer()
    observer.schedule(Handler(), str(watcher.root), recursive=True)
    observer.start()
    emit(f"watching {watcher.root} (Ctrl-C to stop)")
    try:
        while stop is None or not stop.is_set():
            watcher.settle()
            time.sleep(0.1)
    finally:
        observer.stop()
        observer.join()
