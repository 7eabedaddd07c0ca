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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TIMEOUT_SECONDS = 120
GOAL_SECONDS = 1.0
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
RESULTS_BRANCH = "runyard/results"
ZERO = "0" * 40
ON_PUSH = "(a) runyard on-push (README only)"
REV_PARSE = "(b) git rev-parse HEAD"
HEADER = "apiVersion: runyard/v1\n"
FUNCTIONS = ("prep", "train", "score")


@dataclass
class Timings:
    """Wall times in seconds of each measured command, by label."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, label: str, seconds: float) -> None:
        self.runs.setdefault(label, []).append(seconds)

    def median(self, label: str) -> float:
        return statistics.median(self.runs[label])


@dataclass(frozen=True)
class Repos:
    """The bare repository pushed to, and the clone pushed from."""

    bare: Path
    clone: Path

    def git(self, *args: str) -> list[str]:
        return ["git", "-C", str(self.clone), "-c", "user.name=bench",
                "-c", "user.email=bench@localhost", *args]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runyard-bench-onpush-") as temp:
        root = Path(args.keep) if args.keep else Path(temp)
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (>= 10)")
    parser.add_argument("--keep", metavar="DIR", help="make the repositories in DIR and keep them")
    args = parser.parse_args(argv)
    if args.repeat < 10:
        parser.error("--repeat must be at least 10")
    return args


def project_files() -> dict[str, str]:
    files = {"project.yaml": f"{HEADER}kind: project\nname: bench-onpush\n"
                             "defaults: {backend: local}\n",
             "README.md": "# bench\n",
             ".gitignore": ".runyard/\n"}
    for name in FUNCTIONS:
        files[f"functions/{name}.yaml"] = (f"{HEADER}kind: function\nname: {name}\n"
                                           f"code: src/{name}.py\nhandler: main\n")
        files[f"src/{name}.py"] = f'def main(**params):\n    return {{"{name}": 1}}\n'
        files[f"jobs/{name}.yaml"] = f"{HEADER}kind: job\nname: {name}\nrun: {{function: {name}}}\n"
    steps = "".join(f"  - name: {name}\n    function: {name}\n" for name in FUNCTIONS)
    files["pipelines/all.yaml"] = f"{HEADER}kind: pipeline\nname: all\nsteps:\n{steps}"
    files["jobs/all.yaml"] = f"{HEADER}kind: job\nname: all\nrun: {{pipeline: all}}\n"
    return files


def make_repos(repos: Repos) -> None:
    run(["git", "init", "-q", "--bare", "-b", "main", str(repos.bare)])
    run(["git", "init", "-q", "-b", "main", str(repos.clone)])
    for path, text in project_files().items():
        (repos.clone / path).parent.mkdir(parents=True, exist_ok=True)
        (repos.clone / path).write_text(text, "utf-8")
    run(repos.git("remote", "add", "origin", str(repos.bare)))
    run(repos.git("add", "-A"))
    run(repos.git("commit", "-q", "-m", "the project"))


def push(repos: Repos) -> str:
    """Push the clone's main; the `OLD NEW REF` line a post-receive hook would get."""
    done = run(["git", "--git-dir", str(repos.bare), "rev-parse", "--verify", "-q", "main"],
               check=False)
    old = done.stdout.strip() or ZERO
    run(repos.git("push", "-q", "origin", "main"))
    new = run(repos.git("rev-parse", "HEAD")).stdout.strip()
    return f"{old} {new} refs/heads/main\n"


def on_push(repos: Repos, line: str) -> float:
    start = time.perf_counter()
    run([sys.executable, "-m", "runner", "on-push", "-C", str(repos.bare)], stdin=line)
    return time.perf_counter() - start


def push_record(repos: Repos, revision: str) -> dict[str, Any]:
    done = run(["git", "--git-dir", str(repos.bare), "cat-file", "blob",
                f"{RESULTS_BRANCH}:pushes/{revision}.yaml"])
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
        seconds = on_push(repos, line)
        floor = timed(["git", "--git-dir", str(repos.bare), "rev-parse", "HEAD"])
        statuses.append(str(push_record(repos, line.split()[1]).get("status")))
        if n:
            timings.add(ON_PUSH, seconds)
            timings.add(REV_PARSE, floor)
    return timings, statuses


def timed(command: Sequence[str]) -> float:
    start = time.perf_counter()
    run(command)
    return time.perf_counter() - start


def run(command: Sequence[str], stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `command`; a failure means the setup is wrong, so it stops the bench."""
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False,
                              cwd=PACKAGE_ROOT, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        sys.exit(f"bench error: {' '.join(command[:6])} ... still running after "
                 f"{TIMEOUT_SECONDS} s (hung?)")
    if check and done.returncode != 0:
        sys.exit(f"bench setup error: {' '.join(command[:6])} ... exited {done.returncode}\n"
                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def report(timings: Timings, statuses: list[str]) -> None:
    for label, values in timings.runs.items():
        print(f"{label:<36} median {statistics.median(values):.3f} s "
              f"(min {min(values):.3f}, max {max(values):.3f})")
    ours, floor = timings.median(ON_PUSH), timings.median(REV_PARSE)
    verdict = "met" if ours <= GOAL_SECONDS else "NOT met"
    print(f"\nratio a/b: {ours / floor:.1f}x; goal a <= {GOAL_SECONDS} s: {verdict}")
    noop = statuses.count("nothing-to-run")
    check = "OK" if noop == len(statuses) else "WRONG"
    print(f"push records: {check}: {noop} of {len(statuses)} say nothing-to-run "
          f"(statuses: {sorted(set(statuses))})")


if __name__ == "__main__":
    sys.exit(main())
