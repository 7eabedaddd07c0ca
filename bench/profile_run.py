"""Where `runyard run` of a trivial function spends its time, phase by phase.

    python bench/profile_run.py [--repeat 10] [--against DIR]

Makes run_overhead.py's one-function project, builds its image and compiles runyard
to bytecode. Then each round runs `runyard run fn` in a fresh interpreter that times
itself: how long the interpreter took to start, the imports, and each phase of the
command (project, reconcile, engine and images, snapshot, records, scratch, the
container's create/start/wait, clean-up), with the processes it started (git and
others). Prints the median of each, and `docker run --rm` of the same image timed in
the same rounds for scale. With --against DIR, the `runner/` in DIR (an older copy)
is profiled in the same rounds too, beside it. No reference and no goal: a profile,
to find what to cut. The image is removed at the end.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    PACKAGE_ROOT,
    add_keep,
    add_repeat,
    build_one_image,
    compile_runyard,
    new_parser,
    remove_image,
    run,
    runner_env,
    timed,
    work_folder,
)
from run_overhead import docker_run, make_project

# What a round times, by label: "module:Class.function" wrapped in the child.
PHASES = {
    "open project (git rev-parse, ls-tree)": "runner.cli.run:open_project",
    "load and check the project": "runner.project.loader:load_project",
    "reconcile records and scratch": "runner.run.reconcile:reconcile_records",
    "engine: connect, reconcile, images": "runner.run.session:_docker",
    "snapshot (the tree's objects)": "runner.run.snapshot:make_snapshot",
    "record writes (each a commit)": "runner.record.results:ResultsBranch.write",
    "scratch: make (copy, mount; beside create)": "runner.run.scratch:make",
    "container: whole life (waits for scratch)": "runner.run.backends:DockerBackend.run",
    "scratch: remove (umount)": "runner.run.scratch:remove",
    "wait for container removal": "runner.run.backends:DockerBackend.close",
    "remove the snapshot": "runner.run.snapshot:remove_tree",
}

# Runs in the child: times itself and prints one JSON line on stderr, last.
CHILD = r"""
import functools, importlib, json, os, subprocess, sys, time
started = time.perf_counter()
with open("/proc/self/stat") as f:
    ticks = int(f.read().rsplit(")", 1)[1].split()[19])
with open("/proc/uptime") as f:
    age = float(f.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
import runner.cli, runner.cli.run, runner.run.launch, runner.run.session
imported = time.perf_counter()
spent, processes = {}, []
def wrap(label, target):
    module, _, name = target.partition(":")
    owner = importlib.import_module(module)
    *path, leaf = name.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    original = getattr(owner, leaf, None)
    if original is None:  # not in this version of runyard
        return
    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start
    setattr(owner, leaf, timed)
    for other in list(sys.modules.values()):  # names imported with `from X import f`
        if not path and getattr(other, leaf, None) is original:
            setattr(other, leaf, timed)
for label, target in json.loads(sys.argv[1]).items():
    wrap(label, target)
popen = subprocess.Popen.__init__
def counted(self, args, *rest, **kwargs):
    words = [str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)]
    tool = os.path.basename(words[0])
    processes.append(tool if tool != "git" else "git " + next(
        (w for w in words[1:] if not w.startswith("-") and "/" not in w), "?"))
    popen(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = counted
try:
    runner.cli.main(["run", "fn", "-C", sys.argv[2]])
except SystemExit as end:
    assert not end.code, end.code
ended = time.perf_counter()
print(json.dumps({"interpreter start": age, "imports": imported - started,
                  "command": ended - imported, "phases": spent, "processes": processes}),
      file=sys.stderr)
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(__doc__)
    add_repeat(parser, default=10)
    add_keep(parser)
    parser.add_argument("--against", metavar="DIR", help="profile the runner/ in DIR too")
    args = parser.parse_args(argv)
    with work_folder("runyard-bench-profile-", args.keep) as root:
        image = ""
        try:
            make_project(root, "bench-profile")
            image = build_one_image(root)
            checkouts = {"this checkout": runner_env(PACKAGE_ROOT)}
            if args.against:
                checkouts["baseline"] = runner_env(Path(args.against).resolve())
            for label, env in checkouts.items():
                print(f"{label}: {compile_runyard(env, root)} (compiled to bytecode)")
            rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in checkouts}
            docker: list[float] = []
            for number in range(args.repeat + 1):  # the first warms caches
                for label, env in checkouts.items():
                    done = run([sys.executable, "-c", CHILD, json.dumps(PHASES), str(root)],
                               env=env, cwd=root)
                    if number:
                        rounds[label].append(json.loads(done.stderr.strip().splitlines()[-1]))
                if number:
                    docker.append(timed(docker_run(image)).wall)
            report(rounds, statistics.median(docker))
        finally:
            remove_image(image)
    return 0


def report(rounds: dict[str, list[dict[str, Any]]], docker: float) -> None:
    labels = list(rounds)
    print(f"\nmedians of {len(rounds[labels[0]])} rounds, ms  " + "".join(f"{label:>16}" for label in labels))
    rows = ["interpreter start", "imports", "command", *PHASES]
    for row in rows:
        values = [statistics.median(_value(r, row) for r in rounds[label]) for label in labels]
        print(f"  {row:40}" + "".join(f"{v * 1000:16.1f}" for v in values))
    totals = [statistics.median(sum(_value(r, k) for k in rows[:3]) for r in rounds[label])
              for label in labels]
    print(f"  {'whole process (the first three)':40}" + "".join(f"{t * 1000:16.1f}" for t in totals))
    print(f"  {'docker run --rm, for scale':40}{docker * 1000:16.1f}")
    for label in labels:
        started: dict[str, int] = {}
        for name in rounds[label][0]["processes"]:
            started[name] = started.get(name, 0) + 1
        print(f"processes started ({label}): "
              + ", ".join(f"{name} x{count}" for name, count in sorted(started.items())))


def _value(round_: dict[str, Any], row: str) -> float:
    return float(round_[row] if row in round_ else round_["phases"].get(row, 0.0))


if __name__ == "__main__":
    sys.exit(main())
