"""The `runyard-validate` hook, run by the real `pre-commit` on real `git commit`s.

The hook repository is a git copy of this checkout's source at one commit, so
uncommitted work in the checkout is what gets tested. pre-commit builds the
hook's virtual environment (pip, from PyPI) once per module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_PROJECT, commit_all, copy_project, edit_file, git, make_repo
from tests.helpers.git import IDENTITY

CHECKOUT = Path(__file__).resolve().parents[1]
HOOK_SOURCE = ("pyproject.toml", "runner", "schemas", "templates", ".pre-commit-hooks.yaml",
               "README.md")
INSTALL_TIMEOUT = 900  # the first commit builds the hook's environment with pip
MISSING_FUNCTION = "jobs/train.yaml:7:17: no function named 'trainer-v2'"


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This checkout's source as a git repository: (its path, the commit holding the hook)."""
    repo = tmp_path_factory.mktemp("hook-repo")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in HOOK_SOURCE:
        source = CHECKOUT / name
        if source.is_dir() and not source.is_symlink():
            # runner/schemas and runner/templates stay (relative) symlinks
            shutil.copytree(source, repo / name, symlinks=True, ignore=skip)
        elif source.exists():
            shutil.copy2(source, repo / name)
    assert (repo / "runner" / "schemas").is_symlink()
    make_repo(repo)
    return repo, commit_all(repo, "runyard, as checked out")


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pre-commit's cache, shared by this module's tests: the hook is installed once."""
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture(autouse=True)
def use_pre_commit_home(pre_commit_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRE_COMMIT_HOME", str(pre_commit_home))
    monkeypatch.delenv("PRE_COMMIT_ALLOW_NO_CONFIG", raising=False)
    monkeypatch.delenv("SKIP", raising=False)


def hooked_repo(repo: Path, project: str, hook: tuple[Path, str]) -> Path:
    """`repo`: a git repository holding the sample project at `project`, with the hook on."""
    copy_project(SAMPLE_PROJECT, repo / project if project else repo)
    make_repo(repo)
    hook_path, sha = hook
    (repo / ".pre-commit-config.yaml").write_text(
        "repos:\n"
        f"  - repo: {hook_path}\n"
        f"    rev: {sha}\n"
        "    hooks: [{id: runyard-validate}]\n"
    )
    commit_all(repo, "the sample project")
    pre_commit(repo, "install")
    pre_commit(repo, "install-hooks")  # build the environment here, where failures are clear
    return repo


def pre_commit(repo: Path, *args: str) -> str:
    done = subprocess.run(["pre-commit", *args], cwd=repo, env=outside_git(), capture_output=True,
                          text=True, timeout=INSTALL_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def commit(repo: Path, message: str) -> subprocess.CompletedProcess[str]:
    """`git commit` with the hooks on; its output (both streams) is in `stdout`."""
    return subprocess.run(
        ["git", *IDENTITY, "commit", "-m", message], cwd=repo, env=outside_git(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT,
    )


def outside_git() -> dict[str, str]:
    """This environment without GIT_* variables (as set when run from a git hook)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path, hook_repo: tuple[Path, str]) -> Path:
    """A repository holding the sample project at its top, with the hook installed."""
    return hooked_repo(tmp_path / "repo", "", hook_repo)


def test_the_hook_rejects_a_broken_reference_and_accepts_the_fix(repo: Path) -> None:
    before = head(repo)
    edit_file(repo / "jobs" / "train.yaml", "function: trainer,", "function: trainer-v2,")
    git(repo, "add", "jobs/train.yaml")

    rejected = commit(repo, "train with a function that is not there")

    assert rejected.returncode != 0, rejected.stdout
    assert "runyard validate" in rejected.stdout
    assert "Failed" in rejected.stdout
    assert MISSING_FUNCTION in rejected.stdout
    assert "1 error in 1 file" in rejected.stdout
    assert head(repo) == before

    edit_file(repo / "jobs" / "train.yaml", "function: trainer-v2,", "function: trainer,")
    edit_file(repo / "jobs" / "train.yaml", "params: {lr: 0.1,", "params: {lr: 0.2,")
    git(repo, "add", "jobs/train.yaml")

    accepted = commit(repo, "train with a higher learning rate")

    assert accepted.returncode == 0, accepted.stdout
    assert "runyard validate" in accepted.stdout
    assert "Passed" in accepted.stdout
    assert git(repo, "rev-parse", "HEAD~1").strip() == before
    assert "lr: 0.2" in git(repo, "show", "HEAD:jobs/train.yaml")


def test_the_hook_rejects_code_that_loses_a_handler(repo: Path) -> None:
    before = head(repo)
    edit_file(repo / "src" / "prep.py", "def prepare(", "def prepare_rows(")
    git(repo, "add", "src/prep.py")
    assert git(repo, "diff", "--cached", "--name-only").split() == ["src/prep.py"]

    rejected = commit(repo, "rename the data preparation")

    assert rejected.returncode != 0, rejected.stdout
    assert "functions/data-prep.yaml:7:10: handler 'prepare' is not defined in src/prep.py" \
        in rejected.stdout
    assert head(repo) == before


def test_the_hook_checks_what_is_staged_not_the_working_tree(repo: Path) -> None:
    before = head(repo)
    edit_file(repo / "jobs" / "nightly.yaml", "epochs: 50}", "epochs: 60}")
    git(repo, "add", "jobs/nightly.yaml")
    edit_file(repo / "jobs" / "train.yaml", "function: trainer,", "function: trainer-v2,")

    accepted = commit(repo, "more epochs at night")

    assert accepted.returncode == 0, accepted.stdout
    assert "Passed" in accepted.stdout
    assert git(repo, "rev-parse", "HEAD~1").strip() == before
    assert "trainer-v2" in (repo / "jobs" / "train.yaml").read_text()  # still not committed
    assert "trainer-v2" not in git(repo, "show", "HEAD:jobs/train.yaml")


def test_the_hook_names_files_from_the_top_of_the_repository(
    tmp_path: Path, hook_repo: tuple[Path, str]
) -> None:
    repo = hooked_repo(tmp_path / "mono", "ml/churn", hook_repo)
    (repo / "README.md").write_text("# a repository with more than a project\n")
    edit_file(repo / "ml" / "churn" / "jobs" / "train.yaml",
              "function: trainer,", "function: trainer-v2,")
    git(repo, "add", "--all")

    rejected = commit(repo, "train with a function that is not there")

    assert rejected.returncode != 0, rejected.stdout
    assert f"ml/churn/{MISSING_FUNCTION}" in rejected.stdout
