"""A runner that dies, is stopped or is lost: nothing stays `running`, nothing is left behind.

Fault injection against a real Docker engine and real git, no mocks. A `runyard run`
process is started in a session of its own, the results branch is watched with plain
git until the run is where the test wants it, and then only that process is killed
with SIGKILL (its containers live on: they are the engine's children, not its). The
next command that runs something (a `runyard run` of the quick function) must then
reconcile (DESIGN §3): every run the dead runner left `running` is recorded `aborted`
with the reason `runner lost`, index/running is empty, and no container, scratch
folder or loop mount of the dead runner is left. A container ends itself at its
deadline (timeout + 10 s) with no runner left; `runs logs --follow` never waits for
nothing; SIGTERM and Ctrl-C still abort in order; the local backend recovers too.

The project under tests/projects/recovery is copied once per module into a git
repository under a unique name; its one image is built once, by the module fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.helpers import CHECKOUT, committed_copy, git

PROJECT = CHECKOUT / "tests" / "projects" / "recovery"
BRANCH = "runyard/results"
NAME = f"ryrecover-{secrets.token_hex(3)}"
PROJECT_LABEL = "dev.runyard.project"
RUN_LABEL = "dev.runyard.run"
RUNNER_LABEL = "dev.runyard.runner"
HOST = socket.gethostname()
LOST = "runner lost"
TIMEOUT, GRACE = 3.0, 10.0  # the spin function's timeout; a container's deadline is timeout + GRACE

pytestmark = pytest.mark.docker

Record = dict[str, Any]
T = TypeVar("T")


# --- processes ------------------------------------------------------------------------------


def runyard(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` in `cwd`, to its end."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1"})


def new_uid() -> str:
    """A run uid as runyard makes them (time-sortable hex, random tail)."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(3)}"


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks after boot); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] == "Z" else int(fields[19])  # a zombie is gone too


@dataclass
class Runner:
    """A `runyard run` process of this test, in a session of its own."""

    process: subprocess.Popen[bytes]
    output: Path
    uid: str

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def owner(self) -> str:
        """How runyard names this process in records, labels: HOST/PID:START."""
        return f"{HOST}/{self.pid}:{self.started}"

    @property
    def folder(self) -> str:
        """The name of this process's scratch folder under .git/runyard/scratch."""
        return f"{HOST}-{self.pid}-{self.started}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the runner alone (not its session, not its containers), then reap it."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def alive(self) -> None:
        assert self.process.poll() is None, f"the runner ended early:\n{self.text()}"


class Runners:
    """Starts runners, and at the end kills (by pid) any this test left alive."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Runner] = []

    def start(self, repo: Path, *args: str, uid: str | None = None) -> Runner:
        uid = uid or new_uid()
        output = self.tmp_path / f"runner-{len(self.started)}.txt"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "runner", "run", *args, "--uid", uid], cwd=repo,
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
        runner = Runner(process, output, uid)
        runner.started = start_ticks(process.pid) or 0  # type: ignore[attr-defined]
        self.started.append(runner)
        return runner

    def close(self) -> None:
        for runner in self.started:
            if runner.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(runner.pid, signal.SIGKILL)
                runner.process.wait(timeout=10)


def wait_for(check: Callable[[], T], timeout: float, what: str,
             runner: Runner | None = None, every: float = 0.05) -> T:
    """Poll `check` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if runner is not None:
            runner.alive()
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}" + (
            f"\n{runner.text()}" if runner else "")
        time.sleep(every)


# --- the results branch, read with plain git -------------------------------------------------


def running_index(repo: Path) -> set[str]:
    """The uids in index/running on the results branch (empty when there is no branch yet)."""
    done = subprocess.run(["git", "ls-tree", "--name-only", f"{BRANCH}:index/running"], cwd=repo,
                          capture_output=True, text=True, check=False)
    return set(done.stdout.split()) if done.returncode == 0 else set()


def read_record(repo: Path, uid: str) -> Record:
    record: Record = yaml.safe_load(git(repo, "show", f"{BRANCH}:runs/{uid[-2:]}/{uid}/run.yaml"))
    return record


def all_records(repo: Path) -> dict[str, Record]:
    """Every run record on the results branch, by uid (one `git cat-file --batch`)."""
    names = git(repo, "ls-tree", "-r", "--name-only", BRANCH, "--", "runs").split()
    paths = [name for name in names if name.endswith("/run.yaml")]
    wanted = "".join(f"{BRANCH}:{path}\n" for path in paths).encode()
    data = subprocess.run(["git", "cat-file", "--batch"], cwd=repo, input=wanted,
                          capture_output=True, check=True).stdout
    records: dict[str, Record] = {}
    position = 0
    for _ in paths:
        header_end = data.index(b"\n", position)
        size = int(data[position:header_end].split()[2])
        body = data[header_end + 1:header_end + 1 + size]
        position = header_end + 1 + size + 1
        record = yaml.safe_load(body)
        records[record["metadata"]["uid"]] = record
    return records


def children_of(repo: Path, parent: str) -> list[Record]:
    return [r for r in all_records(repo).values() if r["metadata"]["parent"] == parent]


# --- what the host holds ----------------------------------------------------------------------


def containers(*filters: str, running: bool = False) -> list[dict[str, str]]:
    """This module's containers (name, state, runner label), with more `label=...` filters."""
    args = ["docker", "ps", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={NAME}",
            "--format", '{{.Names}}\t{{.State}}\t{{.Label "' + RUNNER_LABEL + '"}}\t'
                        '{{.Label "' + RUN_LABEL + '"}}']
    if not running:
        args.append("--all")
    for item in filters:
        args += ["--filter", item]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    rows = [line.split("\t") for line in done.stdout.splitlines() if line.strip()]
    return [{"name": r[0], "state": r[1], "runner": r[2], "run": r[3]} for r in rows]


def scratch_root(repo: Path) -> Path:
    return (repo / ".git" / "runyard" / "scratch").resolve()


def scratch_folders(repo: Path, runner: Runner) -> list[Path]:
    """The runner's scratch folders (by host and pid, whatever start time they name)."""
    root = scratch_root(repo)
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.name.startswith(f"{HOST}-{runner.pid}-")]


def mounts_of(repo: Path, runner: Runner) -> list[str]:
    """Mount points in this mount namespace below the runner's scratch folder."""
    prefix = f"{scratch_root(repo) / runner.folder}/"
    points = (line.split()[1].replace("\\040", " ")
              for line in Path("/proc/self/mounts").read_text().splitlines())
    return [p for p in points if p.startswith(prefix)]


def loop_devices_of(repo: Path, runner: Runner) -> list[str]:
    """Loop devices whose backing file is in the runner's scratch folder."""
    done = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                          capture_output=True, text=True, check=False)
    folder = str(scratch_root(repo) / runner.folder)
    return [line for line in done.stdout.splitlines() if folder in line]


# --- the checks -------------------------------------------------------------------------------


def left_running(repo: Path, runner: Runner) -> dict[str, Record]:
    """After the kill, before anything reconciles: what the dead runner left `running`.

    Each of them is in index/running and says so in its record, naming the dead runner."""
    index = running_index(repo)
    assert index, "the killed runner left nothing recorded as running"
    left = {uid: read_record(repo, uid) for uid in index}
    for uid, record in left.items():
        status = record["status"]
        assert status["state"] == "running", record
        assert status["runner"] == runner.owner, (uid, status["runner"], runner.owner)
        assert status["host"] == HOST
        assert status["end"] is None
    return left


def reconcile(repo: Path, *args: str) -> Record:
    """The next command that runs something: a quick function in the same repository."""
    done = runyard("run", "quick", "--json", *args, cwd=repo)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: Record = json.loads(done.stdout)
    assert record["status"]["state"] == "completed"
    return record


def assert_recovered(repo: Path, runner: Runner, left: dict[str, Record]) -> dict[str, Record]:
    """Nothing of the dead `runner` is left: records, index, containers, scratch, mounts."""
    assert running_index(repo) == set(), "index/running still lists runs"
    records = all_records(repo)
    still = {uid: r["metadata"]["name"] for uid, r in records.items()
             if r["status"]["state"] == "running"}
    assert still == {}, f"records left running: {still}"
    for uid, before in left.items():
        status = records[uid]["status"]
        assert (status["state"], status["reason"]) == ("aborted", LOST), (uid, status)
        assert status["end"] is not None and status["duration"] is not None
        assert status["runner"] == runner.owner
        assert records[uid]["metadata"] == before["metadata"]
    for uid, record in records.items():  # a child never lacks its parent
        parent = record["metadata"]["parent"]
        assert parent is None or parent in records, f"run {uid} names parent {parent}, not recorded"
    assert containers() == [], "containers of this project are left"
    assert containers(f"label={RUNNER_LABEL}={runner.owner}") == []
    assert scratch_folders(repo, runner) == [], "the dead runner's scratch is left"
    assert mounts_of(repo, runner) == [], "the dead runner's scratch is still mounted"
    wait_for(lambda: not loop_devices_of(repo, runner), 10,
             "the loop devices of the dead runner's scratch to go")
    return records


def assert_runner_only_was_killed(repo: Path, runner: Runner, left: dict[str, Record]) -> None:
    """The kill hit the runner only: its containers run on, carry its name, are recorded."""
    alive = containers(f"label={RUNNER_LABEL}={runner.owner}", running=True)
    recorded = {name for r in left.values() for name in r["status"]["containers"]}
    assert alive, "the runner's containers ended with it"
    assert {c["name"] for c in alive} <= recorded, (alive, recorded)
    assert {c["run"] for c in alive} <= set(left)
    assert scratch_folders(repo, runner), "the runner's scratch went with it"
    assert mounts_of(repo, runner), "a killed runner's scratch cannot unmount itself"


def running_containers_of(runner: Runner, count: int) -> Callable[[], list[dict[str, str]]]:
    def check() -> list[dict[str, str]]:
        found = containers(f"label={RUNNER_LABEL}={runner.owner}", running=True)
        return found if len(found) >= count else []
    return check


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test project as a git repository, its image built by a first quick run."""
    path = committed_copy(PROJECT, tmp_path_factory.mktemp("recovery") / "project",
                          ("ryrecover", NAME), "the recovery test project")
    first = reconcile(path)
    yield path
    leftovers = containers()
    if leftovers:
        subprocess.run(["docker", "rm", "--force", *[c["name"] for c in leftovers]],
                       capture_output=True, check=False)
    root = f"{scratch_root(path)}/"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1]
        if point.startswith(root):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    subprocess.run(["docker", "image", "rm", first["spec"]["image"]], capture_output=True, check=False)


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[Runners]:
    started = Runners(tmp_path)
    yield started
    started.close()


# --- 1. kill -9 at several points of a grid, and of a pipeline ------------------------------------


def test_kill_right_after_the_parent_is_recorded(repo: Path, runners: Runners) -> None:
    runner = runners.start(repo, "grid")
    wait_for(lambda: runner.uid in running_index(repo), 120, "the parent's running record", runner)
    runner.kill()
    left = left_running(repo, runner)
    assert runner.uid in left
    parent = left[runner.uid]
    assert parent["metadata"]["iteration"] == 0 and parent["metadata"]["parent"] is None
    assert parent["spec"]["hyper"]["parallel"] == 2
    reconcile(repo)
    records = assert_recovered(repo, runner, left)
    assert records[runner.uid]["status"]["error"], "an aborted run says why"
    for child in children_of(repo, runner.uid):  # trials recorded before the kill, if any
        assert (child["status"]["state"], child["status"]["reason"]) == ("aborted", LOST)


def test_kill_while_trials_run(repo: Path, runners: Runners) -> None:
    runner = runners.start(repo, "grid")  # 4 trials of 6 s, 2 at a time
    wait_for(lambda: len(running_index(repo)) >= 3, 120, "two trials recorded running", runner)
    wait_for(running_containers_of(runner, 2), 60, "two trial containers running", runner)
    runner.kill()
    left = left_running(repo, runner)
    trials = {uid: r for uid, r in left.items() if uid != runner.uid}
    assert runner.uid in left and len(trials) == 2
    for record in trials.values():
        assert record["metadata"]["parent"] == runner.uid
        assert record["spec"]["backend"] == "docker"
        assert len(record["status"]["containers"]) == 1
    assert_runner_only_was_killed(repo, runner, left)
    reconcile(repo)
    assert_recovered(repo, runner, left)
    assert {r["metadata"]["uid"] for r in children_of(repo, runner.uid)} == set(trials)


def test_kill_between_trials(repo: Path, runners: Runners) -> None:
    runner = runners.start(repo, "serial")  # 3 short trials, one after the other
    first: set[str] = set()

    def first_trial_done() -> bool:
        index = running_index(repo)
        first.update(index - {runner.uid} if not first else set())
        return bool(first) and not first & index

    wait_for(first_trial_done, 120, "the first trial to end", runner, every=0.02)
    runner.kill()
    left = left_running(repo, runner)
    assert runner.uid in left and not first & set(left)
    reconcile(repo)
    records = assert_recovered(repo, runner, left)
    (done,) = first
    assert records[done]["status"]["state"] == "completed"  # what ended stays as it was
    assert records[done]["metadata"]["parent"] == runner.uid
    assert records[done]["status"]["results"] == {"a": 1}
    assert records[runner.uid]["status"]["state"] == "aborted"


def test_kill_in_the_middle_of_a_pipeline_step(repo: Path, runners: Runners) -> None:
    runner = runners.start(repo, "chain")  # first, then second (8 s), then third

    def second_running() -> str | None:
        for uid in running_index(repo) - {runner.uid}:
            if read_record(repo, uid)["metadata"]["name"] == "second":
                return uid
        return None

    second = wait_for(second_running, 120, "step second recorded running", runner)
    wait_for(running_containers_of(runner, 1), 60, "step second's container running", runner)
    runner.kill()
    left = left_running(repo, runner)
    assert set(left) == {runner.uid, second}
    assert left[runner.uid]["spec"]["pipeline"] == "chain"
    assert_runner_only_was_killed(repo, runner, left)
    reconcile(repo)
    assert_recovered(repo, runner, left)
    steps = {r["metadata"]["name"]: r for r in children_of(repo, runner.uid)}
    assert set(steps) == {"first", "second"}  # third never started, and is not made up
    assert steps["first"]["status"]["state"] == "completed"
    assert (steps["second"]["status"]["state"], steps["second"]["status"]["reason"]) == (
        "aborted", LOST)


# --- 2. a container ends itself at its deadline, runner or not --------------------------------------


def test_a_container_ends_at_its_deadline_with_no_runner(repo: Path, runners: Runners) -> None:
    runner = runners.start(repo, "spin")  # loops for ever; timeout 3 s
    wait_for(lambda: runner.uid in running_index(repo), 120, "the spin run recorded running", runner)
    (container,) = wait_for(running_containers_of(runner, 1), 60, "its container running", runner)
    runner.kill()
    left = left_running(repo, runner)
    # Well past the timeout the runner would have enforced, it still runs: nothing ended it...
    time.sleep(TIMEOUT + 2)
    assert containers(f"label={RUN_LABEL}={runner.uid}", running=True), "the container ended early"

    def ended() -> dict[str, Any] | str:
        done = subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container["name"]],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return "gone"
        state: dict[str, Any] = json.loads(done.stdout)
        return {} if state["Running"] else state

    # ...and by its deadline (timeout + grace) it has ended by itself, nothing reconciling it.
    state = wait_for(ended, GRACE + 10, "the container to end at its deadline", every=0.5)
    if state != "gone":
        assert isinstance(state, dict)
        lived = _seconds(state["FinishedAt"]) - _seconds(state["StartedAt"])
        assert TIMEOUT + GRACE - 1 <= lived <= TIMEOUT + GRACE + 7, lived
        assert state["ExitCode"] == 128 + signal.SIGKILL, state
        logs = subprocess.run(["docker", "logs", container["name"]], capture_output=True, text=True)
        assert "passed its deadline" in logs.stdout + logs.stderr
    reconcile(repo)
    assert_recovered(repo, runner, left)


def _seconds(stamp: str) -> float:
    """An engine timestamp (RFC 3339, nanoseconds) as seconds since the epoch."""
    from datetime import datetime

    whole, _, rest = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{rest or 0}")


# --- 3. runs logs --follow never waits for nothing ------------------------------------------------


def _follow(repo: Path, uid: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = runyard("runs", "logs", uid, "--follow", cwd=repo, timeout=timeout)
    return done, time.monotonic() - began


def test_follow_of_no_such_run_fails_at_once(repo: Path) -> None:
    done, took = _follow(repo, "fffffffffffabcdef", timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < 10
    assert "fffffffffffabcdef" in done.stderr and "no run" in done.stderr


def test_follow_of_a_run_whose_runner_was_killed(repo: Path, runners: Runners) -> None:
    runner = runners.start(repo, "nap", "-p", "pause=60")
    wait_for(lambda: runner.uid in running_index(repo), 120, "the nap run recorded running", runner)
    wait_for(running_containers_of(runner, 1), 60, "its container running", runner)
    follower = subprocess.Popen([sys.executable, "-m", "runner", "runs", "logs", runner.uid, "--follow"],
                                cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        time.sleep(2)
        assert follower.poll() is None, "follow ended while the run was still running"
        runner.kill()
        killed = time.monotonic()
        out, err = follower.communicate(timeout=30)
        took = time.monotonic() - killed
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 1, (out, err)
    assert took < 10, took
    assert b"nap a=0 pause=60" in out  # it followed the log while the run was there
    assert b"gone" in err and runner.uid.encode() in err, err
    again, took = _follow(repo, runner.uid, timeout=30)  # asked afresh, it answers at once too
    assert again.returncode == 1 and took < 10, again.stderr
    assert "gone" in again.stderr
    left = left_running(repo, runner)
    reconcile(repo)
    assert_recovered(repo, runner, left)


def test_follow_of_a_run_that_completes(repo: Path) -> None:
    started = runyard("run", "nap", "-p", "pause=2", "-p", "a=7", "--detach", cwd=repo)
    assert started.returncode == 0, started.stderr
    uid = started.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{17}", uid), started.stdout
    done, took = _follow(repo, uid, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nap a=7 pause=2" in done.stdout
    record = read_record(repo, uid)
    assert record["status"]["state"] == "completed"  # it ended when the run did
    assert record["status"]["results"] == {"a": 7}
    assert running_index(repo) == set()


# --- 4. SIGTERM and Ctrl-C still abort in order -----------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stopped_runner_records_its_runs_aborted(repo: Path, runners: Runners,
                                                   signum: signal.Signals) -> None:
    runner = runners.start(repo, "grid")  # 4 trials of 6 s, 2 at a time
    wait_for(lambda: len(running_index(repo)) >= 3, 120, "two trials recorded running", runner)
    wait_for(running_containers_of(runner, 2), 60, "two trial containers running", runner)
    os.kill(runner.pid, signum)
    signalled = time.monotonic()
    code = runner.process.wait(timeout=60)
    assert time.monotonic() - signalled < 30, "the running trials were waited for, not stopped"
    assert code == 1, runner.text()
    # nothing reconciles here: the runner itself left nothing behind
    assert running_index(repo) == set()
    records = all_records(repo)
    assert [r["metadata"]["name"] for r in records.values() if r["status"]["state"] == "running"] == []
    parent = records[runner.uid]
    assert (parent["status"]["state"], parent["status"]["reason"]) == ("aborted", "interrupted")
    trials = sorted(children_of(repo, runner.uid), key=lambda r: r["metadata"]["iteration"])
    assert [t["metadata"]["iteration"] for t in trials] == [1, 2, 3, 4]
    assert [(t["status"]["state"], t["status"]["reason"]) for t in trials] == [
        ("aborted", "interrupted")] * 4
    assert [t["status"]["state"] for t in parent["status"]["trials"]] == ["aborted"] * 4
    assert containers() == []
    assert scratch_folders(repo, runner) == []
    assert mounts_of(repo, runner) == []


# --- 5. the local backend -------------------------------------------------------------------------


def test_local_backend_kill_and_deadline(repo: Path, runners: Runners, tmp_path: Path) -> None:
    pidfile = tmp_path / "spin.pids"
    runner = runners.start(repo, "spin", "--backend", "local", "-p", f"pidfile={pidfile}")
    wait_for(lambda: runner.uid in running_index(repo), 120, "the spin run recorded running", runner)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"), 60,
             "the handler to start", runner)
    began = time.monotonic()  # the handler runs: its deadline (timeout + grace) counts from about now
    handler, supervisor = map(int, pidfile.read_text().split())
    ticks = {pid: start_ticks(pid) for pid in (handler, supervisor)}
    try:
        runner.kill()
        left = left_running(repo, runner)
        assert left[runner.uid]["spec"]["backend"] == "local"
        assert left[runner.uid]["status"]["containers"] == []
        assert all(start_ticks(pid) == ticks[pid] for pid in ticks), "the run ended with its runner"
        reconcile(repo, "--backend", "local")
        assert_recovered(repo, runner, left)

        def gone() -> bool:
            return all(start_ticks(pid) != ticks[pid] for pid in ticks)

        wait_for(gone, max(1.0, TIMEOUT + GRACE + 7 - (time.monotonic() - began)),
                 "the orphaned handler to end at its deadline", every=0.2)
        assert time.monotonic() - began > TIMEOUT + 2, "the handler ended before its timeout"
    finally:
        for pid, tick in ticks.items():  # never leave a spinning process behind
            if tick is not None and start_ticks(pid) == tick:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
