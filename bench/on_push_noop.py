"""Benchmark `runyard on-push` of a push that affects nothing against `git rev-parse`.

    python bench/on_push_noop.py [--repeat 15] [--keep DIR]

Makes a bare repository and a clone of it (no hook installed anywhere) holding
a small project (three functions, a pipeline, four jobs, `defaults: {backend:
local}`), pushes it and processes that first push with `python -m runner
on-push -C BARE`, so its jobs run and are recorded. Then, each round, it
commits a README change in the clone, pushes it, and times (a) `python -m
runner on-push -C BARE` with `OLD NEW refs/heads/main` on standard input, as
a whole process, against (b) `git rev-parse HEAD` in the bare repository, the
floor of any process that asks git anything. Prints both medians and the ratio
a/b; the goal is (a) <= 1 s wall. It checks that every push record of those
rounds says `nothing-to-run`.

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (the first push does not run, or a
command fails).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from common import (
    PACKAGE_ROOT,
    Sample,
    Timings,
    add_keep,
    add_repeat,
    commit_project,
    function_yaml,
    git,
    job_yaml,
    new_parser,
    pipeline_yaml,
    print_medians,
    project_yaml,
    run,
    runyard,
    timed,
    verdict,
    work_folder,
)

TIMEOUT_SECONDS = 120
GOAL_SECONDS = 1.0
RESULTS_BRANCH = "runyard/results"
ZERO = "0" * 40
ON_PUSH = "(a) runyard on-push (README only)"
REV_PARSE = "(b) git rev-parse HEAD"
FUNCTIONS = ("prep", "train", "score")


@dataclass(frozen=True)
class Repos:
    """The bare repository pushed to, and the clone pushed from."""

    bare: Path
    clone: Path

    def git(self, *args: str) -> list[str]:
        return git(self.clone, *args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with work_folder("runyard-bench-onpush-", args.keep) as root:
        repos = Repos(root / "bare.git", root / "clone")
        make_repos(repos)
        first = first_push(repos)
        print(f"repositories: {repos.bare} <- {repos.clone}")
        print(f"interpreter: {sys.executable}")
        print(f"first push {first['revision'][:12]}: {first['status']}, "
              f"runs {[(r['job'], r['state']) for r in first['runs']]}")
        print(f"{args.repeat} rounds after a warm-up, each a new README commit pushed\n")
        timings, statuses = measure(repos, args.repeat)
        report(timings, statuses)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    add_repeat(parser, default=15, minimum=10, what="rounds")
    add_keep(parser, "the repositories")
    return parser.parse_args(argv)


def project_files() -> dict[str, str]:
    files = {"project.yaml": project_yaml("bench-onpush", "defaults: {backend: local}\n"),
             "README.md": "# bench\n",
             ".gitignore": ".runyard/\n"}
    for name in FUNCTIONS:
        files[f"functions/{name}.yaml"] = function_yaml(name, f"src/{name}.py", "main")
        files[f"src/{name}.py"] = f'def main(**params):\n    return {{"{name}": 1}}\n'
        files[f"jobs/{name}.yaml"] = job_yaml(name, "function", name)
    files["pipelines/all.yaml"] = pipeline_yaml("all", [(name, name) for name in FUNCTIONS])
    files["jobs/all.yaml"] = job_yaml("all", "pipeline", "all")
    return files


def make_repos(repos: Repos) -> None:
    run(["git", "init", "-q", "--bare", "-b", "main", str(repos.bare)])
    commit_project(repos.clone, project_files(), branch="main", message="the project")
    run(repos.git("remote", "add", "origin", str(repos.bare)))


def push(repos: Repos) -> str:
    """Push the clone's main; the `OLD NEW REF` line a post-receive hook would get."""
    done = run(["git", "--git-dir", str(repos.bare), "rev-parse", "--verify", "-q", "main"],
               check=False, timeout=TIMEOUT_SECONDS)
    old = done.stdout.strip() or ZERO
    run(repos.git("push", "-q", "origin", "main"), timeout=TIMEOUT_SECONDS)
    new = run(repos.git("rev-parse", "HEAD")).stdout.strip()
    return f"{old} {new} refs/heads/main\n"


def on_push(repos: Repos, line: str) -> Sample:
    return timed(runyard("on-push", "-C", str(repos.bare)), stdin=line, cwd=PACKAGE_ROOT,
                 timeout=TIMEOUT_SECONDS)


def push_record(repos: Repos, revision: str) -> dict[str, Any]:
    done = run(["git", "--git-dir", str(repos.bare), "cat-file", "blob",
                f"{RESULTS_BRANCH}:pushes/{revision}/main.yaml"], timeout=TIMEOUT_SECONDS)
    record: dict[str, Any] = yaml.safe_load(done.stdout)
    return record


def first_push(repos: Repos) -> dict[str, Any]:
    """Push and process the project once, so that its jobs run; stop if they did not."""
    line = push(repos)
    on_push(repos, line)
    record = push_record(repos, line.split()[1])
    if record.get("status") != "completed":
        sys.exit(f"bench setup error: the first push ended {record.get('status')}: {record}")
    return record


def readme_round(repos: Repos, n: int) -> str:
    (repos.clone / "README.md").write_text(f"# bench\n\nround {n}\n", "utf-8")
    run(repos.git("commit", "-q", "-am", f"README, round {n}"))
    return push(repos)


def measure(repos: Repos, repeat: int) -> tuple[Timings, list[str]]:
    """A warm-up round, then `repeat` rounds timed; the push records' statuses."""
    timings, statuses = Timings(), []
    for n in range(repeat + 1):
        line = readme_round(repos, n)
        ours = on_push(repos, line)
        floor = timed(["git", "--git-dir", str(repos.bare), "rev-parse", "HEAD"],
                      timeout=TIMEOUT_SECONDS)
        statuses.append(str(push_record(repos, line.split()[1]).get("status")))
        if n:
            timings.add(ON_PUSH, ours)
            timings.add(REV_PARSE, floor)
    return timings, statuses


def report(timings: Timings, statuses: list[str]) -> None:
    print_medians(timings, 36)
    ours, floor = timings.median(ON_PUSH).wall, timings.median(REV_PARSE).wall
    print(f"\nratio a/b: {ours / floor:.1f}x; goal a <= {GOAL_SECONDS} s: {verdict(ours <= GOAL_SECONDS)}")
    noop = statuses.count("nothing-to-run")
    check = "OK" if noop == len(statuses) else "WRONG"
    print(f"push records: {check}: {noop} of {len(statuses)} say nothing-to-run "
          f"(statuses: {sorted(set(statuses))})")


if __name__ == "__main__":
    sys.exit(main())
