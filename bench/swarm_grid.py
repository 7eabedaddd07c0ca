"""Benchmark the 40-trial grid of bench/grid.py (`parallel: 4`) on the swarm backend
against the same job on the Docker backend, in the same run.

    python bench/swarm_grid.py [--repeat 3] [--registry 127.0.0.1:5000] [--keep DIR]

Needs this engine to be a swarm manager and a registry at --registry (scripts/swarm-setup
makes both on one machine). Makes the project of grid.py (one function, no requirements,
an 8 x 5 grid, `selector: max.s`) with `execution.registry` set, commits it and builds
its image once. Then, interleaved after a warm-up of each, it times (a) `runyard run
grid --backend swarm` against (b) `runyard run grid --backend docker` as whole
processes. Goal: a/b <= 2. On both the trials run in warm workers (a fork a trial): on
the swarm a worker is a service of its own pinned to the runner's node (the project has
no `execution.shared`). (c), the same grid on the swarm with `isolation: container` (a
service a trial), is timed beside them: what the workers save.

Where the rest goes: an anatomy of one swarm run, N times in a row on the image
the runs used (pinned by digest): the service-create call, create -> task running
(scheduling, image resolution, container start), running -> complete, the removal
of the service and its container; beside a bare `docker run --rm` of the same image.

A benchmark, not a test: it prints figures and exits 0 whatever they are, non-zero
only when it cannot measure. The images it made are untagged at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from common import (
    Sample,
    Timings,
    add_keep,
    add_repeat,
    build_one_image,
    git,
    interleave,
    new_parser,
    print_medians,
    ratio_goal,
    remove_image,
    run,
    runyard,
    timed_or_hung,
    work_folder,
)
from grid import CONTAINER_JOB, JOB, PARALLEL, make_grid_project

GOAL_RATIO = 2.0
SWARM = "(a) runyard run grid --backend swarm"
DOCKER = "(b) runyard run grid --backend docker"
SERVICES = "(c) (a) with isolation: container"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"bench-swarm-{uuid.uuid4().hex[:8]}"
    with work_folder("runyard-bench-swarm-", args.keep) as root:
        image = ""
        pinned: set[str] = set()
        try:
            make_grid_project(root, name, a_values=8, b_values=5)
            with (root / "project.yaml").open("a") as handle:
                handle.write(f"execution: {{registry: '{args.registry}'}}\n")
            run(git(root, "commit", "-q", "-am", "the registry"))
            run(runyard("setup", "--swarm", str(root)))
            image = build_one_image(root)
            print(f"project: {root} ({name}); image {image}; registry {args.registry}")
            print(f"40 trials, parallel {PARALLEL}; {args.repeat} interleaved rounds "
                  "after a warm-up\n")

            def grid(backend: str, job: str = JOB) -> Callable[[], Sample]:
                command = runyard("run", job, "-C", str(root), "--backend", backend)
                return lambda: timed_or_hung(command, args.timeout)

            timings = Timings(interleave({SWARM: grid("swarm"), DOCKER: grid("docker"),
                                          SERVICES: grid("swarm", CONTAINER_JOB)},
                                         args.repeat, progress=True))
            pinned = run_images(root)
            report(timings)
            anatomy(sorted(pinned)[0], args.anatomy)
        finally:
            for repository in {ref.partition("@")[0] for ref in pinned}:
                remove_repository(repository)
            remove_image(image)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    add_repeat(parser, default=3, minimum=3)
    add_keep(parser)
    parser.add_argument("--registry", default="127.0.0.1:5000", help="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds after which a run counts as hung and is killed")
    parser.add_argument("--anatomy", type=int, default=10,
                        help="how many services the anatomy times, one after the other")
    return parser.parse_args(argv)


def run_images(root: Path) -> set[str]:
    """The pinned images the swarm runs recorded."""
    done = run(runyard("runs", "list", "--all", "--limit", "100", "--json", "-C", str(root)))
    return {r["status"]["image_digest"] for r in json.loads(done.stdout)
            if r["status"].get("image_digest")}


def remove_repository(repository: str) -> None:
    """Untag the run images of `repository` (the registry keeps them: it has no delete)."""
    done = subprocess.run(["docker", "images", repository, "--format",
                           "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=False)
    for ref in done.stdout.split():
        remove_image(ref)


def report(timings: Timings) -> None:
    print()
    print_medians(timings, 40)
    swarm, docker = timings.median(SWARM).wall, timings.median(DOCKER).wall
    services = timings.median(SERVICES).wall
    print(f"\nratio a/b: {ratio_goal(swarm / docker, GOAL_RATIO)}; "
          f"a/c (warm workers against a service a trial): {swarm / services:.2f}x; "
          f"a service a trial costs {(services - swarm) / 40 * 1000:.0f} ms more a trial")


def anatomy(image: str, count: int) -> None:
    """Time the phases of `count` services run one after the other, and bare containers."""
    import docker

    from runner.build.engine import DockerEngine
    from runner.run.swarm import remove_service

    client = docker.from_env()
    types = docker.types
    phases: dict[str, list[float]] = {"create call": [], "create -> running": [],
                                      "running -> complete": [], "removal (+ container)": [],
                                      "whole service": [], "bare docker run --rm": []}
    for _ in range(count):
        start = time.perf_counter()
        spec = types.ContainerSpec(image, command=["python3", "-c", "print({'s': 1})"],
                                   user="65534:65534", read_only=True, cap_drop=["ALL"])
        service = client.api.create_service(
            types.TaskTemplate(spec, restart_policy=types.RestartPolicy(condition="none")),
            name=f"bench-anatomy-{uuid.uuid4().hex[:8]}",
            mode=types.ServiceMode("replicated-job", replicas=1))["ID"]
        created = time.perf_counter()
        running = None
        while True:
            tasks = client.api.tasks(filters={"service": service})
            state = tasks[0]["Status"]["State"] if tasks else "new"
            if running is None and state in ("running", "complete"):
                running = time.perf_counter()
            if state in ("complete", "failed", "rejected"):
                break
            time.sleep(0.02)
        ended = time.perf_counter()
        remove_service(DockerEngine(), service)
        removed = time.perf_counter()
        phases["create call"].append(created - start)
        phases["create -> running"].append((running or ended) - created)
        phases["running -> complete"].append(ended - (running or ended))
        phases["removal (+ container)"].append(removed - ended)
        phases["whole service"].append(removed - start)
        bare = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", image, "python3", "-c", "print(1)"],
                       capture_output=True, check=True)
        phases["bare docker run --rm"].append(time.perf_counter() - bare)
    client.close()
    print(f"\nanatomy of a swarm run, {count} services one after the other (median, seconds; "
          "the task state is polled every 20 ms):")
    for phase, values in phases.items():
        print(f"  {phase:<24} {statistics.median(values):.3f}")


if __name__ == "__main__":
    sys.exit(main())
