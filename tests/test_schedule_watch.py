"""`runyard schedule` with an injected clock, and `runyard watch`, end to end.

`schedule --once --now TIME` is one tick of the scheduler at a pretended time, in a
new process each time: what it remembers lives on the results branch (index/schedule/),
so every tick here is also a restarted scheduler. The project under
tests/projects/gitops has three scheduled jobs (`nightly`: cron 0 3 * * *;
`six-hourly`: cron 0 */6 * * * with catchup; `once`: at 2030-01-02T10:00:00Z); each
test keeps only the ones it is about.
"""

from __future__ import annotations

import fcntl
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import CHECKOUT, commit_all, copy_project, edit_file, git, make_repo

PROJECT = CHECKOUT / "tests" / "projects" / "gitops"
BRANCH = "runyard/results"
SCHEDULED = ("nightly", "once", "six-hourly")
SCHEDULERS = 6  # started at once on the same repository


# --- helpers -------------------------------------------------------------------------------


def runyard(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def scheduled_repo(dest: Path, keep: Iterable[str]) -> Path:
    """The test project as a git repository, with only the scheduled jobs in `keep`."""
    copy_project(PROJECT, dest)
    for name in set(SCHEDULED) - set(keep):
        (dest / "jobs" / f"{name}.yaml").unlink()
    make_repo(dest)
    commit_all(dest, "the schedule test project")
    return dest


def tick(repo: Path, now: str) -> list[str]:
    """One `schedule --once --now NOW` (a new process); the job of each run it started."""
    done = runyard("schedule", "-C", repo, "--once", "--now", now, "--backend", "local")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    started = re.findall(r"^schedule \| job (\S+): due ", done.stdout, re.MULTILINE)
    count = int(re.findall(r"^(\d+) scheduled runs?$", done.stdout, re.MULTILINE)[-1])
    assert count == len(started), done.stdout
    return started


def show(repo: Path, path: str) -> str:
    return git(repo, "show", f"{BRANCH}:{path}")


def schedule_state(repo: Path, job: str) -> dict[str, Any]:
    state: dict[str, Any] = yaml.safe_load(show(repo, f"index/schedule/{job}.yaml"))
    return state


def scheduled_runs(repo: Path, job: str) -> list[dict[str, Any]]:
    """The run records of `job` on the results branch, oldest first."""
    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", BRANCH, "runs/"], cwd=repo,
                             capture_output=True, text=True)
    records = [yaml.safe_load(show(repo, path)) for path in listing.stdout.split()
               if path.endswith("/run.yaml")]
    mine = [r for r in records if r["metadata"]["job"] == job]
    return sorted(mine, key=lambda r: (r["status"]["start"] or "", r["metadata"]["uid"]))


def details(repo: Path, job: str) -> list[str]:
    return [r["spec"]["trigger"]["detail"] for r in scheduled_runs(repo, job)]


# --- schedule ------------------------------------------------------------------------------


def test_first_tick_sets_a_baseline_then_a_due_time_runs_once(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", SCHEDULED)
    assert tick(repo, "2030-01-01T00:30:00Z") == []  # the first check only sets the baseline
    for job in SCHEDULED:
        assert schedule_state(repo, job)["checked"] == "2030-01-01T00:30:00+00:00"
    assert tick(repo, "2030-01-01T03:00:20Z") == ["nightly"]
    (run,) = scheduled_runs(repo, "nightly")
    assert run["status"]["state"] == "completed"
    assert run["status"]["results"] == {"incremented": 4}
    assert run["spec"]["trigger"] == {"kind": "schedule", "ref": "refs/heads/main",
                                      "detail": "due 2030-01-01T03:00:00+00:00"}
    assert run["spec"]["revision"] == git(repo, "rev-parse", "HEAD").strip()
    assert tick(repo, "2030-01-01T03:00:40Z") == []  # the same time does not run again
    assert tick(repo, "2030-01-01T05:59:00Z") == []
    assert len(scheduled_runs(repo, "nightly")) == 1
    assert git(repo, "status", "--porcelain") == ""


def test_a_missed_time_runs_once_late_after_a_long_downtime(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["nightly"])
    assert tick(repo, "2030-01-01T00:30:00Z") == []
    # down for three days and a bit: 03:00 of the 1st, 2nd, 3rd and 4th are missed
    assert tick(repo, "2030-01-04T05:00:00Z") == ["nightly"]
    assert details(repo, "nightly") == ["due 2030-01-04T03:00:00+00:00, late by 120 min"]
    assert tick(repo, "2030-01-04T05:01:00Z") == []
    assert tick(repo, "2030-01-05T03:00:30Z") == ["nightly"]  # on time again: not late
    assert details(repo, "nightly")[-1] == "due 2030-01-05T03:00:00+00:00"


def test_catchup_runs_each_missed_time(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["six-hourly"])
    assert tick(repo, "2030-01-01T01:00:00Z") == []
    assert tick(repo, "2030-01-02T01:00:00Z") == ["six-hourly"] * 4
    assert details(repo, "six-hourly") == [
        "due 2030-01-01T06:00:00+00:00, late by 1140 min",
        "due 2030-01-01T12:00:00+00:00, late by 780 min",
        "due 2030-01-01T18:00:00+00:00, late by 420 min",
        "due 2030-01-02T00:00:00+00:00, late by 60 min",
    ]
    assert {r["status"]["state"] for r in scheduled_runs(repo, "six-hourly")} == {"completed"}
    assert tick(repo, "2030-01-02T05:59:00Z") == []


def test_at_runs_once_and_never_again(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["once"])
    assert tick(repo, "2030-01-02T09:59:00Z") == []
    assert tick(repo, "2030-01-02T10:00:30Z") == ["once"]
    assert details(repo, "once") == ["due 2030-01-02T10:00:00+00:00"]
    assert scheduled_runs(repo, "once")[0]["status"]["results"] == {"doubled": 2}
    assert tick(repo, "2030-01-02T10:05:00Z") == []
    assert tick(repo, "2031-06-01T00:00:00Z") == []
    assert schedule_state(repo, "once")["done"] is True
    # moved to another time, the one-off runs again, once
    edit_file(repo / "jobs" / "once.yaml", "2030-01-02T10:00:00Z", "2031-07-01T00:00:00Z")
    commit_all(repo, "run it again in July")
    assert tick(repo, "2031-06-30T23:00:00Z") == []
    assert tick(repo, "2031-07-01T00:10:00Z") == ["once"]
    assert tick(repo, "2031-07-02T00:00:00Z") == []
    assert details(repo, "once")[-1] == "due 2031-07-01T00:00:00+00:00, late by 10 min"


def test_a_restarted_scheduler_neither_repeats_nor_loses(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["nightly", "once"])
    assert tick(repo, "2030-01-01T00:30:00Z") == []
    assert tick(repo, "2030-01-01T03:00:10Z") == ["nightly"]
    # another machine takes over with a clone: the state comes with the results branch
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(repo), str(other))
    git(other, "fetch", "--quiet", "origin", f"{BRANCH}:{BRANCH}")
    assert schedule_state(other, "nightly")["checked"] == "2030-01-01T03:00:10+00:00"
    assert tick(other, "2030-01-01T03:00:10Z") == []  # no repeat
    assert tick(other, "2030-01-01T03:30:00Z") == []
    # down over the next due times: each job's missed time runs once on restart
    assert sorted(tick(other, "2030-01-02T11:00:00Z")) == ["nightly", "once"]
    assert details(other, "nightly")[-1] == "due 2030-01-02T03:00:00+00:00, late by 480 min"
    assert details(other, "once") == ["due 2030-01-02T10:00:00+00:00, late by 60 min"]
    assert tick(other, "2030-01-02T11:00:00Z") == []
    assert len(scheduled_runs(other, "nightly")) == 2


def test_a_clock_that_goes_back_does_not_run_a_time_twice(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["nightly"])
    assert tick(repo, "2030-01-01T00:30:00Z") == []
    assert tick(repo, "2030-01-01T03:00:20Z") == ["nightly"]
    assert tick(repo, "2030-01-01T02:59:00Z") == []  # the clock went back 80 s
    assert schedule_state(repo, "nightly")["checked"] == "2030-01-01T03:00:20+00:00"
    assert tick(repo, "2030-01-01T03:00:40Z") == []  # 03:00 ran already
    assert len(scheduled_runs(repo, "nightly")) == 1


def test_schedulers_started_at_once_run_a_due_time_once(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["nightly"])
    assert tick(repo, "2030-01-01T00:30:00Z") == []
    command = [sys.executable, "-m", "runner", "schedule", "-C", str(repo), "--once", "--now",
               "2030-01-01T03:00:20Z", "--backend", "local"]
    schedulers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True) for _ in range(SCHEDULERS)]
    outputs = [process.communicate(timeout=120) for process in schedulers]
    assert all(process.returncode == 0 for process in schedulers), outputs
    counts = sorted(out.splitlines()[-1] for out, _ in outputs)
    assert counts == ["0 scheduled runs"] * (SCHEDULERS - 1) + ["1 scheduled run"]
    assert len(scheduled_runs(repo, "nightly")) == 1


def test_a_scheduler_waits_while_another_holds_the_lock(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["nightly"])
    assert tick(repo, "2030-01-01T00:30:00Z") == []
    before = git(repo, "rev-parse", BRANCH)
    lock = repo / ".git" / "runyard" / "locks" / "schedule.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another scheduler's tick holds it
        waiting = subprocess.Popen(
            [sys.executable, "-m", "runner", "schedule", "-C", str(repo), "--once", "--now",
             "2030-01-01T03:00:20Z", "--backend", "local"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None, waiting.communicate()
        assert git(repo, "rev-parse", BRANCH) == before  # nothing claimed meanwhile
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert out.splitlines()[-1] == "1 scheduled run"


def test_a_run_that_fails_before_it_is_recorded_is_settled_not_claimed_again(
        tmp_path: Path) -> None:
    # Runs a killed scheduler claimed are due again (test_recovery); one that failed here
    # (the swarm backend without a registry: refused before any record) was tried, and is
    # not tried again at every tick.
    repo = scheduled_repo(tmp_path / "p", ["nightly"])
    assert tick(repo, "2030-01-01T00:30:00Z") == []
    failed = runyard("schedule", "-C", repo, "--once", "--now", "2030-01-01T03:00:20Z",
                     "--backend", "swarm")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "needs a registry" in failed.stderr
    assert schedule_state(repo, "nightly")["claims"] == []
    assert tick(repo, "2030-01-01T03:00:40Z") == []
    assert scheduled_runs(repo, "nightly") == []


def test_schedule_needs_once_for_now(tmp_path: Path) -> None:
    repo = scheduled_repo(tmp_path / "p", ["nightly"])
    done = runyard("schedule", "-C", repo, "--now", "2030-01-01T00:00:00Z")
    assert done.returncode == 2
    assert "--now goes with --once" in done.stderr


# --- watch ---------------------------------------------------------------------------------


class Lines:
    """The lines a process prints, read by a thread so the test can wait with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def until(self, done: Callable[[str], bool], timeout: float = 20.0) -> list[str]:
        """The lines up to and including the first one where `done` is true."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"nothing matching came within {timeout} s; output:\n"
                            + "\n".join(self.seen))
            if line is None:
                pytest.fail("the process ended; output:\n" + "\n".join(self.seen))
            got.append(line)
            self.seen.append(line)
            if done(line):
                return got


def test_watch_prints_the_plan_and_the_errors(tmp_path: Path) -> None:
    project = copy_project(PROJECT, tmp_path / "p")
    process = subprocess.Popen([sys.executable, "-m", "runner", "watch", str(project)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = Lines(process)
        assert lines.until(lambda line: line.startswith("watching"))[-1].startswith(
            f"watching {project.resolve()}")
        beta = project / "src" / "beta.py"
        beta.write_text(beta.read_text() + "\n# an edit\n")
        assert lines.until(lambda line: line.startswith("changed:")) == ["changed: src/beta.py"]
        plan = lines.until(lambda line: line.startswith("Plan:"))
        assert "  ~ beta                 code changed (src/beta.py)" in plan
        assert "    alpha                unchanged" in plan
        assert "  + beta-job             will run: function beta changed" in plan
        assert "  + both-job             will run: function beta changed" in plan
        assert "    alpha-job            will not run: nothing it uses changed" in plan
        assert plan[-1] == "Plan: 2 jobs to run, 5 not."
        edit_file(project / "jobs" / "beta-job.yaml", "function: beta}", "function: gamma}")
        assert lines.until(lambda line: line.startswith("changed:")) == [
            "changed: jobs/beta-job.yaml"]
        errors = lines.until(lambda line: "error" in line and " in " in line)
        assert errors == ["jobs/beta-job.yaml:4:17: no function named 'gamma' (known: alpha, beta)",
                          "1 error in 1 file"]
        # fixed again: the plan comes back
        edit_file(project / "jobs" / "beta-job.yaml", "function: gamma}", "function: beta}")
        assert lines.until(lambda line: line.startswith("changed:")) == [
            "changed: jobs/beta-job.yaml"]
        assert lines.until(lambda line: line.startswith("Plan:"))[-1].startswith("Plan: ")
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(10)
