"""Benchmark `runyard run` of a trivial function against a bare `docker run`.

    python bench/run_overhead.py [--repeat 15] [--keep DIR]

Makes a temporary git repository holding a one-function project (no
requirements, base python:3.11-slim, a handler returning {"x": 1}), commits
it and builds its image once. Then, interleaved, it times (a) `runyard run fn`
as a whole process (interpreter start, snapshot of the revision, the
container, the record committed to the results branch) against (b) `docker
run --rm IMAGE python3 -c "print({'x': 1})"`, the same work with nothing
around it, and (c) `runyard run fn --backend local`, for information. Prints
the medians and the ratio a/b; the goal is a/b <= 1.25. The image is removed
at the end.

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (the project does not build or a
run fails).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GOAL_RATIO = 1.25
BASE_IMAGE = "python:3.11-slim"
RUNYARD = "(a) runyard run"
DOCKER = "(b) docker run --rm"
LOCAL = "(c) runyard run --backend local"


@dataclass
class Timings:
    """Wall times in seconds of each measured command, by label."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, label: str, seconds: float) -> None:
        self.runs.setdefault(label, []).append(seconds)

    def median(self, label: str) -> float:
        return statistics.median(self.runs[label])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"bench-run-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="runyard-bench-run-") as temp:
        root = Path(args.keep) if args.keep else Path(temp)
        root.mkdir(parents=True, exist_ok=True)
        image = ""
        try:
            make_project(root, name)
            image = build_image(root)
            print(f"project: {root} ({name}); image {image}")
            print(f"interpreter: {sys.executable}")
            print(f"{args.repeat} interleaved rounds after a warm-up\n")
            jobs: dict[str, Callable[[], float]] = {
                RUNYARD: lambda: timed(runyard_run(root)),
                DOCKER: lambda: timed(docker_run(image)),
                LOCAL: lambda: timed([*runyard_run(root), "--backend", "local"]),
            }
            report(interleave(jobs, args.repeat))
        finally:
            if image:
                subprocess.run(["docker", "image", "rm", "-f", image],
                               capture_output=True, check=False)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="interleaved rounds (>= 10)")
    parser.add_argument("--keep", metavar="DIR", help="make the project in DIR and keep it")
    args = parser.parse_args(argv)
    if args.repeat < 10:
        parser.error("--repeat must be at least 10")
    return args


def make_project(root: Path, name: str) -> None:
    """A committed one-function project whose handler returns {"x": 1}."""
    files = {
        "project.yaml": f"apiVersion: runyard/v1\nkind: project\nname: {name}\n",
        "functions/fn.yaml": ("apiVersion: runyard/v1\nkind: function\nname: fn\n"
                              "code: src/fn.py\nhandler: main\n"
                              f"environment:\n  base_image: {BASE_IMAGE}\n"),
        "src/fn.py": 'def main():\n    return {"x": 1}\n',
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


def runyard_run(root: Path) -> list[str]:
    return [sys.executable, "-m", "runner", "run", "fn", "-C", str(root)]


def docker_run(image: str) -> list[str]:
    return ["docker", "run", "--rm", image, "python3", "-c", "print({'x': 1})"]


def timed(command: Sequence[str]) -> float:
    start = time.perf_counter()
    run(command)
    return time.perf_counter() - start


def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `command`; a failure means the setup is wrong, so it stops the bench."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench setup error: {' '.join(command[:6])} ... exited {done.returncode}\n"
                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def interleave(jobs: dict[str, Callable[[], float]], repeat: int) -> Timings:
    """Run each job once to warm caches, then `repeat` rounds of all jobs in turn."""
    for job in jobs.values():
        job()
    timings = Timings()
    for _ in range(repeat):
        for label, job in jobs.items():
            timings.add(label, job())
    return timings


def report(timings: Timings) -> None:
    for label, values in timings.runs.items():
        print(f"{label:<34} median {statistics.median(values):.3f} s "
              f"(min {min(values):.3f}, max {max(values):.3f})")
    ours, bare = timings.median(RUNYARD), timings.median(DOCKER)
    ratio = ours / bare
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"\nratio a/b: {ratio:.2f}x (goal <= {GOAL_RATIO}x: {verdict}); "
          f"runyard's own cost over docker run: {ours - bare:.3f} s")
    print(f"ratio c/b: {timings.median(LOCAL) / bare:.2f}x (local backend, for information)")


if __name__ == "__main__":
    sys.exit(main())
