"""What the benches share: arguments, setup commands, timed rounds and the report.

Every bench times runyard against a reference in the same run. These helpers
keep that alike across them: a setup command that fails stops the bench (it
cannot measure), each command runs once to warm caches and then in interleaved
rounds, and the report gives medians, their spread, ratios and verdicts. The
small committed git projects the benches run on are written here too.

Not a script: the benches import it (`from common import ...`), as they import
`genproject`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

BASE_IMAGE = "python:3.11-slim"
HEADER = "apiVersion: runyard/v1\n"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

# Arguments ------------------------------------------------------------------------------


def new_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of a bench's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def add_repeat(parser: argparse.ArgumentParser, default: int, minimum: int = 1,
               what: str = "interleaved rounds") -> None:
    """`--repeat N`, refused below `minimum` (where the issue asks for that many medians)."""
    parser.add_argument("--repeat", type=at_least(minimum), default=default,
                        help=f"{what} (>= {minimum})" if minimum > 1 else what)


def add_keep(parser: argparse.ArgumentParser, what: str = "the project") -> None:
    parser.add_argument("--keep", metavar="DIR", help=f"make {what} in DIR and keep it")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than `minimum`."""
    def whole_number(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return whole_number


@contextmanager
def work_folder(prefix: str, keep: str | None = None) -> Iterator[Path]:
    """`keep` (made if missing, left in place) or a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as temp:
        root = Path(keep) if keep else Path(temp)
        root.mkdir(parents=True, exist_ok=True)
        yield root


# Commands -------------------------------------------------------------------------------


def runyard(*args: str) -> list[str]:
    """`python -m runner ARGS` with this interpreter."""
    return [sys.executable, "-m", "runner", *args]


def runner_env(folder: Path) -> dict[str, str]:
    """The environment that makes `python -m runner` import the `runner/` in `folder`,
    whatever checkout the editable install points at."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])}


def compile_runyard(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """Compile the `runner` package that `runyard()` runs (with `env`, in `cwd`) to bytecode, as
    `pip install` does, and return its folder. A checkout never run with bytecode
    writing allowed (PYTHONDONTWRITEBYTECODE=1) would otherwise compile every module
    again in every timed round, which no installed runyard does; the runtime's bytecode
    is then there for the containers' Python too, as in an installed runyard."""
    done = run([sys.executable, "-c", "import os, runner; print(os.path.dirname(runner.__file__))"],
               env=env, cwd=cwd)
    package = Path(done.stdout.strip())
    run([sys.executable, "-m", "compileall", "-q", str(package)])
    return package


def run(command: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, timeout: float | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `command`; a failure means the setup is wrong, so it stops the bench."""
    try:
        done = subprocess.run(command, input=stdin, cwd=cwd, env=env, capture_output=True,
                              encoding="utf-8", errors="replace", check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"bench error: {' '.join(command[:6])} ... still running after "
                 f"{timeout} s (hung?)")
    if check and done.returncode != 0:
        fail(command, done.returncode, done.stdout, done.stderr)
    return done


def fail(command: Sequence[str], returncode: int, out: str, err: str) -> NoReturn:
    sys.exit(f"bench setup error: {' '.join(command[:6])} ... exited {returncode}\n"
             f"{out[-2000:]}{err[-2000:]}")


def wait_or_kill(process: subprocess.Popen[str], command: Sequence[str],
                 timeout: float) -> tuple[str, str] | None:
    """The output of `process` (started in its own session) once it exits; None when it
    outlived `timeout`: then its whole session is killed and it is reported as hung."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        print(f"  HUNG: {' '.join(command[:5])} ... still running after {timeout:.0f} s; killed",
              flush=True)
        return None


# Timing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One measurement: wall time and the child processes' CPU time (user + system), in
    seconds. A NaN wall marks a run that hung and was killed."""

    wall: float
    cpu: float

    def __add__(self, other: Sample) -> Sample:
        return Sample(self.wall + other.wall, self.cpu + other.cpu)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(command: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None,
              env: Mapping[str, str] | None = None,
              timeout: float | None = None) -> tuple[Sample, subprocess.CompletedProcess[str]]:
    """What `command` took, and what it printed; a failure stops the bench (see `run`)."""
    before = children_cpu()
    start = time.perf_counter()
    done = run(command, stdin=stdin, cwd=cwd, env=env, timeout=timeout)
    wall = time.perf_counter() - start
    return Sample(wall, children_cpu() - before), done


def timed(command: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, timeout: float | None = None) -> Sample:
    """What `command` took; a failure stops the bench (see `run`)."""
    return timed_run(command, stdin=stdin, cwd=cwd, env=env, timeout=timeout)[0]


def timed_or_hung(command: Sequence[str], timeout: float) -> Sample:
    """What `command` took; a NaN sample when it outlived `timeout` and was killed."""
    before = children_cpu()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    output = wait_or_kill(process, command, timeout)
    if output is None:
        return Sample(math.nan, math.nan)
    if process.returncode != 0:
        fail(command, process.returncode, *output)
    wall = time.perf_counter() - start
    return Sample(wall, children_cpu() - before)


class Measured(Protocol):
    """Anything a job returns: it has at least a wall time."""

    @property
    def wall(self) -> float: ...


M = TypeVar("M", bound=Measured)


def interleave(jobs: Mapping[str, Callable[[], M]], repeat: int, *,
               progress: bool = False) -> dict[str, list[M]]:
    """Run each job once to warm caches, then `repeat` rounds of all jobs in turn; with
    `progress`, print each round's wall times as it ends."""
    for job in jobs.values():
        job()
    runs: dict[str, list[M]] = {label: [] for label in jobs}
    for number in range(1, repeat + 1):
        for label, job in jobs.items():
            runs[label].append(job())
        if progress:
            print(f"round {number}/{repeat}: " + ", ".join(
                f"{label} {values[-1].wall:.2f} s" for label, values in runs.items()), flush=True)
    return runs


def median(values: Iterable[float]) -> float:
    """The median of the runs that finished (NaN marks one that did not); NaN if none did."""
    done = [value for value in values if not math.isnan(value)]
    return statistics.median(done) if done else math.nan


@dataclass
class Timings:
    """The samples of each measured command, by label, in the order they ran."""

    runs: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, label: str, sample: Sample) -> None:
        self.runs.setdefault(label, []).append(sample)

    def median(self, label: str) -> Sample:
        """The median wall and CPU time of the runs of `label` that finished."""
        samples = [s for s in self.runs[label] if not math.isnan(s.wall)]
        return Sample(median(s.wall for s in samples), median(s.cpu for s in samples))

    def walls(self, label: str) -> list[float]:
        """The wall times of the runs of `label` that finished."""
        return [s.wall for s in self.runs[label] if not math.isnan(s.wall)]


# Report ---------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def ratio_goal(ratio: float, goal: float) -> str:
    """`1.07x (goal <= 1.25x: met)`."""
    return f"{ratio:.2f}x (goal <= {goal}x: {verdict(ratio <= goal)})"


def spread(walls: Sequence[float]) -> str:
    return f"min {min(walls):.3f}, max {max(walls):.3f}" if walls else "no run finished"


def print_medians(timings: Timings, width: int) -> None:
    """One line a label: the median wall time, its spread, and how many runs hung."""
    for label, samples in timings.runs.items():
        walls = timings.walls(label)
        hung = len(samples) - len(walls)
        print(f"{label:<{width}} median {median(walls):.3f} s ({spread(walls)})"
              + (f"; {hung} of {len(samples)} HUNG" if hung else ""))


# Projects -------------------------------------------------------------------------------


def project_yaml(name: str, rest: str = "") -> str:
    return f"{HEADER}kind: project\nname: {name}\n{rest}"


def function_yaml(name: str, code: str, handler: str, base_image: str | None = None) -> str:
    text = f"{HEADER}kind: function\nname: {name}\ncode: {code}\nhandler: {handler}\n"
    return text + (f"environment:\n  base_image: {base_image}\n" if base_image else "")


def pipeline_yaml(name: str, steps: Iterable[tuple[str, str]]) -> str:
    """A pipeline of steps given as (step name, function name), in order."""
    lines = "".join(f"  - name: {step}\n    function: {function}\n" for step, function in steps)
    return f"{HEADER}kind: pipeline\nname: {name}\nsteps:\n{lines}"


def job_yaml(name: str, kind: str, target: str, rest: str = "") -> str:
    """A job running the function or pipeline (`kind`) named `target`."""
    return f"{HEADER}kind: job\nname: {name}\nrun: {{{kind}: {target}}}\n{rest}"


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, "utf-8")


def git(folder: Path, *args: str) -> list[str]:
    """`git -C FOLDER ARGS` with the bench's committer name."""
    return ["git", "-C", str(folder), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
            *args]


def commit_project(root: Path, files: Mapping[str, str], *, branch: str | None = None,
                   message: str = "bench project") -> None:
    """`files` written into `root`, made a git repository, and committed."""
    run(["git", "init", "-q", *(["-b", branch] if branch else []), str(root)])
    write_files(root, files)
    run(git(root, "add", "-A"))
    run(git(root, "commit", "-q", "-m", message))


def build_one_image(root: Path) -> str:
    """Build the image of the project in `root`, which must have exactly one; its tag."""
    run(runyard("build", "-C", str(root)))
    done = run(runyard("build", "-C", str(root), "--json"))
    images = [str(entry["image"]) for entry in json.loads(done.stdout)]
    if len(images) != 1:
        sys.exit(f"bench setup error: expected one image, got {images}")
    return images[0]


def remove_image(image: str) -> None:
    if image:
        subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True, check=False)
