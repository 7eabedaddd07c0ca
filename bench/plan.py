"""Benchmark `runyard plan` on a long history against a bare `git diff`.

    python bench/plan.py [--repeat 15] [--commits 1000] [--functions 200] [--jobs 100] [--keep DIR]

Makes a git repository (with `git fast-import`) of 1,000 commits holding a
project of 200 functions (each its own YAML and code file), pipelines of three
steps, and 100 jobs that run a function or a pipeline. Most commits touch one
small notes file; the LAST one changes the code of one function. Then,
interleaved, it times (a) `python -m runner plan HEAD~1..HEAD -C REPO` as a
whole process against (b) `git diff --name-only HEAD~1 HEAD`, the same diff
with nothing around it. Prints both medians and the ratio a/b; the goal is
(a) <= 0.5 s wall. It checks that the plan runs exactly the jobs that use the
changed function, and, if (a) is over the goal, profiles one plan in-process
and prints the 15 biggest cumulative entries of runner/.

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (the repository cannot be made or
a plan fails).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import (
    PACKAGE_ROOT,
    Sample,
    Timings,
    add_keep,
    add_repeat,
    function_yaml,
    interleave,
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
GOAL_SECONDS = 0.5
RUNYARD = "(a) runyard plan HEAD~1..HEAD"
GIT_DIFF = "(b) git diff --name-only"
STEPS = 3


@dataclass(frozen=True)
class Shape:
    """The size of the generated repository and project."""

    commits: int
    functions: int
    jobs: int

    @property
    def pipelines(self) -> int:
        return max(self.jobs // 5, 1)

    @property
    def target(self) -> int:
        """The function whose code the last commit changes."""
        return 7 % self.functions


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shape = Shape(args.commits, args.functions, args.jobs)
    with work_folder("runyard-bench-plan-", args.keep) as root:
        start = time.perf_counter()
        make_repository(root, shape)
        print(f"repository: {root}: {shape.commits} commits, {shape.functions} functions, "
              f"{shape.pipelines} pipelines, {shape.jobs} jobs "
              f"(made in {time.perf_counter() - start:.2f} s)")
        print(f"interpreter: {sys.executable}")
        check_plan(root, shape)
        print(f"{args.repeat} interleaved rounds after a warm-up\n")
        jobs: dict[str, Callable[[], Sample]] = {
            RUNYARD: lambda: timed(plan_command(root), cwd=PACKAGE_ROOT, timeout=TIMEOUT_SECONDS),
            GIT_DIFF: lambda: timed(["git", "-C", str(root), "diff", "--name-only", "HEAD~1", "HEAD"],
                                    timeout=TIMEOUT_SECONDS),
        }
        timings = Timings(interleave(jobs, args.repeat))
        report(timings)
        if timings.median(RUNYARD).wall > GOAL_SECONDS:
            profile(root)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    add_repeat(parser, default=15, minimum=10)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=100)
    add_keep(parser, "the repository")
    args = parser.parse_args(argv)
    if args.commits < 2 or args.functions < STEPS or args.jobs < 1:
        parser.error("need at least 2 commits, 3 functions and 1 job")
    return args


# The project -------------------------------------------------------------------------


def function_name(i: int) -> str:
    return f"fn-{i:03d}"


def code_path(i: int) -> str:
    return f"src/fn_{i:03d}.py"


def code_text(i: int, version: int = 0) -> str:
    return f'"""Function {i}."""\n\nVERSION = {version}\n\n\ndef main(**params):\n' \
           f'    return {{"x": {i}}}\n'


def pipeline_functions(p: int, shape: Shape) -> list[int]:
    return [(p * STEPS + s) % shape.functions for s in range(STEPS)]


def job_target(j: int, shape: Shape) -> tuple[str, int]:
    """What job j runs: ("pipeline", index) for odd j, ("function", index) for even j."""
    if j % 2:
        return "pipeline", (j // 2) % shape.pipelines
    return "function", (j * 3) % shape.functions


def project_files(shape: Shape) -> dict[str, str]:
    files = {"project.yaml": project_yaml("bench-plan", "defaults: {backend: local}\n")}
    for i in range(shape.functions):
        files[f"functions/{function_name(i)}.yaml"] = function_yaml(function_name(i), code_path(i), "main")
        files[code_path(i)] = code_text(i)
    for p in range(shape.pipelines):
        steps = [(f"step-{s}", function_name(f)) for s, f in enumerate(pipeline_functions(p, shape))]
        files[f"pipelines/pipe-{p:03d}.yaml"] = pipeline_yaml(f"pipe-{p:03d}", steps)
    for j in range(shape.jobs):
        kind, index = job_target(j, shape)
        target = f"pipe-{index:03d}" if kind == "pipeline" else function_name(index)
        files[f"jobs/job-{j:03d}.yaml"] = job_yaml(f"job-{j:03d}", kind, target)
    return files


def expected_jobs(shape: Shape) -> list[str]:
    """The jobs that use the target function, directly or through a pipeline."""
    names = []
    for j in range(shape.jobs):
        kind, index = job_target(j, shape)
        uses = pipeline_functions(index, shape) if kind == "pipeline" else [index]
        if shape.target in uses:
            names.append(f"job-{j:03d}")
    return names


# The repository ----------------------------------------------------------------------


def make_repository(root: Path, shape: Shape) -> None:
    """A repository of `shape.commits` commits on main, its working tree checked out."""
    root.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q", "-b", "main", str(root)], timeout=TIMEOUT_SECONDS)
    stream = fast_import_stream(shape).decode()  # sent back as UTF-8: byte counts hold
    run(["git", "-C", str(root), "fast-import", "--quiet"], stdin=stream, timeout=TIMEOUT_SECONDS)
    run(["git", "-C", str(root), "reset", "-q", "--hard", "main"], timeout=TIMEOUT_SECONDS)


def fast_import_stream(shape: Shape) -> bytes:
    """The first commit adds the project, the middle ones a note each, the last one code."""
    out = io.BytesIO()
    commit(out, 1, {**project_files(shape), "notes/0.txt": "0\n"}, "the project", first=True)
    for n in range(2, shape.commits):
        commit(out, n, {f"notes/{n % 50}.txt": f"{n}\n"}, f"note {n}")
    commit(out, shape.commits, {code_path(shape.target): code_text(shape.target, 1)},
           f"change {function_name(shape.target)}")
    return out.getvalue()


def commit(out: io.BytesIO, mark: int, files: dict[str, str], message: str,
           first: bool = False) -> None:
    when = 1_700_000_000 + mark * 60
    data = message.encode()
    out.write(f"commit refs/heads/main\nmark :{mark}\n"
              f"committer bench <bench@localhost> {when} +0000\ndata {len(data)}\n".encode())
    out.write(data + b"\n")
    if not first:
        out.write(f"from :{mark - 1}\n".encode())
    for path, text in files.items():
        blob = text.encode()
        out.write(f"M 100644 inline {path}\ndata {len(blob)}\n".encode() + blob + b"\n")
    out.write(b"\n")


# Measuring ---------------------------------------------------------------------------


def plan_command(root: Path, *extra: str) -> list[str]:
    return runyard("plan", "HEAD~1..HEAD", "-C", str(root), *extra)


def check_plan(root: Path, shape: Shape) -> None:
    """Print whether the plan runs exactly the jobs that use the changed function."""
    done = run(plan_command(root, "--json"), cwd=PACKAGE_ROOT, timeout=TIMEOUT_SECONDS)
    plan = json.loads(done.stdout)
    got, want = sorted(plan["to_run"]), expected_jobs(shape)
    changed = [f["name"] for f in plan["functions"] if f["reasons"]]
    check = "OK" if got == want and changed == [function_name(shape.target)] else "WRONG"
    print(f"plan check: {check}: changed files {plan['changed']}, functions affected "
          f"{changed}; {len(got)} jobs to run {got} (expected {len(want)}: {want})")


def report(timings: Timings) -> None:
    print_medians(timings, 32)
    ours, bare = timings.median(RUNYARD).wall, timings.median(GIT_DIFF).wall
    print(f"\nratio a/b: {ours / bare:.1f}x; runyard's own cost over git diff: "
          f"{ours - bare:.3f} s; goal a <= {GOAL_SECONDS} s: {verdict(ours <= GOAL_SECONDS)}")


def profile(root: Path) -> None:
    """Profile one plan in this process; print the top cumulative entries of runner/."""
    sys.path.insert(0, str(PACKAGE_ROOT))
    from runner.cli import main as runyard_main

    profiler = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        profiler.runcall(runyard_main, ["plan", "HEAD~1..HEAD", "-C", os.fspath(root)])
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(f"{os.sep}runner{os.sep}", 15)
    print("\nover the goal: profile of one plan in-process (top 15 cumulative, runner/):")
    print(text.getvalue())


if __name__ == "__main__":
    sys.exit(main())
