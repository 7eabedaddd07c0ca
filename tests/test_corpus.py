"""The corpus of broken projects: the real CLI must reject each one, at the right place.

tests/corpus/base/ is a small valid project. Every folder of tests/corpus/broken/ is one
defect, written as an overlay on the base: its files replace or add files of the base at
the same relative paths, and a file whose whole content is the line `#DELETE` removes
that file from the base. A case may also hold a `generate.py` defining
`make(root: pathlib.Path) -> None`, called on the project after the overlay (for files
too big or too odd to commit).

Each case's `expect.txt` holds two lines: `FILE:LINE` (FILE relative to the project
root; several `FILE:LINE` separated by `|` when any of them is right, as for a cycle,
which may be reported at any of its steps), then a fragment that must appear,
case-insensitively, on the same output line as `FILE:LINE:`.

Every case runs `python -m runner validate` in a fresh copy and must exit 1 with that
error, print no traceback, and write nothing. A few run again with `--json`, and a few
are committed to a git repository and checked from a bare clone with `--revision`.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "corpus"
BASE = CORPUS / "base"
BROKEN = CORPUS / "broken"
DELETE_MARK = b"#DELETE"
CASE_FILES = {"expect.txt", "generate.py"}  # in a case folder, but not part of its overlay
MIN_CASES = 250

# Cases also checked with --json: the problems must carry the file and the line.
JSON_CASES = (
    "yaml-syntax-error",
    "non-utf8-bytes",
    "unknown-key-in-step-resources",
    "type-string-for-list",
    "missing-apiversion",
    "duplicate-function-names",
    "missing-step-handler",
    "step-ref-forward",
    "cron-out-of-range",
    "memory-function-gb",
    "code-handler-syntax-error-file",
    "tag-int-on-a-word",
    "yaml-terminal-colour-codes",
    "link-requirements-file-to-etc",
    "schema-error-beside-an-unknown-pipeline",
)
# Cases also checked from a bare clone of a git repository, with --revision HEAD.
GIT_CASES = (
    "yaml-syntax-error",
    "non-utf8-bytes",
    "file-over-1mib",
    "requirements-file-missing",
    "handler-module-missing",
    "code-handler-syntax-error-package",
    "duplicate-function-names",
    "yaml-nul-byte",
    "yaml-unclosed-double-quote",
    "link-project-file-out-of-the-project",
    "link-project-file-loop",
    "link-code-file-absolute",
    "link-code-package-out-of-the-project",
    "link-code-module-out-of-the-project",
    "link-input-out-of-the-project",
    "code-too-deep-for-the-parser",
    "broken-project-yaml-beside-an-unknown-function",
)


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    locations: tuple[str, ...]  # FILE:LINE, any of which is right
    fragment: str

    @classmethod
    def read(cls, folder: Path) -> Case:
        lines = (folder / "expect.txt").read_text("utf-8").splitlines()
        assert len(lines) == 2, f"{folder.name}/expect.txt: want FILE:LINE and a fragment"
        locations = tuple(part.strip() for part in lines[0].split("|"))
        for location in locations:
            file, _, line = location.rpartition(":")
            assert file and line.isdigit(), f"{folder.name}/expect.txt: bad FILE:LINE {location!r}"
        return cls(folder.name, folder, locations, lines[1].strip())

    def matches(self, file: str, line: int) -> bool:
        """Whether `file` (relative to the project, or to the working directory, so a path
        ending in the project-relative one) and `line` are one of the expected locations."""
        return any(
            (file == expected or file.endswith(f"/{expected}")) and str(line) == number
            for expected, _, number in (loc.rpartition(":") for loc in self.locations)
        )


Snapshot = dict[str, tuple[int, int]]


def case_folders() -> list[Path]:
    return sorted(path for path in BROKEN.iterdir() if path.is_dir())


CASES = [Case.read(folder) for folder in case_folders()]
BY_NAME = {case.name: case for case in CASES}


def build_project(case: Case | None, project: Path) -> Path:
    """A copy of the base at `project`, with the case's overlay and generate.py applied."""
    shutil.copytree(BASE, project, ignore=shutil.ignore_patterns("__pycache__"))
    if case is None:
        return project
    for source in sorted(case.folder.rglob("*")):
        relative = source.relative_to(case.folder)
        if source.is_dir() or "__pycache__" in relative.parts or str(relative) in CASE_FILES:
            continue
        target = project / relative
        content = source.read_bytes()
        if content.strip() == DELETE_MARK:
            assert target.is_file(), f"{case.name}: #DELETE of {relative}, not in the base"
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    generator = case.folder / "generate.py"
    if generator.is_file():
        make: Callable[[Path], None] = runpy.run_path(str(generator))["make"]
        make(project)  # run_path writes no __pycache__ into the corpus
    return project


def snapshot(root: Path) -> Snapshot:
    """Every file below `root`: its size and modification time."""
    found: Snapshot = {}
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            found[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "RUNYARD_DEBUG"}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


def has_location(line: str, location: str) -> bool:
    """Whether an output line names `location` (FILE:LINE) as a whole, followed by ':'."""
    marker = f"{location}:"
    return line.startswith(marker) or f"/{marker}" in line or f" {marker}" in line


def check_output(case: Case, result: subprocess.CompletedProcess[str]) -> None:
    shown = f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, shown
    assert result.returncode == 1, shown
    lines = (result.stdout + "\n" + result.stderr).splitlines()
    at_place = [line for line in lines if any(has_location(line, loc) for loc in case.locations)]
    assert at_place, f"no error at {' or '.join(case.locations)}\n{shown}"
    wanted = case.fragment.lower()
    assert any(wanted in line.lower() for line in at_place), (
        f"no error at {' or '.join(case.locations)} mentions {case.fragment!r}\n{shown}"
    )


def check_json(case: Case, result: subprocess.CompletedProcess[str]) -> None:
    shown = f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, shown
    assert result.returncode == 1, shown
    report = json.loads(result.stdout)
    assert report["valid"] is False, shown
    problems = report["problems"]
    assert all({"file", "line", "col", "message"} <= set(p) for p in problems), shown
    assert any(
        case.matches(p["file"], p["line"]) and case.fragment.lower() in p["message"].lower()
        for p in problems
    ), f"no problem at {' or '.join(case.locations)} mentions {case.fragment!r}\n{shown}"


def test_base_project_is_valid(tmp_path: Path) -> None:
    project = build_project(None, tmp_path / "project")
    before = snapshot(tmp_path)
    result = run_cli("validate", str(project), cwd=tmp_path)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    assert "ok: project 'corpus'" in result.stdout
    assert snapshot(tmp_path) == before


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} cases"
    for name in (*JSON_CASES, *GIT_CASES):
        assert name in BY_NAME, f"{name} is not a case of the corpus"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_changes_something(case: Case) -> None:
    changes = [p for p in case.folder.rglob("*") if p.is_file() and p.name != "expect.txt"]
    assert changes, f"{case.name} has no overlay file and no generate.py"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_broken_project(case: Case, tmp_path: Path) -> None:
    project = build_project(case, tmp_path / "project")
    before = snapshot(tmp_path)
    check_output(case, run_cli("validate", str(project), cwd=tmp_path))
    assert snapshot(tmp_path) == before, "validate wrote or changed files"


@pytest.mark.parametrize("name", JSON_CASES)
def test_broken_project_json(name: str, tmp_path: Path) -> None:
    case = BY_NAME[name]
    project = build_project(case, tmp_path / "project")
    before = snapshot(tmp_path)
    check_json(case, run_cli("validate", "--json", str(project), cwd=tmp_path))
    assert snapshot(tmp_path) == before, "validate wrote or changed files"


@pytest.mark.parametrize("name", GIT_CASES)
def test_broken_project_from_bare_repository(name: str, tmp_path: Path) -> None:
    case = BY_NAME[name]
    work = build_project(case, tmp_path / "work")
    git("init", "-q", cwd=work)
    git("add", "--all", cwd=work)
    git("commit", "-q", "-m", f"corpus case {name}", cwd=work)
    bare = tmp_path / "project.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    shutil.rmtree(work)  # only the bare repository is left: no working tree to read from
    before = snapshot(tmp_path)
    check_output(case, run_cli("validate", str(bare), "--revision", "HEAD", cwd=tmp_path))
    assert snapshot(tmp_path) == before, "validate wrote or changed files"
