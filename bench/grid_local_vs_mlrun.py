"""Benchmark a 40-trial grid on the local backend, and on Docker in warm trial workers, against
MLRun 1.x running the same trials locally.

    python bench/grid_local_vs_mlrun.py [--repeat 3] [--venv /tmp/mlrun-venv]

Makes the project of `bench/grid.py` (one function, `def f(context, a=0, b=0):
return {"s": a + b}`, a job `grid` of 8 x 5 values, `parallel: 4`,
`selector: max.s`) and times, interleaved, two whole processes, imports
included:

(a) `python -m runner run grid -C DIR --backend local`: a parent run and 40
    child runs, each a subprocess, each recorded on the results branch;
(b) a small script run by the Python of a separate virtual environment holding
    MLRun 1.x: `mlrun.code_to_function(kind="job")` on the same handler (which
    also calls `context.log_result("s", ...)`: MLRun logs a returned dict as
    `return.s`, which its selector cannot pick), then `fn.run(local=True,
    hyperparams=...,
    hyper_param_options=HyperParamOptions(selector="max.s"))`, with no MLRun
    server (`MLRUN_DBPATH` empty, artifacts in a temporary folder);
(c) `python -m runner run grid -C DIR --backend docker`: the same 40 trials
    forked in 4 warm worker containers of the function's image (built once
    before the rounds), so inside the image, as a push would run them.

Each command runs under `/usr/bin/time -v`, whose "Maximum resident set size"
is the largest single process of its tree; a sampler of /proc also records the
peak of the summed RSS of the whole tree (for (c) the runner's side only: the
worker containers are the engine's children). Prints the medians, the ratios
of wall times a/b (goal <= 0.5) and c/b (goal <= 1), and both memory figures
beside each.

The virtual environment is made (`python -m venv`, `pip install 'mlrun<2'`)
when it has no MLRun. If MLRun cannot be installed or run, the bench says why
(the error) and prints runyard's figures alone: it never invents a figure.
A run that outlives `--timeout` is killed and reported as hung (no figure
for that round). `--lock-git` runs the runner with its git reads under one
lock (see `bench/grid.py`), a workaround for trial threads sharing GitPython's
`git cat-file` process. A benchmark, not a test: it exits 0 whatever the
figures are.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import (
    add_repeat,
    build_one_image,
    fail,
    interleave,
    median,
    new_parser,
    ratio_goal,
    remove_image,
    spread,
    wait_or_kill,
    work_folder,
)
from grid import JOB, make_grid_project, runyard_command

GOAL_RATIO = 0.5
GOAL_DOCKER = 1.0
A_VALUES, B_VALUES = 8, 5
RUNYARD = "(a) runyard run --backend local"
MLRUN = "(b) mlrun fn.run(local=True)"
DOCKER = "(c) runyard run --backend docker"
MLRUN_SCRIPT = '''\
"""40 grid trials of f(context, a, b) with MLRun, locally, without a server."""
import sys

import mlrun
from mlrun.model import HyperParamOptions

handler_file, a_values, b_values = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fn = mlrun.code_to_function(name="grid", project="bench", filename=handler_file,
                            kind="job", handler="f")
run = fn.run(local=True, handler="f", hyper_param_options=HyperParamOptions(selector="max.s"),
             hyperparams={"a": list(range(a_values)), "b": list(range(b_values))})
state = run.state()
iterations = run.status.iterations or []
best = run.status.results or {}
print(f"state={state} best_iteration={best.get('best_iteration')} s={best.get('s')} "
      f"trials={max(len(iterations) - 1, 0)}")
sys.exit(0 if state == "completed" else 1)
'''


# MLRun logs a returned dict as `return.s`, which its selector cannot name: the handler logs `s`.
MLRUN_HANDLER = """\
def f(context, a=0, b=0):
    context.log_result("s", a + b)
    return {"s": a + b}
"""


@dataclass(frozen=True)
class Sample:
    """One measured process: wall seconds, largest process RSS and tree RSS (MiB)."""

    wall: float
    max_rss_mib: float
    tree_rss_mib: float


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"bench-gridlocal-{uuid.uuid4().hex[:8]}"
    with work_folder("runyard-bench-gridlocal-") as temp:
        root = temp / "project"
        root.mkdir()
        make_grid_project(root, name, a_values=A_VALUES, b_values=B_VALUES)
        print(f"project: {root} ({name}); interpreter: {sys.executable}")
        run_grid = ["run", JOB, "-C", str(root), "--backend"]
        jobs: dict[str, Callable[[], Sample]] = {
            RUNYARD: lambda: measure(runyard_command([*run_grid, "local"], locked=args.lock_git),
                                     dict(os.environ), args.timeout),
        }
        image = build_one_image(root) if args.docker else ""
        if image:
            jobs[DOCKER] = lambda: measure(runyard_command([*run_grid, "docker"],
                                                           locked=args.lock_git),
                                           dict(os.environ), args.timeout)
        python, problem = mlrun_python(Path(args.venv))
        if python is not None:
            mlrun_job, problem = mlrun_command(python, temp, args.timeout)
            if mlrun_job is not None:
                jobs[MLRUN] = mlrun_job
        if problem:
            print(f"\nMLRun is NOT measured: {problem}\n")
        print(f"{A_VALUES * B_VALUES} trials; {args.repeat} interleaved rounds after a warm-up"
              + ("; runyard's git reads locked (workaround)" if args.lock_git else "") + "\n")
        try:
            report(interleave(jobs, args.repeat, progress=True))
        finally:
            remove_image(image)
        if problem:
            print(f"\nMLRun is NOT measured: {problem.splitlines()[0]}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    add_repeat(parser, default=3, minimum=3)
    parser.add_argument("--venv", default="/tmp/mlrun-venv",
                        help="the virtual environment holding MLRun (made when missing)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds after which a run counts as hung and is killed")
    parser.add_argument("--no-docker", dest="docker", action="store_false",
                        help="leave out (c), the Docker backend with warm trial workers")
    parser.add_argument("--lock-git", action="store_true",
                        help="run the runner with its git reads under one lock (a workaround)")
    return parser.parse_args(argv)


def mlrun_python(venv: Path) -> tuple[Path | None, str]:
    """The venv's python once it imports MLRun 1.x, or None and the reason it does not."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} ...", flush=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)],
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            return None, f"python -m venv {venv} failed: {made.stderr.strip()[-1500:]}"
    if version(python) is None:
        print(f"installing 'mlrun<2' into {venv} (a few minutes) ...", flush=True)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "mlrun<2"],
                             capture_output=True, text=True, check=False)
        if pip.returncode != 0:
            return None, f"pip install 'mlrun<2' failed: {pip.stderr.strip()[-1500:]}"
    found = version(python)
    if found is None:
        return None, f"{python} cannot import mlrun after installing it"
    print(f"MLRun {found} in {venv}")
    return python, ""


def version(python: Path) -> str | None:
    done = subprocess.run([str(python), "-c", "import mlrun; print(mlrun.__version__)"],
                          capture_output=True, text=True, check=False, env=mlrun_env(Path("/tmp")))
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None


def mlrun_env(temp: Path) -> dict[str, str]:
    """No MLRun server: an empty DB path, artifacts and home in the bench's folder."""
    return {**os.environ, "MLRUN_DBPATH": "", "MLRUN_ARTIFACT_PATH": str(temp / "mlrun-art")}


def mlrun_command(python: Path, temp: Path,
                  timeout: float) -> tuple[Callable[[], Sample] | None, str]:
    """A job timing the MLRun script, after one trial run; None and why if that run fails."""
    script, handler = temp / "mlrun_grid.py", temp / "handler.py"
    script.write_text(MLRUN_SCRIPT, "utf-8")
    handler.write_text(MLRUN_HANDLER, "utf-8")
    command = [str(python), str(script), str(handler), str(A_VALUES), str(B_VALUES)]
    env = mlrun_env(temp)
    trial = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=temp)
    if trial.returncode != 0:
        return None, (f"the MLRun script exited {trial.returncode}:\n"
                      f"{(trial.stdout + trial.stderr).strip()[-3000:]}")
    print(f"MLRun check run: {trial.stdout.strip().splitlines()[-1]}")
    return lambda: measure(command, env, timeout, cwd=temp), ""


def measure(command: Sequence[str], env: Mapping[str, str], timeout: float,
            cwd: Path | None = None) -> Sample:
    """Run `command` under /usr/bin/time -v, sampling its process tree's RSS meanwhile."""
    start = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/time", "-v", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(env), cwd=cwd,
                               start_new_session=True)
    with tree_sampler(process.pid) as peak:
        output = wait_or_kill(process, command, timeout)
    if output is None:
        return Sample(math.nan, math.nan, peak[0] / 1024)
    wall = time.perf_counter() - start
    out, err = output
    if process.returncode != 0:
        fail(command, process.returncode, out, err)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    max_rss = int(found.group(1)) / 1024 if found else float("nan")
    return Sample(wall, max_rss, peak[0] / 1024)


@contextmanager
def tree_sampler(root: int, interval: float = 0.1) -> Iterator[list[int]]:
    """Yield a one-item list holding the peak summed RSS (KiB) of `root` and its descendants."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_kib(root))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def tree_rss_kib(root: int) -> int:
    """The summed VmRSS of `root` and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text("utf-8")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0")), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def peak(values: Sequence[float]) -> float:
    """The largest of the measured values; NaN when none was measured."""
    measured = [v for v in values if not math.isnan(v)]
    return max(measured) if measured else math.nan


def report(samples: dict[str, list[Sample]]) -> None:
    print()
    for label, values in samples.items():
        walls = [s.wall for s in values if not math.isnan(s.wall)]
        hung = len(values) - len(walls)
        print(f"{label:<34} median {median(walls):.3f} s ({spread(walls)})"
              + (f", {hung} of {len(values)} HUNG" if hung else "") + "; peak RSS: largest process "
              f"{peak([s.max_rss_mib for s in values]):.0f} MiB, whole tree "
              f"{peak([s.tree_rss_mib for s in values]):.0f} MiB")
    if MLRUN not in samples:
        return
    ours = median(s.wall for s in samples[RUNYARD])
    theirs = median(s.wall for s in samples[MLRUN])
    print(f"\nratio a/b (wall): {ratio_goal(ours / theirs, GOAL_RATIO)}")
    if DOCKER in samples:
        docker = median(s.wall for s in samples[DOCKER])
        print(f"ratio c/b (wall): {ratio_goal(docker / theirs, GOAL_DOCKER)} "
              "(the trials inside the function's image)")
    print(f"peak RSS a vs b: largest process {peak([s.max_rss_mib for s in samples[RUNYARD]]):.0f} "
          f"vs {peak([s.max_rss_mib for s in samples[MLRUN]]):.0f} MiB; whole tree "
          f"{peak([s.tree_rss_mib for s in samples[RUNYARD]]):.0f} vs "
          f"{peak([s.tree_rss_mib for s in samples[MLRUN]]):.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
