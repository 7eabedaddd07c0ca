"""Peak memory of the runner over a 1,000-trial grid, in warm trial workers on Docker.

    python bench/trials_memory.py [--a 40] [--b 25] [--backend docker|local] [--stall 120]
                                  [--lock-git]

Makes the project of `bench/grid.py` with a grid of 40 x 25 values (1,000
trials of `def f(context, a=0, b=0): return {"s": a + b}`, `parallel: 4`),
builds its image (Docker backend: the trials are forked in 4 worker containers)
and runs `python -m runner run grid -C DIR --backend BACKEND` once, under a small
wrapper that prints the runner process's own `ru_maxrss` (RUSAGE_SELF, its
children not counted) when it exits. Prints progress every 50 trials, then the
wall time and the peak RSS; the goal is a peak RSS <= 150 MB.

A run that prints nothing for `--stall` seconds is reported as hung and killed,
with how far it got and the RSS it had (VmHWM from /proc) at that moment.
`--lock-git` runs the runner with its git reads under one lock (see
`bench/grid.py`), a workaround for trial threads sharing GitPython's `git
cat-file` process. A benchmark, not a test: it exits 0 whatever the figures are.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import build_one_image, new_parser, remove_image, verdict, work_folder
from grid import JOB, make_grid_project, runyard_command

GOAL_MB = 150.0
MARKER = "RUNYARD-BENCH-MAXRSS-KB="
# Sets an atexit hook printing the process's own peak RSS, then runs the command in ARGV.
WRAPPER = f"""\
import atexit, resource, runpy, sys
atexit.register(lambda: print("{MARKER}%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                              file=sys.stderr, flush=True))
if sys.argv[1] == "-c":
    code, sys.argv = sys.argv[2], ["-c", *sys.argv[3:]]
    exec(compile(code, "<runner>", "exec"), {{"__name__": "__main__"}})
else:
    sys.argv = ["runner", *sys.argv[3:]]
    runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""


@dataclass
class Outcome:
    """What one run of the runner gave: wall time, trials seen, peak RSS (KiB), hung or not."""

    wall: float
    trials: int
    max_rss_kib: int | None
    hung: bool
    returncode: int | None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    total = args.a * args.b
    name = f"bench-trialsmem-{uuid.uuid4().hex[:8]}"
    with work_folder("runyard-bench-trialsmem-") as root:
        make_grid_project(root, name, a_values=args.a, b_values=args.b)
        image = build_one_image(root) if args.backend == "docker" else ""
        try:
            command = wrapped(runyard_command(["run", JOB, "-C", str(root), "--backend",
                                               args.backend], locked=args.lock_git))
            print(f"project: {root} ({name}); {total} trials, parallel 4, backend {args.backend}"
                  + (" (warm workers)" if image else "")
                  + (", git reads locked (workaround)" if args.lock_git else ""), flush=True)
            report(watch(command, total, args.stall), total)
        finally:
            remove_image(image)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    parser.add_argument("--a", type=int, default=40, help="values of a (default 40)")
    parser.add_argument("--b", type=int, default=25, help="values of b (default 25)")
    parser.add_argument("--backend", choices=("docker", "local"), default="docker",
                        help="where the trials run (default docker: warm trial workers)")
    parser.add_argument("--stall", type=float, default=120.0,
                        help="seconds without output after which the run counts as hung")
    parser.add_argument("--lock-git", action="store_true",
                        help="run the runner with its git reads under one lock (a workaround)")
    return parser.parse_args(argv)


def wrapped(command: list[str]) -> list[str]:
    """`command` (python -m runner ... or python -c CODE ...) under the ru_maxrss wrapper."""
    python, *rest = command
    return [python, "-c", WRAPPER, *rest]


def watch(command: Sequence[str], total: int, stall: float) -> Outcome:
    """Run `command`, printing progress, until it exits or prints nothing for `stall` s."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []
    threading.Thread(target=pump, args=(process.stdout, lines), daemon=True).start()
    reader = threading.Thread(target=lambda: errors.extend(process.stderr or []), daemon=True)
    reader.start()
    trials, hung, hwm = 0, False, None
    while True:
        try:
            line = lines.get(timeout=stall)
        except queue.Empty:
            hung, hwm = True, vm_hwm_kib(process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            break
        if line is None:
            break
        if re.match(r"trial \d+: ", line):
            trials += 1
            if trials % 50 == 0 or trials == total:
                print(f"  {trials}/{total} trials after {time.perf_counter() - start:.0f} s "
                      f"(runner VmHWM {(vm_hwm_kib(process.pid) or 0) / 1024:.0f} MiB)", flush=True)
    process.wait()
    reader.join(5)
    wall = time.perf_counter() - start
    found = [int(e.strip()[len(MARKER):]) for e in errors if e.startswith(MARKER)]
    if process.returncode not in (0, None) and not hung:
        print("runner exited", process.returncode, "".join(errors)[-2000:])
    return Outcome(wall, trials, found[-1] if found else hwm, hung, process.returncode)


def pump(stream: object, lines: queue.Queue[str | None]) -> None:
    """Copy the lines of `stream` into `lines`, then None."""
    for line in stream or []:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


def vm_hwm_kib(pid: int) -> int | None:
    """The peak RSS (VmHWM) of a live process, from /proc; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text("utf-8")
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else None


def report(outcome: Outcome, total: int) -> None:
    print()
    if outcome.hung:
        print(f"HUNG: no output for the stall limit after {outcome.trials}/{total} trials; killed")
    print(f"wall time: {outcome.wall:.1f} s for {outcome.trials}/{total} trials "
          f"({outcome.wall / max(outcome.trials, 1) * 1000:.0f} ms a trial); exit {outcome.returncode}")
    if outcome.max_rss_kib is None:
        print("peak RSS of the runner: not measured")
        return
    mb = outcome.max_rss_kib * 1024 / 1e6
    print(f"peak RSS of the runner process (not its children): {mb:.1f} MB "
          f"({outcome.max_rss_kib / 1024:.1f} MiB); goal <= {GOAL_MB:.0f} MB: {verdict(mb <= GOAL_MB)}"
          + (" (at the moment it hung)" if outcome.hung else ""))


if __name__ == "__main__":
    sys.exit(main())
