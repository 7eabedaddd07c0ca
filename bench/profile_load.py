"""Where `load_project` spends its time on a large generated project (in-process).

    python bench/profile_load.py [--files 1000] [--repeat 5] [--top 25] [--path DIR]

Prints the median time of each phase (listing files, reading, YAML parsing,
schema validation, cross-file checks; building the model is in the rest), each
as a share of the whole `load_project` measured in the same rounds, then a
cProfile of one `load_project(DirectorySource(path))` sorted by own and by
cumulative time. It imports the `runner` of this checkout, whatever the
editable install points at. A benchmark, not a test: it never fails on figures.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from common import PACKAGE_ROOT, new_parser
from genproject import generate


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runner = import_runner(PACKAGE_ROOT)
    with tempfile.TemporaryDirectory(prefix="runyard-profile-") as temp:
        root = Path(args.path) if args.path else Path(temp)
        if not args.path:
            counts = generate(root, args.files)
            print(f"project: {root} ({counts.total} YAML files)")
        report_phases(runner, root, args.repeat)
        report_profile(runner, root, args.top)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    parser.add_argument("--files", type=int, default=1000, help="YAML files to generate")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the phase timings")
    parser.add_argument("--top", type=int, default=25, help="rows of each profile table")
    parser.add_argument("--path", help="profile this project instead of a generated one")
    return parser.parse_args(argv)


def import_runner(repo: Path) -> dict[str, ModuleType]:
    """The runner modules the profile uses, imported from `repo`."""
    sys.path.insert(0, str(repo))
    names = ("checks", "loader", "schema", "source", "yamlread")
    modules = {name: importlib.import_module(f"runner.{name}") for name in names}
    print(f"runner: {Path(modules['loader'].__file__ or '?').parent}")
    return modules


def clock(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def phases(runner: dict[str, ModuleType], root: Path) -> dict[str, float]:
    """One round: the whole load, then each phase on its own."""
    loader, yamlread = runner["loader"], runner["yamlread"]
    source = runner["source"].DirectorySource(root)
    total, project = clock(lambda: loader.load_project(source))
    listing, files = clock(lambda: loader.project_files(source))
    reading, raws = clock(lambda: [(kind, path, source.read(path)) for kind, path in files])
    parsing, docs = clock(
        lambda: [(kind, yamlread.read_document(path, raw)) for kind, path, raw in raws])
    compiling, schemas = clock(runner["schema"].SchemaSet)
    validating, _ = clock(lambda: [schemas.problems(kind, doc) for kind, doc in docs])
    checking, _ = clock(lambda: runner["checks"].check_project(project, source))
    measured = listing + reading + parsing + compiling + validating + checking
    return {
        "load_project (whole)": total,
        "list files": listing,
        "read bytes": reading,
        "parse YAML (read_document)": parsing,
        "compile schemas (SchemaSet)": compiling,
        "schema validation": validating,
        "cross-file checks": checking,
        "the rest: build model, GC, noise": total - measured,
    }


def report_phases(runner: dict[str, ModuleType], root: Path, repeat: int) -> None:
    phases(runner, root)  # warm-up: lazy imports, file cache, regex caches
    rounds = [phases(runner, root) for _ in range(repeat)]
    whole = statistics.median(r["load_project (whole)"] for r in rounds)
    print(f"\nphases, median of {repeat} rounds (share of the whole load):")
    for name in rounds[0]:
        seconds = statistics.median(r[name] for r in rounds)
        print(f"  {name:34} {seconds * 1000:8.1f} ms  {seconds / whole:6.1%}")


def report_profile(runner: dict[str, ModuleType], root: Path, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(runner["loader"].load_project, runner["source"].DirectorySource(root))
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(top)
        print(f"\ncProfile of one load_project, by {order} (profiler overhead included):")
        print(trim(out.getvalue()))


def trim(text: str) -> str:
    """The stats table without pstats' preamble."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


if __name__ == "__main__":
    sys.exit(main())
