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
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import (
    BASE_IMAGE,
    Sample,
    Timings,
    add_keep,
    add_repeat,
    interleave,
    new_parser,
    run,
    runyard,
    timed,
    timed_run,
    verdict,
    work_folder,
)
from genproject import Counts, function_name, generate

GOAL_SECONDS = 0.5
LABEL_PROJECT = "dev.runyard.project"
_ENVIRONMENT = re.compile(r"^environment:\n(?:  .*\n)+", re.MULTILINE)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"bench-noop-{uuid.uuid4().hex[:8]}"
    with work_folder("runyard-bench-noop-", args.keep) as root:
        try:
            counts = make_project(root, name, args.functions, args.envs)
            print(f"project: {root} ({name}: {counts.functions} functions, "
                  f"{counts.pipelines} pipelines, {counts.jobs} jobs; {args.envs} environments)")
            print(f"interpreter: {sys.executable}")
            first = build_once(root)
            took = sum(float(entry["seconds"]) for entry in first)
            print(f"first build: {len(first)} images built ({took:.1f} s of build time)\n"
                  f"{args.repeat} interleaved rounds after a warm-up\n")
            jobs: dict[str, Callable[[], Sample]] = {
                "runyard build (no-op)": lambda: runyard_noop(root),
                "docker image ls": lambda: timed(["docker", "image", "ls"]),
                "runyard validate": lambda: timed(runyard("validate", str(root))),
                "python -c pass": lambda: timed([sys.executable, "-c", "pass"]),
            }
            report(Timings(interleave(jobs, args.repeat)))
        finally:
            remove_images(name)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    parser.add_argument("--functions", type=int, default=50, help="functions in the project")
    parser.add_argument("--envs", type=int, default=3, help="distinct environments among them")
    add_repeat(parser, default=15, minimum=10)
    add_keep(parser)
    return parser.parse_args(argv)


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
    done = run(runyard("build", "--json", "-C", str(root)))
    report: list[dict[str, Any]] = json.loads(done.stdout)
    return report


def runyard_noop(root: Path) -> Sample:
    took, done = timed_run(runyard("build", "-C", str(root)))
    actions = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    if actions != {"reused"}:
        sys.exit(f"bench error: the no-op build did something:\n{done.stdout[-2000:]}")
    return took


def report(timings: Timings) -> None:
    build, engine = timings.median("runyard build (no-op)"), timings.median("docker image ls")
    validate, bare = timings.median("runyard validate"), timings.median("python -c pass")
    ours = build.wall
    walls = timings.walls("runyard build (no-op)")
    print(f"(a) runyard build, every image present: median {ours:.3f} s wall "
          f"(min {min(walls):.3f}, max {max(walls):.3f}); median CPU {build.cpu:.3f} s")
    print(f"(b) docker image ls (one round trip):    median {engine.wall:.3f} s wall; "
          f"median CPU {engine.cpu:.3f} s")
    print(f"    ratio runyard / docker image ls: {ours / engine.wall:.2f}")
    print(f"    goal runyard no-op <= {GOAL_SECONDS} s: {verdict(ours <= GOAL_SECONDS)} "
          f"(ratio to goal {ours / GOAL_SECONDS:.2f})")
    print(f"    for scale: runyard validate (load and check only) median {validate.wall:.3f} s "
          f"(CPU {validate.cpu:.3f}); python -c pass median {bare.wall:.3f} s")
    print(f"    load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (a busy machine inflates wall times)")
    print(f"    so build's own cost beyond validate (Docker SDK import, engine, hashing): "
          f"{ours - validate.wall:.3f} s")


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
