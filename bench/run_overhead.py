"""Benchmark `runyard run` of a trivial function against a bare `docker run`.

    python bench/run_overhead.py [--repeat 15] [--keep DIR] [--against DIR]

Makes a temporary git repository holding a one-function project (no
requirements, base python:3.11-slim, a handler returning {"x": 1}), commits
it and builds its image once, and compiles runyard's package to bytecode as
`pip install` does (see common.compile_runyard). Then, interleaved, it times
(a) `runyard run fn` as a whole process (interpreter start, snapshot of the
revision, the container, the record committed to the results branch) against
(b) `docker run --rm IMAGE python3 -c "print({'x': 1})"`, the same work with
nothing around it, and (c) `runyard run fn --backend local` and (e) the interpreter
alone (`python -c pass`), for information. Prints the medians and the ratio a/b; the
goal is a/b <= 1.5 (issue 13).

Run it with the interpreter runyard is installed in (`.venv/bin/python bench/...` for
the one scripts/bootstrap makes): (a) starts that interpreter, and with it whatever its
site-packages' .pth files import at every start. (e) shows what that costs. With
--against DIR, the `runner` package in DIR (a copy of an older checkout's, made
with `cp -rL runner DIR/`) is compiled and timed as (d) in the same rounds. The
image is removed at the end.

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (the project does not build or a
run fails).
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
    compile_runyard,
    function_yaml,
    interleave,
    new_parser,
    print_medians,
    project_yaml,
    ratio_goal,
    remove_image,
    runner_env,
    runyard,
    timed,
    work_folder,
)

GOAL_RATIO = 1.5
RUNYARD = "(a) runyard run"
DOCKER = "(b) docker run --rm"
LOCAL = "(c) runyard run --backend local"
BASELINE = "(d) baseline runyard run"
INTERPRETER = "(e) python -c pass"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"bench-run-{uuid.uuid4().hex[:8]}"
    with work_folder("runyard-bench-run-", args.keep) as root:
        image = ""
        try:
            make_project(root, name)
            image = build_one_image(root)
            print(f"project: {root} ({name}); image {image}")
            print(f"runyard: {compile_runyard()} (compiled to bytecode)")
            print(f"interpreter: {sys.executable}")
            run_fn = runyard("run", "fn", "-C", str(root))
            jobs: dict[str, Callable[[], Sample]] = {
                RUNYARD: lambda: timed(run_fn),
                DOCKER: lambda: timed(docker_run(image)),
                LOCAL: lambda: timed([*run_fn, "--backend", "local"]),
                INTERPRETER: lambda: timed([sys.executable, "-c", "pass"]),
            }
            if args.against:
                baseline = runner_env(Path(args.against).resolve())
                print(f"baseline: {compile_runyard(baseline, root)} (compiled to bytecode)")
                # run from the project: a checkout's runner/ in the working folder would win
                jobs[BASELINE] = lambda: timed(run_fn, env=baseline, cwd=root)
            print(f"{args.repeat} interleaved rounds after a warm-up\n")
            report(Timings(interleave(jobs, args.repeat)))
        finally:
            remove_image(image)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    add_repeat(parser, default=15, minimum=10)
    add_keep(parser)
    parser.add_argument("--against", metavar="DIR",
                        help="also time the runner/ package in DIR (an older copy) in the same rounds")
    return parser.parse_args(argv)


def make_project(root: Path, name: str) -> None:
    """A committed one-function project whose handler returns {"x": 1}."""
    commit_project(root, {
        "project.yaml": project_yaml(name),
        "functions/fn.yaml": function_yaml("fn", "src/fn.py", "main", BASE_IMAGE),
        "src/fn.py": 'def main():\n    return {"x": 1}\n',
        ".gitignore": ".runyard/\n",
    })


def docker_run(image: str) -> list[str]:
    return ["docker", "run", "--rm", image, "python3", "-c", "print({'x': 1})"]


def report(timings: Timings) -> None:
    print_medians(timings, 34)
    ours, bare = timings.median(RUNYARD).wall, timings.median(DOCKER).wall
    print(f"\nratio a/b: {ratio_goal(ours / bare, GOAL_RATIO)}; "
          f"runyard's own cost over docker run: {ours - bare:.3f} s")
    print(f"ratio c/b: {timings.median(LOCAL).wall / bare:.2f}x (local backend, for information)")
    print(f"the interpreter's own start, in (a) and (c): {timings.median(INTERPRETER).wall:.3f} s")
    if BASELINE in timings.runs:
        base = timings.median(BASELINE).wall
        print(f"ratio d/b: {base / bare:.2f}x (the baseline); this checkout / baseline: "
              f"{ours / base:.2f}x")
    # CPU time moves less than wall time on a busy machine: what the command and the
    # processes it started spent themselves (the engine's own work is not in it)
    print("CPU, median: " + ", ".join(
        f"{label.split()[0]} {timings.median(label).cpu:.3f} s"
        for label in timings.runs if label not in (DOCKER, INTERPRETER)))


if __name__ == "__main__":
    sys.exit(main())
