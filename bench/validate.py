"""Benchmark `runyard validate` against check-jsonschema, and its start-up cost.

    python bench/validate.py [--files 1000] [--repeat 5] [--keep DIR] [--against DIR]

(a) `runyard validate DIR` on a generated project of N YAML files, against
(b) check-jsonschema run once per kind on the same files (schema only, no
cross-file checks; the four times are summed), interleaved and reported as
medians with their ratio (goal: at most 0.5). (c) `runyard validate
sample-project`, interpreter start included (goal: under 0.2 s), against a bare
interpreter start, plus the ten heaviest imports and whether Docker, git or
runner.build were imported (they must not be). With --against DIR, the `runner`
package found in DIR (another checkout, say) is timed in the same rounds too.

Wall time is the measure; the children's CPU time (user + sys) is printed beside
it, as it moves less when other work shares the machine. A benchmark, not a
test: it prints figures and exits 0 whatever they are. It exits non-zero only
when it cannot measure (a command fails, as when the generated project is invalid).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import (
    PACKAGE_ROOT,
    Sample,
    Timings,
    add_keep,
    add_repeat,
    interleave,
    new_parser,
    runner_env,
    runyard,
    timed,
    verdict,
    work_folder,
)
from genproject import generate

RATIO_GOAL = 0.5
START_GOAL = 0.2
FORBIDDEN = ("docker", "git", "runner.build")
KIND_FOLDERS = {"project": None, "function": "functions", "pipeline": "pipelines", "job": "jobs"}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    repo = PACKAGE_ROOT
    sample = repo / "sample-project"
    with work_folder("runyard-bench-", args.keep) as root:
        counts = generate(root, args.files)
        print(f"project: {root} ({counts.total} YAML files: {counts.functions} functions, "
              f"{counts.pipelines} pipelines, {counts.jobs} jobs)")
        print(f"runner: {repo / 'runner'}; interpreter: {sys.executable}")
        print(f"load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs; {args.repeat} interleaved rounds after a warm-up\n")
        jobs = commands(root, sample, repo, args.against)
        timings = Timings(interleave(jobs, args.repeat))
    report_versus(timings, counts.total)
    if args.against:
        report_against(timings, args.against)
    report_start(timings)
    report_imports(sample, repo)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    parser.add_argument("--files", type=int, default=1000, help="YAML files to generate")
    add_repeat(parser, default=5)
    add_keep(parser)
    parser.add_argument("--against", metavar="DIR",
                        help="also time the `runner` package in DIR (a baseline checkout)")
    return parser.parse_args(argv)


def commands(root: Path, sample: Path, repo: Path,
             against: str | None) -> dict[str, Callable[[], Sample]]:
    """What each round runs, by label, in the order it runs them."""
    here = runner_env(repo)
    jobs: dict[str, Callable[[], Sample]] = {
        "runyard": lambda: runyard_validate(root, here),
        "check-jsonschema": lambda: check_jsonschema(root, repo / "schemas"),
        "runyard sample": lambda: runyard_validate(sample, here),
        "python -c pass": python_start,
    }
    if against:
        baseline = runner_env(Path(against).resolve())
        jobs["baseline"] = lambda: runyard_validate(root, baseline)
        jobs["baseline sample"] = lambda: runyard_validate(sample, baseline)
    return jobs


def runyard_validate(project: Path, env: Mapping[str, str]) -> Sample:
    # Run in the project: `-m` puts the working folder first on sys.path, and a
    # checkout's `runner/` there would shadow the one asked for.
    return timed(runyard("validate", str(project)), cwd=project, env=env)


def python_start() -> Sample:
    return timed([sys.executable, "-c", "pass"])


def check_jsonschema(root: Path, schemas: Path) -> Sample:
    """The summed times of one check-jsonschema process per kind."""
    total = Sample(0.0, 0.0)
    for kind, folder in KIND_FOLDERS.items():
        files = ["project.yaml"] if folder is None else sorted(
            p.relative_to(root).as_posix() for p in (root / folder).glob("*.yaml"))
        schema = str(schemas / f"{kind}.schema.json")
        total += timed([sys.executable, "-m", "check_jsonschema", "--schemafile", schema, *files],
                       cwd=root)
    return total


def show(sample: Sample) -> str:
    return f"{sample.wall:7.3f} s wall ({sample.cpu:6.3f} s CPU)"


def report_versus(timings: Timings, files: int) -> None:
    ours, theirs = timings.median("runyard"), timings.median("check-jsonschema")
    sample, start = timings.median("runyard sample"), timings.median("python -c pass")
    ratio = ours.wall / theirs.wall
    print(f"(a) runyard validate, {files} files:         median {show(ours)}")
    print(f"(b) check-jsonschema, 4 kinds, schema only: median {show(theirs)}")
    print(f"    ratio runyard / check-jsonschema: {ratio:.3f} wall, "
          f"{ours.cpu / theirs.cpu:.3f} CPU (goal <= {RATIO_GOAL}: {verdict(ratio <= RATIO_GOAL)})")
    print(f"    per file, all in:     runyard {ours.wall / files * 1000:.3f} ms, "
          f"check-jsonschema {theirs.wall / files * 1000:.3f} ms")
    print(f"    per file, start-up out (runyard less its sample-project run, "
          f"check-jsonschema less 4 interpreter starts): "
          f"runyard {(ours.wall - sample.wall) / files * 1000:.3f} ms, "
          f"check-jsonschema {(theirs.wall - 4 * start.wall) / files * 1000:.3f} ms\n")


def report_against(timings: Timings, against: str) -> None:
    ours, base = timings.median("runyard"), timings.median("baseline")
    small, base_small = timings.median("runyard sample"), timings.median("baseline sample")
    print(f"    baseline ({against}): {show(base)}; this checkout / baseline: "
          f"{ours.wall / base.wall:.3f} wall, {ours.cpu / base.cpu:.3f} CPU")
    print(f"    baseline sample-project: {show(base_small)}; this checkout / baseline: "
          f"{small.wall / base_small.wall:.3f} wall, {small.cpu / base_small.cpu:.3f} CPU\n")


def report_start(timings: Timings) -> None:
    sample, bare = timings.median("runyard sample"), timings.median("python -c pass")
    print(f"(c) runyard validate sample-project: median {show(sample)} "
          f"(goal < {START_GOAL} s: {verdict(sample.wall < START_GOAL)}; "
          f"{sample.wall / START_GOAL:.2f} x the goal)")
    print(f"    bare interpreter start (python -c pass): median {show(bare)}; "
          f"runyard / bare {sample.wall / bare.wall:.2f}; "
          f"runyard's own {sample.wall - bare.wall:.3f} s\n")


@dataclass(frozen=True)
class Import:
    """One line of `python -X importtime`: a module, its cumulative time, its nesting."""

    name: str
    cumulative_us: int
    depth: int


def report_imports(sample: Path, repo: Path) -> None:
    imports = import_times(sample, repo)
    print("    top 10 imports by cumulative time (python -X importtime, one run):")
    for item in sorted(imports, key=lambda i: -i.cumulative_us)[:10]:
        print(f"      {item.cumulative_us / 1000:8.1f} ms  {'  ' * item.depth}{item.name}")
    total = sum(item.cumulative_us for item in imports if item.depth == 0)
    print(f"    {len(imports)} modules imported, {total / 1000:.1f} ms in all "
          "(importtime itself inflates it)")
    names = [item.name for item in imports]
    for prefix in FORBIDDEN:
        found = [name for name in names if name == prefix or name.startswith(prefix + ".")]
        print(f"    {prefix}: " + (f"IMPORTED (must not be): {', '.join(found[:5])}"
                                   if found else "not imported: ok"))


def import_times(sample: Path, repo: Path) -> list[Import]:
    """Every module `runyard validate sample-project` imports, as importtime reports it."""
    command = [sys.executable, "-X", "importtime", "-m", "runner", "validate", str(sample)]
    done = subprocess.run(command, cwd=sample, env=runner_env(repo), capture_output=True,
                          text=True, check=False)
    return [item for line in done.stderr.splitlines() if (item := parse_import(line))]


def parse_import(line: str) -> Import | None:
    parts = line.removeprefix("import time:").split("|")
    if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
        return None
    raw = parts[2].rstrip()
    depth = (len(raw) - len(raw.lstrip()) - 1) // 2
    return Import(raw.strip(), int(parts[1]), depth)


if __name__ == "__main__":
    sys.exit(main())
