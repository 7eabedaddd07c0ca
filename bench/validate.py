"""Benchmark `runyard validate` against check-jsonschema, and its start-up cost.

    python bench/validate.py [--files 1000] [--repeat 5] [--keep DIR]

(a) `runyard validate DIR` on a generated project of N YAML files, against
(b) check-jsonschema run once per kind on the same files (schema only, no
cross-file checks; the four times are summed), interleaved and reported as
medians with their ratio (goal: at most 0.5). (c) `runyard validate
sample-project`, interpreter start included (goal: under 0.2 s), against a bare
interpreter start, plus the ten heaviest imports and whether Docker, git or
runner.build were imported (they must not be).

A benchmark, not a test: it prints figures and exits 0 whatever they are. It
exits non-zero only when it cannot measure (the generated project is invalid).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genproject import generate

RATIO_GOAL = 0.5
START_GOAL = 0.2
FORBIDDEN = ("docker", "git", "runner.build")
KIND_FOLDERS = {"project": None, "function": "functions", "pipeline": "pipelines", "job": "jobs"}


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
    repo = Path(__file__).resolve().parent.parent
    sample = repo / "sample-project"
    schemas = repo / "schemas"
    with tempfile.TemporaryDirectory(prefix="runyard-bench-") as temp:
        root = Path(args.keep) if args.keep else Path(temp)
        root.mkdir(parents=True, exist_ok=True)
        counts = generate(root, args.files)
        print(f"project: {root} ({counts.total} YAML files: {counts.functions} functions, "
              f"{counts.pipelines} pipelines, {counts.jobs} jobs)")
        print(f"interpreter: {sys.executable}; {args.repeat} interleaved rounds after a warm-up\n")
        jobs = {
            "runyard": lambda: runyard_validate(root),
            "check-jsonschema": lambda: check_jsonschema(root, schemas),
            "runyard sample": lambda: runyard_validate(sample),
            "python -c pass": python_start,
        }
        timings = interleave(jobs, args.repeat)
    report_versus(timings, counts.total)
    report_start(timings)
    report_imports(sample)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="YAML files to generate")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    return parser.parse_args(argv)


def interleave(jobs: dict[str, Callable[[], float]], repeat: int) -> Timings:
    """Run each job once to warm caches, then `repeat` rounds of all jobs in turn."""
    for job in jobs.values():
        job()
    timings = Timings()
    for _ in range(repeat):
        for label, job in jobs.items():
            timings.add(label, job())
    return timings


def timed(command: Sequence[str], cwd: Path | None = None) -> float:
    """Wall time of `command`; a failure means the setup is wrong, so it stops the bench."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench setup error: {' '.join(command[:4])} ... exited {done.returncode}\n"
                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def runyard_validate(project: Path) -> float:
    return timed([sys.executable, "-m", "runner", "validate", str(project)])


def python_start() -> float:
    return timed([sys.executable, "-c", "pass"])


def check_jsonschema(root: Path, schemas: Path) -> float:
    """The summed wall time of one check-jsonschema process per kind."""
    total = 0.0
    for kind, folder in KIND_FOLDERS.items():
        files = ["project.yaml"] if folder is None else sorted(
            p.relative_to(root).as_posix() for p in (root / folder).glob("*.yaml"))
        schema = str(schemas / f"{kind}.schema.json")
        total += timed([sys.executable, "-m", "check_jsonschema", "--schemafile", schema, *files],
                       cwd=root)
    return total


def report_versus(timings: Timings, files: int) -> None:
    ours, theirs = timings.median("runyard"), timings.median("check-jsonschema")
    start = timings.median("python -c pass")
    ratio = ours / theirs
    print(f"(a) runyard validate ({files} files):          median {ours:7.3f} s "
          f"{per_file(ours, files)}")
    print(f"(b) check-jsonschema, 4 kinds, schema only:  median {theirs:7.3f} s "
          f"{per_file(theirs, files)}")
    print(f"    ratio runyard / check-jsonschema: {ratio:.3f} "
          f"(goal <= {RATIO_GOAL}: {'met' if ratio <= RATIO_GOAL else 'NOT met'})")
    sample = timings.median("runyard sample")
    print(f"    runyard per file beyond the sample project's cost: "
          f"{(ours - sample) / files * 1000:.3f} ms; "
          f"check-jsonschema beyond 4 interpreter starts: "
          f"{(theirs - 4 * start) / files * 1000:.3f} ms\n")


def per_file(seconds: float, files: int) -> str:
    return f"({seconds / files * 1000:.3f} ms/file)"


def report_start(timings: Timings) -> None:
    sample, bare = timings.median("runyard sample"), timings.median("python -c pass")
    print(f"(c) runyard validate sample-project: median {sample:.3f} s "
          f"(goal < {START_GOAL} s: {'met' if sample < START_GOAL else 'NOT met'}; "
          f"ratio to goal {sample / START_GOAL:.2f})")
    print(f"    bare interpreter start (python -c pass): median {bare:.3f} s; "
          f"ratio runyard/bare {sample / bare:.2f}; runyard's own {sample - bare:.3f} s\n")


@dataclass(frozen=True)
class Import:
    """One line of `python -X importtime`: a module, its cumulative time, its nesting."""

    name: str
    cumulative_us: int
    depth: int


def report_imports(sample: Path) -> None:
    imports = import_times(sample)
    print("    top 10 imports by cumulative time (python -X importtime, one run):")
    for item in sorted(imports, key=lambda i: -i.cumulative_us)[:10]:
        print(f"      {item.cumulative_us / 1000:8.1f} ms  {'  ' * item.depth}{item.name}")
    total = sum(item.cumulative_us for item in imports if item.depth == 0)
    print(f"    {len(imports)} modules imported, {total / 1000:.1f} ms in all "
          "(importtime itself inflates it)")
    names = [item.name for item in imports]
    for prefix in FORBIDDEN:
        found = [name for name in names if name == prefix or name.startswith(prefix + ".")]
        verdict = f"IMPORTED (must not be): {', '.join(found[:5])}" if found else "not imported: ok"
        print(f"    {prefix}: {verdict}")


def import_times(sample: Path) -> list[Import]:
    """Every module `runyard validate sample-project` imports, as importtime reports it."""
    command = [sys.executable, "-X", "importtime", "-m", "runner", "validate", str(sample)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
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
