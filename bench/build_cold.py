"""Benchmark a cold `runyard build` of the sample trainer image against `docker build`.

    python bench/build_cold.py [--rounds 3] [--cache auto|cold|no-cache]

The trainer function of sample-project/ (scikit-learn, libgomp1, a setup step,
an env variable) is built from nothing, in N interleaved rounds, by (a)
`runyard build trainer` on a fresh copy of the sample project whose project
name is new each round (so its tag is new), and (b) a hand-written
`docker build` of the very same Dockerfile (rendered with
runner.build.builder.render_dockerfile), context (Dockerfile, requirements.txt,
ca.crt) and labels. Both go through the engine's classic builder (runyard talks
to the /build API; the CLI is run with DOCKER_BUILDKIT=0, which is also what it
falls back to without buildx). Before each timed build, the images of earlier
rounds are removed and `docker builder prune -af` is run, so neither reuses the
other's layers. Prints the medians and their ratio (goal: at most 1.1).

The classic builder's cache is every image on the engine: when some other
image already holds the trainer's layers (someone built the sample project),
removing our own images is not enough to build cold, and the bench does not
touch images that are not its own. `--cache auto` (the default) then builds
both sides with the cache off (`runyard build --force`, `docker build
--no-cache`), which is the same cold work for both; `cold` and `no-cache`
choose one way. Every timed build is checked for "Using cache": one found is
reported, since that round did not measure a cold build.

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (a build fails). Each round downloads
scikit-learn and its dependencies (about 50 MB) twice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from common import PACKAGE_ROOT, new_parser, verdict, work_folder

from runner.build.builder import HOST_CA_BUNDLE, LocalImages, image_needs, render_dockerfile
from runner.build.engine import DockerEngine
from runner.project.environment import LABEL_ENV_HASH, LABEL_FUNCTIONS, LABEL_PROJECT
from runner.project.loader import load_project
from runner.project.source import open_source

RATIO_GOAL = 1.1
FUNCTION = "trainer"
SAMPLE = PACKAGE_ROOT / "sample-project"
USING_CACHE = "Using cache"


@dataclass
class Round:
    """One interleaved round: the wall time of each side, and whether it hit a cache."""

    seconds: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    client = docker.from_env()
    env_hash = trainer_env_hash(client, SAMPLE)
    no_cache = choose_no_cache(client, env_hash, args.cache)
    print(f"function: {FUNCTION} of {SAMPLE} (environment {env_hash[:12]})")
    print(f"interpreter: {sys.executable}; {args.rounds} interleaved rounds; builder cache "
          f"{'off on both sides (--force / --no-cache)' if no_cache else 'on, emptied of ours'}")
    rounds: list[Round] = []
    with work_folder("runyard-bench-cold-") as work:
        try:
            for index in range(args.rounds):
                rounds.append(one_round(client, work, index, no_cache))
                print_round(index, rounds[-1])
        finally:
            remove_ours(client)
    report(rounds)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--cache", choices=("auto", "cold", "no-cache"), default="auto",
                        help="how to make each build cold (see above)")
    return parser.parse_args(argv)


def trainer_env_hash(client: docker.DockerClient, project_dir: Path) -> str:
    source = open_source(project_dir)
    project = load_project(source)
    (need,) = image_needs(project, source, LocalImages.read(DockerEngine()), [FUNCTION])
    return need.spec.env_hash


def choose_no_cache(client: docker.DockerClient, env_hash: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "no-cache"
    foreign = client.api.images(all=True, filters={"label": f"{LABEL_ENV_HASH}={env_hash}"})
    if foreign:
        tags = sorted({t for i in foreign for t in i.get("RepoTags") or () if t != "<none>:<none>"})
        print(f"the engine already holds this environment's layers ({', '.join(tags) or 'untagged'}"
              "), which are not ours to remove: building with the cache off on both sides")
    return bool(foreign)


def one_round(client: docker.DockerClient, work: Path, index: int, no_cache: bool) -> Round:
    result = Round()
    sides = [("runyard build", runyard_side), ("docker build", docker_side)]
    if index % 2:
        sides.reverse()  # neither always goes first (proxy and page caches)
    for label, side in sides:
        remove_ours(client)
        prune_builder()
        seconds, output = side(client, work / f"round-{index}-{label.split()[0]}", no_cache)
        result.seconds[label] = seconds
        if USING_CACHE in output:
            result.cached.append(label)
    remove_ours(client)
    return result


def runyard_side(client: docker.DockerClient, folder: Path, no_cache: bool) -> tuple[float, str]:
    """`runyard build trainer` on a fresh copy of the sample project with a new name."""
    project = shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns(".runyard"))
    name = new_name()
    path = project / "project.yaml"
    path.write_text(re.sub(r"^name: .*$", f"name: {name}", path.read_text("utf-8"), count=1,
                           flags=re.MULTILINE), "utf-8")
    command = [sys.executable, "-m", "runner", "build", FUNCTION, "--json", "-C", str(project)]
    if no_cache:
        command.append("--force")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench error: runyard build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    (entry,) = json.loads(done.stdout)
    if entry["action"] != "built":
        sys.exit(f"bench error: runyard did not build: {entry}")
    return seconds, Path(entry["log"]).read_text("utf-8", "replace")


def docker_side(client: docker.DockerClient, folder: Path, no_cache: bool) -> tuple[float, str]:
    """`docker build` of the same Dockerfile, context and labels, by hand."""
    source = open_source(SAMPLE)
    project = load_project(source)
    (need,) = image_needs(project, source, LocalImages.read(DockerEngine()), [FUNCTION])
    spec = need.spec
    ca_bundle = HOST_CA_BUNDLE.is_file()
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(render_dockerfile(spec, ca_bundle=ca_bundle), "utf-8")
    (folder / "requirements.txt").write_text("".join(f"{r}\n" for r in spec.requirements), "utf-8")
    if ca_bundle:
        shutil.copyfile(HOST_CA_BUNDLE, folder / "ca.crt")
    name = new_name()
    labels = {LABEL_PROJECT: name, LABEL_ENV_HASH: spec.env_hash,
              LABEL_FUNCTIONS: ",".join(need.functions)}
    command = ["docker", "build", "--rm", "--force-rm", "-t", f"runyard/{name}:{spec.env_hash[:12]}"]
    command += [part for key, value in labels.items() for part in ("--label", f"{key}={value}")]
    if no_cache:
        command.append("--no-cache")
    command.append(str(folder))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench error: docker build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds, done.stdout


def new_name() -> str:
    return f"bench-cold-{uuid.uuid4().hex[:8]}"


def remove_ours(client: docker.DockerClient) -> None:
    """Remove every image this bench made (their project names start with bench-cold-)."""
    ours: list[dict[str, Any]] = [
        image for image in client.api.images(filters={"label": LABEL_PROJECT})
        if (image.get("Labels") or {}).get(LABEL_PROJECT, "").startswith("bench-cold-")
    ]
    for image in ours:
        with contextlib.suppress(docker.errors.APIError):  # gone already, as a parent
            client.api.remove_image(image["Id"], force=True)


def prune_builder() -> None:
    subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True, check=False)


def print_round(index: int, result: Round) -> None:
    times = ", ".join(f"{label} {seconds:6.1f} s" for label, seconds in result.seconds.items())
    cached = f"  (Using cache in: {', '.join(result.cached)}: not cold)" if result.cached else ""
    print(f"  round {index + 1}: {times}{cached}")


def report(rounds: list[Round]) -> None:
    ours = statistics.median(r.seconds["runyard build"] for r in rounds)
    theirs = statistics.median(r.seconds["docker build"] for r in rounds)
    ratio = ours / theirs
    print(f"\n(a) runyard build {FUNCTION} (cold, whole process): median {ours:6.1f} s")
    print(f"(b) docker build, same Dockerfile and context:  median {theirs:6.1f} s")
    print(f"    ratio runyard / docker build: {ratio:.3f} "
          f"(goal <= {RATIO_GOAL}: {verdict(ratio <= RATIO_GOAL)})")
    if any(r.cached for r in rounds):
        print("    WARNING: some builds used the cache; those rounds were not cold")


if __name__ == "__main__":
    sys.exit(main())
