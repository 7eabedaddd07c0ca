"""Benchmark a no-op `runyard build` against one engine round trip (`docker image ls`).

    python bench/build_noop.py [--functions 50] [--envs 3] [--repeat 15] [--keep DIR]

Generates a project of N functions (with pipelines and jobs around them, as
bench/genproject.py makes them) whose functions share a few tiny environments,
builds its images once, then times, interleaved, (a) `runyard build` when every
image is present (the whole process: interpreter start, loading and checking
the project, hashing every environment, one engine round trip) against (b)
`docker image ls` (one engine round trip from the Docker CLI). Prints both
medians and their ratio; the goal is (a) <= 0.5 s wall. The images the bench
made are removed at the end.

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (the project does not build, or a
timed `runyard build` builds anything).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from genproject import Counts, function_name, generate

GOAL_SECONDS = 0.5
BASE_IMAGE = "python:3.11-slim"
LABEL_PROJECT = "dev.runyard.project"
_ENVIRONMENT = re.compile(r"^environment:\n(?:  .*\n)+", re.MULTILINE)


class Took(NamedTuple):
    """What one command took: wall time, and the CPU time (user + system) of its process."""

    wall: float
    cpu: float


@dataclass
class Timings:
    """What each measured command took, by label."""

    runs: dict[str, list[Took]] = field(default_factory=dict)

    def add(self, label: str, took: Took) -> None:
        self.runs.setdefault(label, []).append(took)

    def median(self, label: str) -> float:
        return statistics.median(took.wall for took in self.runs[label])

    def median_cpu(self, label: str) -> float:
        return statistics.median(took.cpu for took in self.runs[label])

    def walls(self, label: str) -> list[float]:
        return [took.wall for took in self.runs[label]]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"bench-noop-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="runyard-bench-noop-") as temp:
        root = Path(args.keep) if args.keep else Path(temp)
        root.mkdir(parents=True, exist_ok=True)
        try:
            counts = make_project(root, name, args.functions, args.envs)
            print(f"project: {root} ({name}: {counts.functions} functions, "
                  f"{counts.pipelines} pipelines, {counts.jobs} jobs; {args.envs} environments)")
            print(f"interpreter: {sys.executable}")
            first = build_once(root)
            took = sum(float(entry["seconds"]) for entry in first)
            print(f"first build: {len(first)} images built ({took:.1f} s of build time)\n"
                  f"{args.repeat} interleaved rounds after a warm-up\n")
            jobs: dict[str, Callable[[], Took]] = {
                "runyard build (no-op)": lambda: runyard_noop(root),
                "docker image ls": docker_image_ls,
                "runyard validate": lambda: timed([sys.executable, "-m", "runner", "validate",
                                                   str(root)])[0],
                "python -c pass": lambda: timed([sys.executable, "-c", "pass"])[0],
            }
            timings = interleave(jobs, args.repeat)
            report(timings)
        finally:
            remove_images(name)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=50, help="functions in the project")
    parser.add_argument("--envs", type=int, default=3, help="distinct environments among them")
    parser.add_argument("--repeat", type=int, default=15, help="interleaved rounds (>= 10)")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    args = parser.parse_args(argv)
    if args.repeat < 10:
        parser.error("--repeat must be at least 10")
    return args


def make_project(root: Path, name: str, functions: int, envs: int) -> Counts:
    """A generated project with `functions` functions over `envs` tiny environments."""
    files = next(n for n in range(4, 100 * functions) if Counts.of(n).functions >= functions)
    counts = generate(root, files)
    project = root / "project.yaml"
    project.write_text(re.sub(r"^name: .*$", f"name: {name}", project.read_text("utf-8"),
                              count=1, flags=re.MULTILINE), "utf-8")
    for i in range(counts.functions):
        path = root / "functions" / f"{function_name(i)}.yaml"
        tiny = (f"environment:\n  base_image: {BASE_IMAGE}\n"
                f"  env: {{BENCH_ENV: \"{i % envs}\"}}\n")
        text, found = _ENVIRONMENT.subn(tiny, path.read_text("utf-8"), count=1)
        if not found:
            sys.exit(f"bench setup error: no environment block in {path}")
        path.write_text(text, "utf-8")
    return counts


def build_once(root: Path) -> list[dict[str, Any]]:
    done = run([sys.executable, "-m", "runner", "build", "--json", "-C", str(root)])
    report: list[dict[str, Any]] = json.loads(done.stdout)
    return report


def runyard_noop(root: Path) -> Took:
    took, done = timed([sys.executable, "-m", "runner", "build", "-C", str(root)])
    actions = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    if actions != {"reused"}:
        sys.exit(f"bench error: the no-op build did something:\n{done.stdout[-2000:]}")
    return took


def docker_image_ls() -> Took:
    return timed(["docker", "image", "ls"])[0]


def timed(command: Sequence[str]) -> tuple[Took, subprocess.CompletedProcess[str]]:
    """Wall and CPU time of `command` (the machine may be busy: CPU time is steadier)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = run(command)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Took(wall, cpu), done


def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `command`; a failure means the setup is wrong, so it stops the bench."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench setup error: {' '.join(command[:5])} ... exited {done.returncode}\n"
                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def interleave(jobs: dict[str, Callable[[], Took]], repeat: int) -> Timings:
    """Run each job once to warm caches, then `repeat` rounds of all jobs in turn."""
    for job in jobs.values():
        job()
    timings = Timings()
    for _ in range(repeat):
        for label, job in jobs.items():
            timings.add(label, job())
    return timings


def report(timings: Timings) -> None:
    ours, engine = timings.median("runyard build (no-op)"), timings.median("docker image ls")
    validate, bare = timings.median("runyard validate"), timings.median("python -c pass")
    walls = timings.walls("runyard build (no-op)")
    print(f"(a) runyard build, every image present: median {ours:.3f} s wall "
          f"(min {min(walls):.3f}, max {max(walls):.3f}); "
          f"median CPU {timings.median_cpu('runyard build (no-op)'):.3f} s")
    print(f"(b) docker image ls (one round trip):    median {engine:.3f} s wall; "
          f"median CPU {timings.median_cpu('docker image ls'):.3f} s")
    print(f"    ratio runyard / docker image ls: {ours / engine:.2f}")
    verdict = "met" if ours <= GOAL_SECONDS else "NOT met"
    print(f"    goal runyard no-op <= {GOAL_SECONDS} s: {verdict} "
          f"(ratio to goal {ours / GOAL_SECONDS:.2f})")
    print(f"    for scale: runyard validate (load and check only) median {validate:.3f} s "
          f"(CPU {timings.median_cpu('runyard validate'):.3f}); "
          f"python -c pass median {bare:.3f} s")
    print(f"    load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (a busy machine inflates wall times)")
    print(f"    so build's own cost beyond validate (Docker SDK import, engine, hashing): "
          f"{ours - validate:.3f} s")


def remove_images(name: str) -> None:
    found = subprocess.run(
        ["docker", "image", "ls", "-q", "--filter", f"label={LABEL_PROJECT}={name}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    if found:
        subprocess.run(["docker", "image", "rm", "-f", *sorted(set(found))],
                       capture_output=True, check=False)


if __name__ == "__main__":
    sys.exit(main())
