"""Benchmark a 40-trial grid job (`parallel: 4`) on Docker against 40 bare `docker run`s, 4 at once.

    python bench/grid.py [--repeat 3] [--keep DIR]

Makes a temporary git repository holding a one-function project (no
requirements, base python:3.11-slim, `def f(context, a=0, b=0): return {"s":
a + b}`) and a job `grid` whose hyper-parameters are a grid of 8 x 5 values
with `parallel: 4` and `selector: max.s` (and the same grid as `grid-container`
with `isolation: container`); commits it and builds its image once. Then,
interleaved, it times as whole processes (a) `python -m runner run grid -C DIR`
(a parent run and 40 child runs forked in 4 warm worker containers, each
recorded on the results branch) and (c) `python -m runner run grid-container`
(the same with a container per trial) against (b) `seq 40 | xargs -P 4 -I{}
docker run --rm IMAGE python3 -c "print({'s': 1})"`, the same containers with
nothing around them. Prints the medians and the ratios; the goals are
a/b <= 0.35 and c/b <= 1.1. The image is removed at the end.

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (the project does not build or a
run fails). A runyard run that outlives `--timeout` is killed and reported as
hung; its round has no figure. `--lock-git` also times (a') the same command
with one lock around the reads of the git revision (GitSource), a workaround
for GitPython's shared `git cat-file` process being used by several trial
threads at once, which can hang a run. `make_grid_project` and `runyard_command`
are shared with the other grid benches.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from common import (
    BASE_IMAGE,
    Sample,
    Timings,
    add_keep,
    add_repeat,
    build_one_image,
    commit_project,
    function_yaml,
    interleave,
    job_yaml,
    new_parser,
    print_medians,
    project_yaml,
    ratio_goal,
    remove_image,
    runyard,
    timed_or_hung,
    work_folder,
)

GOAL_RATIO = 0.35
GOAL_CONTAINER = 1.1
JOB = "grid"
CONTAINER_JOB = "grid-container"
PARALLEL = 4
RUNYARD = "(a) runyard run grid (workers)"
DOCKER = "(b) xargs -P 4 docker run --rm"
CONTAINERS = "(c) runyard run grid-container"
LOCKED = "(a') runyard run grid, git reads locked"
# Runs `python -m runner ARGS...` with every GitSource read under one lock.
LOCKED_MAIN = """\
import runpy, sys, threading
import runner.project.source as source
lock = threading.RLock()
def locked(method):
    def call(self, *args, **kwargs):
        with lock:
            return method(self, *args, **kwargs)
    return call
for name in ("object_id", "read", "is_file", "is_dir", "files"):
    setattr(source.GitSource, name, locked(getattr(source.GitSource, name)))
sys.argv = ["runner", *sys.argv[1:]]
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"bench-grid-{uuid.uuid4().hex[:8]}"
    with work_folder("runyard-bench-grid-", args.keep) as root:
        image = ""
        try:
            make_grid_project(root, name, a_values=8, b_values=5)
            image = build_one_image(root)
            print(f"project: {root} ({name}); image {image}")
            print(f"interpreter: {sys.executable}")
            print(f"40 trials, parallel {PARALLEL}; {args.repeat} interleaved rounds after a warm-up\n")
            run_grid = ["run", JOB, "-C", str(root)]
            run_containers = ["run", CONTAINER_JOB, "-C", str(root)]
            jobs: dict[str, Callable[[], Sample]] = {
                RUNYARD: lambda: timed_or_hung(runyard_command(run_grid), args.timeout),
                DOCKER: lambda: timed_or_hung(xargs_docker(image, 40), args.timeout),
                CONTAINERS: lambda: timed_or_hung(runyard_command(run_containers), args.timeout),
            }
            if args.lock_git:
                jobs[LOCKED] = lambda: timed_or_hung(runyard_command(run_grid, locked=True),
                                                     args.timeout)
            report(Timings(interleave(jobs, args.repeat, progress=True)))
        finally:
            remove_image(image)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    add_repeat(parser, default=3, minimum=3)
    add_keep(parser)
    parser.add_argument("--timeout", type=float, default=150.0,
                        help="seconds after which a run counts as hung and is killed")
    parser.add_argument("--lock-git", action="store_true",
                        help="also time runyard with its git reads under one lock (a workaround)")
    return parser.parse_args(argv)


def make_grid_project(root: Path, name: str, *, a_values: int, b_values: int,
                      parallel: int = PARALLEL) -> None:
    """A committed one-function project with a job `grid` of a_values x b_values trials."""
    a_list = ", ".join(str(i) for i in range(a_values))
    b_list = ", ".join(str(i) for i in range(b_values))
    hyper = (f"hyper:\n  strategy: grid\n  params: {{a: [{a_list}], b: [{b_list}]}}\n"
             f"  parallel: {parallel}\n  selector: max.s\n")
    commit_project(root, {
        "project.yaml": project_yaml(name),
        "functions/fn.yaml": function_yaml("fn", "src/fn.py", "f", BASE_IMAGE),
        "src/fn.py": 'def f(context, a=0, b=0):\n    return {"s": a + b}\n',
        f"jobs/{JOB}.yaml": job_yaml(JOB, "function", "fn", hyper),
        f"jobs/{CONTAINER_JOB}.yaml": job_yaml(CONTAINER_JOB, "function", "fn",
                                               hyper + "  isolation: container\n"),
        ".gitignore": ".runyard/\n",
    })


def runyard_command(args: Sequence[str], *, locked: bool = False) -> list[str]:
    """`python -m runner ARGS`, or the same under the git-read lock of LOCKED_MAIN."""
    if locked:
        return [sys.executable, "-c", LOCKED_MAIN, *args]
    return runyard(*args)


def xargs_docker(image: str, count: int) -> list[str]:
    """`seq COUNT | xargs -P 4 -I{} docker run --rm IMAGE ...` as one shell command."""
    script = (f"seq {count} | xargs -P {PARALLEL} -I{{}} docker run --rm {image} "
              "python3 -c \"print({'s': 1})\"")
    return ["sh", "-c", script]


def report(timings: Timings) -> None:
    print()
    print_medians(timings, 40)
    bare = timings.median(DOCKER).wall
    for label, short, goal in ((RUNYARD, "a", GOAL_RATIO), (CONTAINERS, "c", GOAL_CONTAINER),
                               (LOCKED, "a'", GOAL_RATIO)):
        if label not in timings.runs:
            continue
        ours = timings.median(label).wall
        if not timings.walls(label):
            print(f"\nratio {short}/b: no figure, no run finished")
            continue
        print(f"\nratio {short}/b: {ratio_goal(ours / bare, goal)}; "
              f"runyard's own cost over the bare containers: {ours - bare:.3f} s "
              f"({(ours - bare) / 40 * 1000:.0f} ms a trial)")


if __name__ == "__main__":
    sys.exit(main())
