"""A bare repository with runyard's post-receive hook, a clone that pushes to it, and
readers of what the runner recorded there (with plain git): for the GitOps tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import CHECKOUT
from tests.helpers.git import commit_all, copy_project, git, make_repo

PROJECT = CHECKOUT / "tests" / "projects" / "gitops"
BRANCH = "runyard/results"
ZERO = "0" * 40
WAIT = 60.0
PUSH_JOBS = ["alpha-job", "beta-job", "both-job", "notes-job"]  # the jobs a first push runs


def runyard(*args: str | Path, cwd: Path | None = None, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS`, with `stdin` as its standard input (and `env` added)."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          input=stdin, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def read(git_dir: Path, path: str, rev: str = BRANCH) -> str | None:
    """A file of `rev` in the repository `git_dir` (None when it is not there)."""
    done = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "-p", f"{rev}:{path}"],
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def push_record(git_dir: Path, sha: str, branch: str = "main") -> dict[str, Any] | None:
    """The record of `sha` pushed to `branch` (pushes/<revision>/<branch>.yaml)."""
    raw = read(git_dir, f"pushes/{sha}/{branch}.yaml")
    return yaml.safe_load(raw) if raw else None


def processed(push: dict[str, Any] | None) -> dict[str, Any] | None:
    """A push record once its runner is done with it (None while it is `running`)."""
    return push if push is not None and push["status"] != "running" else None


def tip(git_dir: Path, ref: str = BRANCH) -> str | None:
    done = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet",
                           ref], capture_output=True, text=True)
    return done.stdout.strip() or None


def run_records(git_dir: Path) -> dict[str, dict[str, Any]]:
    """Every run record of the results branch, by uid (read with plain git)."""
    listing = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only",
                              BRANCH, "runs/"], capture_output=True, text=True)
    paths = [p for p in listing.stdout.split() if p.endswith("/run.yaml")]
    if listing.returncode != 0 or not paths:
        return {}
    batch = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                           input="".join(f"{BRANCH}:{p}\n" for p in paths).encode(),
                           capture_output=True, check=True).stdout
    records: dict[str, dict[str, Any]] = {}
    while batch:
        header, _, batch = batch.partition(b"\n")
        size = int(header.split()[2])
        record = yaml.safe_load(batch[:size])
        records[record["metadata"]["uid"]] = record
        batch = batch[size + 1:]
    return records


def children(records: Mapping[str, dict[str, Any]], parent: str) -> dict[str, dict[str, Any]]:
    """The child runs of `parent`, by name."""
    return {r["metadata"]["name"]: r for r in records.values()
            if r["metadata"]["parent"] == parent}


def decisions(push: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["name"]: job for job in push["plan"]["jobs"]}


def ran(push: Mapping[str, Any]) -> dict[str, str]:
    """Job -> state of the runs a push record lists."""
    return {run["job"]: run["state"] for run in push["runs"]}


def fsck_clean(git_dir: Path) -> None:
    done = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stderr and "missing" not in done.stdout + done.stderr


def wait_for(check: Any, what: str, log: Path, timeout: float = WAIT) -> Any:
    """Poll `check()` every 0.2 s until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            pytest.fail(f"{what} did not come within {timeout:.0f} s; on-push log:\n{text}")
        time.sleep(0.2)


@dataclass
class Remote:
    """A bare repository with runyard's hook, and a clone of it that pushes."""

    bare: Path
    work: Path
    first: dict[str, Any] = field(default_factory=dict)  # the first push's record, once made

    @property
    def log(self) -> Path:
        return self.bare / "runyard" / "on-push.log"

    def head(self, clone: Path | None = None) -> str:
        return git(clone or self.work, "rev-parse", "HEAD").strip()

    def change(self, files: Mapping[str, str | None], message: str,
               clone: Path | None = None) -> str:
        """Write (or with None delete) files of a clone, commit, return the commit."""
        root = clone or self.work
        for path, text in files.items():
            target = root / path
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, "utf-8")
        return commit_all(root, message)

    def append(self, path: str, text: str, message: str, clone: Path | None = None) -> str:
        root = clone or self.work
        return self.change({path: (root / path).read_text("utf-8") + text}, message, clone)

    def push(self, *refspecs: str, clone: Path | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["git", "push", "origin", *(refspecs or ("main",))],
                              cwd=clone or self.work, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done

    def wait(self, sha: str, branch: str = "main") -> dict[str, Any]:
        """The push record of `sha` on `branch`, once the push is processed (its runner
        records it `running` first)."""
        record: dict[str, Any] = wait_for(lambda: processed(push_record(self.bare, sha, branch)),
                                          f"the push record of {sha[:12]} on {branch}", self.log)
        return record

    def push_and_wait(self, *refspecs: str) -> dict[str, Any]:
        self.push(*refspecs)
        return self.wait(self.head())

    def fetch_results(self, clone: Path | None = None) -> None:
        git(clone or self.work, "fetch", "--quiet", "origin", f"+{BRANCH}:{BRANCH}")


def make_remote(root: Path) -> Remote:
    """The test project committed in a clone of a bare repository with the hook installed."""
    work = copy_project(PROJECT, root / "work")
    make_repo(work)
    commit_all(work, "the gitops test project")
    bare = root / "bare.git"
    git(root, "init", "--quiet", "--bare", "-b", "main", str(bare))
    # the test project runs on the local backend, which the operator must allow for pushes
    installed = ok(runyard("hook", "install", bare, "--allow-local-backend"))
    assert f"installed {bare / 'hooks' / 'post-receive'}" in installed
    git(work, "remote", "add", "origin", str(bare))
    return Remote(bare, work)
