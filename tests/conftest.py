"""Shared fixtures: copies of the sample project, as folders and as git repositories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
if str(CHECKOUT) not in sys.path:  # `tests.helpers` imports also under a bare `pytest`
    sys.path.insert(0, str(CHECKOUT))

from tests.helpers import SAMPLE_PROJECT, RunCli, commit_all, copy_project, make_repo  # noqa: E402
from tests.helpers.gitops import Remote, make_remote  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # Tests marked `docker` are never skipped: the engine must be there, or they fail.
    config.addinivalue_line("markers", "docker: needs a running Docker engine (never skipped)")


@pytest.fixture
def sample_project(tmp_path: Path) -> Path:
    """A fresh copy of sample-project/ to change at will."""
    return copy_project(SAMPLE_PROJECT, tmp_path / "sample-project")


@pytest.fixture
def sample_repo(sample_project: Path) -> Path:
    """The sample project's copy as a git repository (branch main) with one commit."""
    make_repo(sample_project)
    commit_all(sample_project, "the sample project")
    return sample_project


@pytest.fixture
def run_cli() -> RunCli:
    """Run `python -m runner ARGS` in a subprocess; return what it did (text)."""

    def run(
        *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", *map(str, args)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    """The GitOps test project committed in a clone of a bare repository with the hook."""
    return make_remote(tmp_path)


@pytest.fixture
def pushed(remote: Remote) -> Remote:
    """The remote after its first push was processed by the hook."""
    remote.first = remote.push_and_wait("main")
    assert remote.first["status"] == "completed", remote.first
    return remote
