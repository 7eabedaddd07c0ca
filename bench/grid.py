"""Benchmark a 40-trial grid job (`parallel: 4`) against 40 bare `docker run`s, 4 at once.

    python bench/grid.py [--repeat 3] [--keep DIR]

Makes a temporary git repository holding a one-function project (no
requirements, base python:3.11-slim, `def f(context, a=0, b=0): return {"s":
a + b}`) and a job `grid` whose hyper-parameters are a grid of 8 x 5 values
with `parallel: 4` and `selector: max.s`; commits it and builds its image once.
Then, interleaved, it times (a) `python -m runner run grid -C DIR` as a whole
process (a parent run and 40 child runs in containers, each recorded on the
results branch) against (b) `seq 40 | xargs -P 4 -I{} docker run --rm IMAGE
python3 -c "print({'s': 1})"`, the same containers with nothing around them.
Prints the medians and the ratio a/b; the goal is a/b <= 1.2. The image is
removed at the end.

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
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

GOAL_RATIO = 1.2
BASE_IMAGE = "python:3.11-slim"
JOB = "grid"
PARALLEL = 4
RUNYARD = "(a) runyard run grid"
DOCKER = "(b) xargs -P 4 docker run --rm"
LOCKED = "(a') runyard run grid, git reads locked"
# Runs `python -m runner ARGS...` with every GitSource read under one lock.
LOCKED_MAIN = """\
import runpy, sys, threading
import runner.source as source
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
    with tempfile.TemporaryDirectory(prefix="runyard-bench-grid-") as temp:
        root = Path(args.keep) if args.keep else Path(temp)
        root.mkdir(parents=True, exist_ok=True)
        image = ""
        try:
            make_grid_project(root, name, a_values=8, b_values=5)
            image = build_image(root)
            print(f"project: {root} ({name}); image {image}")
            print(f"interpreter: {sys.executable}")
            print(f"40 trials, parallel {PARALLEL}; {args.repeat} interleaved rounds after a warm-up\n")
            jobs: dict[str, Callable[[], float]] = {
                RUNYARD: lambda: timed(runyard_command(["run", JOB, "-C", str(root)]), args.timeout),
                DOCKER: lambda: timed(xargs_docker(image, 40), args.timeout),
            }
            if args.lock_git:
                jobs[LOCKED] = lambda: timed(runyard_command(["run", JOB, "-C", str(root)],
                                                             locked=True), args.timeout)
            report(interleave(jobs, args.repeat))
        finally:
            if image:
                subprocess.run(["docker", "image", "rm", "-f", image],
                               capture_output=True, check=False)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (>= 3)")
    parser.add_argument("--keep", metavar="DIR", help="make the project in DIR and keep it")
    parser.add_argument("--timeout", type=float, default=150.0,
                        help="seconds after which a run counts as hung and is killed")
    parser.add_argument("--lock-git", action="store_true",
                        help="also time runyard with its git reads under one lock (a workaround)")
    args = parser.parse_args(argv)
    if args.repeat < 3:
        parser.error("--repeat must be at least 3")
    return args


def make_grid_project(root: Path, name: str, *, a_values: int, b_values: int,
                      parallel: int = PARALLEL) -> None:
    """A committed one-function project with a job `grid` of a_values x b_values trials."""
    a_list = ", ".join(str(i) for i in range(a_values))
    b_list = ", ".join(str(i) for i in range(b_values))
    files = {
        "project.yaml": f"apiVersion: runyard/v1\nkind: project\nname: {name}\n",
        "functions/fn.yaml": ("apiVersion: runyard/v1\nkind: function\nname: fn\n"
                              "code: src/fn.py\nhandler: f\n"
                              f"environment:\n  base_image: {BASE_IMAGE}\n"),
        "src/fn.py": 'def f(context, a=0, b=0):\n    return {"s": a + b}\n',
        f"jobs/{JOB}.yaml": ("apiVersion: runyard/v1\nkind: job\n"
                             f"name: {JOB}\nrun: {{function: fn}}\n"
                             "hyper:\n  strategy: grid\n"
                             f"  params: {{a: [{a_list}], b: [{b_list}]}}\n"
                             f"  parallel: {parallel}\n  selector: max.s\n"),
        ".gitignore": ".runyard/\n",
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, "utf-8")
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    run(["git", "init", "-q", str(root)])
    run([*git, "add", "-A"])
    run([*git, "commit", "-q", "-m", "bench project"])


def build_image(root: Path) -> str:
    """Build the project's one image; its tag."""
    run([sys.executable, "-m", "runner", "build", "-C", str(root)])
    done = run([sys.executable, "-m", "runner", "build", "-C", str(root), "--json"])
    images = [str(entry["image"]) for entry in json.loads(done.stdout)]
    if len(images) != 1:
        sys.exit(f"bench setup error: expected one image, got {images}")
    return images[0]


def runyard_command(args: Sequence[str], *, locked: bool = False) -> list[str]:
    """`python -m runner ARGS`, or the same under the git-read lock of LOCKED_MAIN."""
    if locked:
        return [sys.executable, "-c", LOCKED_MAIN, *args]
    return [sys.executable, "-m", "runner", *args]


def xargs_docker(image: str, count: int) -> list[str]:
    """`seq COUNT | xargs -P 4 -I{} docker run --rm IMAGE ...` as one shell command."""
    script = (f"seq {count} | xargs -P {PARALLEL} -I{{}} docker run --rm {image} "
              "python3 -c \"print({'s': 1})\"")
    return ["sh", "-c", script]


def timed(command: Sequence[str], timeout: float) -> float:
    """Wall seconds of `command`; NaN when it outlived `timeout` and was killed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        print(f"  HUNG: {' '.join(command[:5])} ... still running after {timeout:.0f} s; killed",
              flush=True)
        return math.nan
    if process.returncode != 0:
        sys.exit(f"bench setup error: {' '.join(command[:6])} ... exited {process.returncode}\n"
                 f"{out[-2000:]}{err[-2000:]}")
    return time.perf_counter() - start


def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `command`; a failure means the setup is wrong, so it stops the bench."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench setup error: {' '.join(command[:6])} ... exited {done.returncode}\n"
                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def interleave(jobs: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Run each job once to warm caches, then `repeat` rounds of all jobs in turn."""
    for job in jobs.values():
        job()
    timings: dict[str, list[float]] = {label: [] for label in jobs}
    for round_number in range(1, repeat + 1):
        for label, job in jobs.items():
            timings[label].append(job())
        print(f"round {round_number}/{repeat}: "
              + ", ".join(f"{label} {values[-1]:.2f} s" for label, values in timings.items()),
              flush=True)
    return timings


def median(values: Sequence[float]) -> float:
    """The median of the runs that finished; NaN when none did."""
    done = [v for v in values if not math.isnan(v)]
    return statistics.median(done) if done else math.nan


def report(timings: dict[str, list[float]]) -> None:
    print()
    for label, values in timings.items():
        done = [v for v in values if not math.isnan(v)]
        hung = len(values) - len(done)
        spread = f"min {min(done):.3f}, max {max(done):.3f}" if done else "no run finished"
        print(f"{label:<40} median {median(values):.3f} s ({spread})"
              + (f"; {hung} of {len(values)} HUNG" if hung else ""))
    bare = median(timings[DOCKER])
    for label, short in ((RUNYARD, "a"), (LOCKED, "a'")):
        if label not in timings:
            continue
        if math.isnan(median(timings[label])):
            print(f"\nratio {short}/b: no figure, no run finished")
            continue
        ours = median(timings[label])
        ratio = ours / bare
        verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
        print(f"\nratio {short}/b: {ratio:.2f}x (goal <= {GOAL_RATIO}x: {verdict}); "
              f"runyard's own cost over the bare containers: {ours - bare:.3f} s "
              f"({(ours - bare) / 40 * 1000:.0f} ms a trial)")


if __name__ == "__main__":
    sys.exit(main())
