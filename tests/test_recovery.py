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
nothing; SIGTERM and Ctrl-C still abort in order; the local backend recovers too, and a
command on the local backend reconciles a lost Docker runner's containers as well. A runner
killed in an image build, while it stores an artifact, in `on-push` or in `schedule` loses
nothing either (the push's jobs run with the next push, the scheduled run runs again), and
a live runner beside a killed one is left alone.

Any runyard command on this host that starts runs may reconcile a lost runner of this
module at any moment (containers are the host's, not the repository's): where a test
must see a lost runner's container, it looks at once after the kill, or it freezes the
runner (SIGSTOP) instead, so that the runner is not lost and its container is left alone.

The project under tests/projects/recovery is copied once per module into a git
repository under a unique name; its one image is built once, by the module fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import select
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

from runner.record.owner import Owner
from runner.record.results import new_uid
from runner.run import scratch
from runner.run.reconcile import reconcile_scratch
from tests.helpers import CHECKOUT, committed_copy, git, left_by_the_engine, read_record

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


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid`; None once it is gone (a zombie is gone too)."""
    return Owner.of_process(pid).started or None


@dataclass
class Runner:
    """A `runyard run` process of this test, in a session of its own."""

    process: subprocess.Popen[bytes]
    output: Path
    uid: str
    started: int  # the kernel's start time of its process

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
        return self.command(repo, "run", *args, "--uid", uid, uid=uid)

    def command(self, repo: Path, *args: str, uid: str = "") -> Runner:
        """`runyard ARGS` (`uid`: of the run it starts, where it is one run)."""
        output = self.tmp_path / f"runner-{len(self.started)}.txt"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "runner", *args], cwd=repo,
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
        runner = Runner(process, output, uid, start_ticks(process.pid) or 0)
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


def recorded_running(repo: Path, uid: str) -> Callable[[], bool]:
    """A check: is run `uid` in index/running?"""
    return lambda: uid in running_index(repo)



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


def assert_reconciled_containers(owner: str) -> None:
    """The containers of the lost runner `owner` are gone (or being removed) as the
    reconciling command ends, then nothing of this project's is left."""
    left = [c for c in containers(f"label={RUNNER_LABEL}={owner}") if c["state"] != "removing"]
    assert left == [], f"the lost runner's containers are left: {left}"
    assert_no_containers()


def assert_no_containers() -> None:
    """Nothing of this module's containers is left, once the engine has taken down and
    removed those that ended (a run's goes by itself, moments after its end is told)."""
    assert left_by_the_engine(containers) == [], "containers of this project are left"


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


def left_running(repo: Path, runner: Runner, others: tuple[Runner, ...] = ()) -> dict[str, Record]:
    """After the kill, before anything reconciles: what the dead runner left `running`.

    Each run in index/running says so in its record, and names its runner: this one (or one
    of `others`, runners of this test too)."""
    index = running_index(repo)
    recorded = {uid: read_record(repo, uid) for uid in index}
    owners = {r.owner for r in (runner, *others)}
    for uid, record in recorded.items():
        status = record["status"]
        assert status["state"] == "running", record
        assert status["runner"] in owners, (uid, status["runner"], owners)
        assert status["host"] == HOST
        assert status["end"] is None
    left = {uid: r for uid, r in recorded.items() if r["status"]["runner"] == runner.owner}
    assert left, "the killed runner left nothing recorded as running"
    return left


def reconcile(repo: Path, *args: str) -> Record:
    """The next command that runs something: a quick function in the same repository."""
    done = runyard("run", "quick", "--json", *args, cwd=repo)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: Record = json.loads(done.stdout)
    assert record["status"]["state"] == "completed"
    return record


def assert_recovered(repo: Path, runner: Runner, left: dict[str, Record],
                     loops: bool = True) -> dict[str, Record]:
    """Nothing of the dead `runner` is left: records, index, containers, scratch, mounts
    (and, unless `loops` is False, the loop devices behind them)."""
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
    assert_reconciled_containers(runner.owner)
    assert scratch_folders(repo, runner) == [], "the dead runner's scratch is left"
    assert mounts_of(repo, runner) == [], "the dead runner's scratch is still mounted"
    if loops:
        assert_no_loop_devices(repo, runner)
    return records


def assert_no_loop_devices(repo: Path, runner: Runner) -> None:
    """Once nothing uses the unmounted scratch, its loop device is released too."""
    wait_for(lambda: not loop_devices_of(repo, runner), 10,
             "the loop devices of the dead runner's scratch to go")


def assert_runner_only_was_killed(repo: Path, runner: Runner, left: dict[str, Record]) -> None:
    """The kill hit the runner only: its containers run on, carry its name, are recorded.

    (Any runyard command on this host that starts runs may reconcile, and so remove the
    containers of the now lost runner, at any moment: this is checked at once.)"""
    alive = containers(f"label={RUNNER_LABEL}={runner.owner}", running=True)
    recorded = {name for r in left.values() for name in r["status"]["containers"]}
    assert alive, "the runner's containers ended with it"
    assert {c["name"] for c in alive} <= recorded, (alive, recorded)
    assert {c["run"] for c in alive} <= set(left)
    assert scratch_folders(repo, runner), "the runner's scratch went with it"
    assert mounts_of(repo, runner), "a killed runner's scratch cannot unmount itself"


def killed_in_its_run(repo: Path, runner: Runner, what: str) -> str:
    """Kill `runner` once its one run is recorded running and its container runs; the run's uid."""

    def its_run() -> list[str]:
        return [uid for uid in running_index(repo)
                if read_record(repo, uid)["status"]["runner"] == runner.owner]

    (uid,) = wait_for(its_run, 120, f"{what} recorded running", runner)
    wait_for(running_containers_of(runner, 1), 60, "its container running", runner)
    runner.kill()
    return uid


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
    first: list[str] = []

    def first_trial_done() -> bool:
        index = running_index(repo)
        if not first:
            first.extend(uid for uid in sorted(index - {runner.uid})
                         if read_record(repo, uid)["metadata"]["parent"] == runner.uid)
            del first[1:]
        return bool(first) and first[0] not in index

    wait_for(first_trial_done, 120, "the first trial to end", runner, every=0.02)
    runner.kill()
    left = left_running(repo, runner)
    assert runner.uid in left and first[0] not in left
    reconcile(repo)
    records = assert_recovered(repo, runner, left)
    done = records[first[0]]
    assert done["status"]["state"] == "completed"  # what ended stays as it was
    assert done["metadata"]["parent"] == runner.uid
    assert done["status"]["results"] == {"a": done["metadata"]["iteration"]}
    assert records[runner.uid]["status"]["state"] == "aborted"


@pytest.mark.parametrize("job", ["chain", "chain-grid"])
def test_kill_in_the_middle_of_a_pipeline_step(repo: Path, runners: Runners, job: str) -> None:
    # chain: first, then second (8 s), then third; chain-grid: two such pipeline runs at once,
    # trials of a hyper-parameter parent
    runner = runners.start(repo, job)

    def seconds_running() -> list[str]:
        found = []
        for uid in running_index(repo) - {runner.uid}:
            record = read_record(repo, uid)
            if record["metadata"]["name"] == "second" and record["status"]["runner"] == runner.owner:
                found.append(uid)
        return found

    seconds = wait_for(seconds_running, 120, "step second recorded running", runner)

    def a_second_step_runs() -> list[dict[str, str]]:
        alive = containers(f"label={RUNNER_LABEL}={runner.owner}", running=True)
        return [c for c in alive if c["run"] in seconds]

    wait_for(a_second_step_runs, 60, "step second's container running", runner)
    runner.kill()
    left = left_running(repo, runner)
    assert runner.uid in left and set(seconds) <= set(left)
    if job == "chain":
        assert set(left) == {runner.uid, *seconds}
    assert_runner_only_was_killed(repo, runner, left)
    reconcile(repo)
    records = assert_recovered(repo, runner, left)
    family = [records[runner.uid], *descendants(records, runner.uid)]
    pipelines = [r for r in family if r["spec"]["pipeline"] == "chain"]
    assert len(pipelines) == (1 if job == "chain" else 2)
    reached = 0
    for pipeline in pipelines:
        status = pipeline["status"]
        assert (status["state"], status["reason"]) == ("aborted", LOST)
        steps = {r["metadata"]["name"]: r for r in children_of(repo, pipeline["metadata"]["uid"])}
        assert set(steps) <= {"first", "second"}  # third never started, and is not made up
        if "second" in steps:
            reached += 1
            assert steps["first"]["status"]["state"] == "completed"
            assert (steps["second"]["status"]["state"], steps["second"]["status"]["reason"]) == (
                "aborted", LOST)
    assert reached >= 1


def test_a_live_runner_is_not_disturbed_by_the_reconcile(repo: Path, runners: Runners) -> None:
    # Two runners of trials in warm workers (a container each, the trials' folders mounted
    # into it from the runner's scratch); one is killed, and the next command reconciles
    # while the other's trials run: the live one's worker, mounts and records are its own.
    killed = runners.start(repo, "slow-serial")
    live = runners.start(repo, "slow-serial")
    for runner in (killed, live):
        wait_for(lambda r=runner: len([uid for uid in running_index(repo) if uid != r.uid
                                       and read_record(repo, uid)["metadata"]["parent"] == r.uid]),
                 120, "a trial recorded running", runner)
        wait_for(running_containers_of(runner, 1), 60, "its worker running", runner)
    killed.kill()
    left = left_running(repo, killed, others=(live,))
    reconcile(repo)
    live.alive()
    assert mounts_of(repo, live), "the live runner's scratch was unmounted"
    assert containers(f"label={RUNNER_LABEL}={live.owner}", running=True), \
        "the live runner's worker was removed"
    assert live.process.wait(timeout=120) == 0, live.text()
    records = assert_recovered(repo, killed, left)
    parent = records[live.uid]
    assert parent["status"]["state"] == "completed", parent["status"]
    trials = sorted(children_of(repo, live.uid), key=lambda r: r["metadata"]["iteration"])
    assert [(t["status"]["state"], t["status"]["results"]) for t in trials] == [
        ("completed", {"a": a}) for a in (1, 2, 3)]
    assert parent["spec"]["hyper"]["isolation"] == "process"


def descendants(records: dict[str, Record], uid: str) -> list[Record]:
    """The runs below `uid`: its children, theirs, and so on."""
    below = [r for r in records.values() if r["metadata"]["parent"] == uid]
    return below + [d for r in below for d in descendants(records, r["metadata"]["uid"])]


# --- 2. a container ends itself at its deadline, runner or not --------------------------------------


def _container_state(name: str) -> dict[str, Any] | None:
    """The engine's State of a container; None when it is gone."""
    done = subprocess.run(["docker", "inspect", "--format", "{{json .State}}", name],
                          capture_output=True, text=True, check=False)
    state: dict[str, Any] | None = json.loads(done.stdout) if done.returncode == 0 else None
    return state


class _Watched:
    """A running container as the test sees it with no runner: what it prints, and the
    engine's event of its end (it is removed right after, by the engine)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = _seconds((_container_state(name) or {})["StartedAt"])
        self.events = subprocess.Popen(
            ["docker", "events", "--filter", f"container={name}", "--filter", "event=die",
             "--format", "{{json .}}"], stdout=subprocess.PIPE, text=True)
        self.logs = subprocess.Popen(["docker", "logs", "--follow", name], text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.died: dict[str, Any] | None = None

    def ended(self) -> bool:
        assert self.events.stdout is not None
        if self.died is None and select.select([self.events.stdout], [], [], 0)[0]:
            self.died = json.loads(self.events.stdout.readline())
        return self.died is not None

    def assert_ended_at_its_deadline(self) -> None:
        """It ended by itself at timeout + grace: killed by its own runtime, which said so."""
        assert self.died is not None
        lived = self.died["timeNano"] / 1e9 - self.started
        assert TIMEOUT + GRACE - 1 <= lived <= TIMEOUT + GRACE + 7, lived
        assert self.died["Actor"]["Attributes"]["exitCode"] == str(128 + signal.SIGKILL)
        printed, _ = self.logs.communicate(timeout=30)
        assert "passed its deadline" in printed, printed

    def close(self) -> None:
        for process in (self.events, self.logs):
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_a_container_ends_at_its_deadline_with_no_runner(repo: Path, runners: Runners) -> None:
    # Two runs of `spin` (loops for ever; timeout 3 s). One runner is killed -9. Any
    # runyard command on this host may reconcile (remove) a lost runner's containers at
    # any moment, so the other runner is frozen (SIGSTOP): it is not lost, nobody may
    # remove its container, and it enforces nothing: its container must end by itself.
    killed = runners.start(repo, "spin")
    frozen = runners.start(repo, "spin")
    watched: dict[str, _Watched] = {}
    try:
        for runner in (killed, frozen):
            wait_for(recorded_running(repo, runner.uid), 120, "the spin run recorded running",
                     runner)
            (container,) = wait_for(running_containers_of(runner, 1), 60, "its container running",
                                    runner)
            watched[runner.uid] = _Watched(container["name"])
        os.kill(frozen.pid, signal.SIGSTOP)
        killed.kill()
        left = {r.uid: left_running(repo, r, others=(killed, frozen)) for r in (killed, frozen)}
        # Well past the timeout its runner would have enforced, the frozen runner's run still
        # runs; the killed runner's has not ended either (unless a reconciling command removed it).
        time.sleep(TIMEOUT + 2)
        assert not watched[frozen.uid].ended(), "the container ended early"
        assert not watched[killed.uid].ended(), "the container ended early"
        # By its deadline (timeout + grace) each has ended by itself, nothing reconciling it.
        wait_for(lambda: all(w.ended() for w in watched.values()), GRACE + 10,
                 "the containers to end at their deadline", every=0.5)
        for each in watched.values():
            each.assert_ended_at_its_deadline()
    finally:
        for each in watched.values():
            each.close()
    frozen.kill()  # a stopped process dies of SIGKILL too
    reconcile(repo)
    for runner in (killed, frozen):
        assert_recovered(repo, runner, left[runner.uid])


def test_the_engine_removes_a_killed_runners_container_once_it_ends(repo: Path,
                                                                    runners: Runners) -> None:
    runner = runners.start(repo, "nap", "-p", "pause=3")
    killed_in_its_run(repo, runner, "the nap run")
    left = left_running(repo, runner)
    # Nothing reconciles: the container ends after its nap, and the engine removes it itself.
    wait_for(lambda: not containers(f"label={RUNNER_LABEL}={runner.owner}"), 30,
             "the engine to remove the ended container of the killed runner")
    reconcile(repo)  # the records and the scratch are the next command's to put right
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


def test_follow_of_a_detached_run_killed_before_it_was_recorded(repo: Path) -> None:
    started = runyard("run", "nap", "-p", "pause=30", "--detach", cwd=repo)
    assert started.returncode == 0, started.stderr
    uid = started.stdout.strip().splitlines()[-1]
    host, _, rest = (repo / ".runyard" / "live" / f"{uid}.runner").read_text().strip().rpartition("/")
    pid, ticks = map(int, rest.split(":"))
    assert host == HOST and start_ticks(pid) == ticks
    os.kill(pid, signal.SIGKILL)  # at once: it has not even loaded the project yet
    wait_for(lambda: start_ticks(pid) != ticks, 10, "the detached runner to be gone")
    assert uid not in git(repo, "ls-tree", "-r", "--name-only", BRANCH, "--", "runs")
    done, took = _follow(repo, uid, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < 10, took
    assert uid in done.stderr and "ended before it was recorded" in done.stderr, done.stderr


def test_a_detached_runner_killed_mid_run_leaves_nothing(repo: Path) -> None:
    started = runyard("run", "nap", "-p", "pause=60", "--detach", cwd=repo)
    assert started.returncode == 0, started.stderr
    uid = started.stdout.strip().splitlines()[-1]
    live = repo / ".runyard" / "live"
    owner = (live / f"{uid}.runner").read_text().strip()
    pid, ticks = map(int, owner.rpartition("/")[2].split(":"))
    wait_for(recorded_running(repo, uid), 120, "the detached run recorded running")

    def its_container() -> list[dict[str, str]]:
        return containers(f"label={RUNNER_LABEL}={owner}", running=True)

    wait_for(its_container, 60, "its container running")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: start_ticks(pid) != ticks, 10, "the detached runner to be gone")
    assert {f"{uid}.detached", f"{uid}.runner"} <= {path.name for path in live.glob(f"{uid}.*")}
    reconcile(repo)
    status = read_record(repo, uid)["status"]
    assert (status["state"], status["reason"]) == ("aborted", LOST)
    assert list(live.glob(f"{uid}.*")) == [], "the live folder keeps files of the lost run"
    assert_reconciled_containers(owner)
    assert not [p for p in scratch_root(repo).iterdir() if p.name.startswith(f"{HOST}-{pid}-")]


def test_follow_of_a_run_that_completes(repo: Path) -> None:
    started = runyard("run", "nap", "-p", "pause=2", "-p", "a=7", "--detach", cwd=repo)
    assert started.returncode == 0, started.stderr
    uid = started.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{16}", uid), started.stdout
    # the detached runner (HOST/PID:START), to wait for its end below
    host, _, rest = (repo / ".runyard" / "live" / f"{uid}.runner").read_text().strip().rpartition("/")
    pid, ticks = map(int, rest.split(":"))
    assert host == HOST
    done, _ = _follow(repo, uid, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nap a=7 pause=2" in done.stdout
    record = read_record(repo, uid)
    assert record["status"]["state"] == "completed"  # it ended when the run did
    assert record["status"]["results"] == {"a": 7}
    assert running_index(repo) == set()
    wait_for(lambda: start_ticks(pid) != ticks, 30, "the detached runner to end")
    assert_no_containers()


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
    assert [t["state"] for t in parent["status"]["trials"]] == ["aborted"] * 4
    assert_no_containers()
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
        reconcile(repo, "--backend", "local")
        # its handler still runs in the (now unmounted) scratch: the loop device goes after it
        assert_recovered(repo, runner, left, loops=False)

        def gone() -> bool:
            return all(start_ticks(pid) != ticks[pid] for pid in ticks)

        wait_for(gone, max(1.0, TIMEOUT + GRACE + 7 - (time.monotonic() - began)),
                 "the orphaned handler to end at its deadline", every=0.2)
        assert_no_loop_devices(repo, runner)
    finally:
        for pid, tick in ticks.items():  # never leave a spinning process behind
            if tick is not None and start_ticks(pid) == tick:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_a_local_run_removes_a_lost_docker_runners_containers(repo: Path, runners: Runners) -> None:
    # Every command that starts runs reconciles (issue 10, "What must hold" 1), also one
    # that runs on the local backend. (A command on this host that reconciles first may
    # remove the container meanwhile: then this test cannot tell, and passes.)
    runner = runners.start(repo, "nap", "-p", "pause=60")
    wait_for(lambda: runner.uid in running_index(repo), 120, "the nap run recorded running", runner)
    wait_for(running_containers_of(runner, 1), 60, "its container running", runner)
    runner.kill()
    left = left_running(repo, runner)
    reconcile(repo, "--backend", "local")
    assert_recovered(repo, runner, left)


# --- 6. an image build ----------------------------------------------------------------------------

SLOW_BUILD = """apiVersion: runyard/v1
kind: function
name: slow-build
code: src/handlers.py
handler: quick
environment:
  base_image: python:3.11-slim
  env: {{FRESH: "{fresh}"}}
  setup: ["sleep 60"]
"""


def test_kill_during_an_image_build(repo: Path, runners: Runners, tmp_path: Path) -> None:
    # A copy of the project with a function whose image takes a minute to build (a fresh
    # environment each time): killed in its build, the runner leaves no build container and
    # no image; the next run (the function gone again) puts right the rest.
    copy = committed_copy(PROJECT, tmp_path / "project", ("ryrecover", NAME), "the project")
    (copy / "functions" / "slow-build.yaml").write_text(SLOW_BUILD.format(fresh=new_uid()))
    git(copy, "add", "functions/slow-build.yaml")
    git(copy, "commit", "--quiet", "--no-verify", "-m", "a slow build")
    runner = runners.start(copy, "slow-build")
    found = wait_for(lambda: re.search(r"Running in ([0-9a-f]{12})", runner.text()), 120,
                     "the build's setup step running", runner)
    building = found.group(1)
    assert _container_state(building), "the build's container is not there"
    runner.kill()
    wait_for(lambda: _container_state(building) is None, 30, "the build's container to go")
    git(copy, "rm", "--quiet", "functions/slow-build.yaml")
    git(copy, "commit", "--quiet", "--no-verify", "-m", "no slow build")
    reconcile(copy)
    assert scratch_folders(copy, runner) == [] and mounts_of(copy, runner) == []
    assert_reconciled_containers(runner.owner)
    tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                           f"runyard/{NAME}"], capture_output=True, text=True, check=True)
    assert len(tags.stdout.split()) == 1, f"an image of the killed build was tagged: {tags.stdout}"


KILLED_MAKING_A_TEMPLATE = """
import os, signal, sys
from pathlib import Path
from runner.run import scratch

def die_at_rename(frame, event, arg):  # the empty image is made, not yet named
    if event == "call" and frame.f_code.co_name == "replace" and "pathlib" in frame.f_code.co_filename:
        os.kill(os.getpid(), signal.SIGKILL)

Path(sys.argv[1]).mkdir()
sys.setprofile(die_at_rename)
scratch.make(Path(sys.argv[1]) / "a-run", 8 << 20, Path(sys.argv[1]) / scratch.TEMPLATES)
"""


def test_an_empty_image_a_killed_runner_was_making_is_removed(tmp_path: Path) -> None:
    # The first scratch of a size makes its empty file system (mkfs) beside the runners'
    # folders. A runner killed then leaves it half made, under a name of its own.
    root = tmp_path / "scratch"
    killed = subprocess.run([sys.executable, "-c", KILLED_MAKING_A_TEMPLATE, str(root)],
                            capture_output=True, text=True, timeout=60, env=os.environ)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (left,) = (root / scratch.TEMPLATES).iterdir()
    assert left.name.startswith(f"ext4-{8 << 20}.img.")
    mine = left.with_name(f"ext4-{8 << 20}.img.{Owner.current().folder_name}.1")
    mine.touch()  # one this (live) runner is making
    reconcile_scratch(root, lambda line: None)
    assert list((root / scratch.TEMPLATES).iterdir()) == [mine]


# --- 7. the artifact store -------------------------------------------------------------------------


def test_kill_while_an_artifact_is_stored(repo: Path, runners: Runners) -> None:
    store = repo / ".runyard" / "artifacts"
    runner = runners.start(repo, "big")

    def storing() -> list[Path]:
        return list(store.glob(".incoming-*")) if store.is_dir() else []

    wait_for(storing, 120, "the artifact being stored", runner, every=0.01)
    runner.kill()
    left = left_running(repo, runner)
    assert storing(), "the partial copy went with the runner"
    reconcile(repo)
    assert_recovered(repo, runner, left)
    assert storing() == [], "the killed runner's partial artifact is left in the store"


# --- 8. on-push ----------------------------------------------------------------------------------

PUSHED_JOB = """apiVersion: runyard/v1
kind: job
name: pushed
description: Added by a push that the test kills while this job runs.
run: {function: nap}
params: {pause: 8}
"""


def _commit(repo: Path, path: str, text: str) -> str:
    """Write `path` and commit it alone (the module's repository holds runyard's own files)."""
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    git(repo, "add", "--", path)
    git(repo, "commit", "--quiet", "--no-verify", "-m", f"add {path}")
    return git(repo, "rev-parse", "HEAD").strip()


def _push_record(repo: Path, revision: str) -> Record | None:
    done = subprocess.run(["git", "show", f"{BRANCH}:pushes/{revision}/main.yaml"], cwd=repo,
                          capture_output=True, text=True, check=False)
    found: Record | None = yaml.safe_load(done.stdout) if done.returncode == 0 else None
    return found


def test_kill_during_on_push_leaves_its_jobs_to_the_next_push(repo: Path, runners: Runners) -> None:
    # A push adds a job; its runner is killed while the job runs. The push must not pass for
    # processed: the next push (which changes nothing the job depends on) runs the job, and
    # the killed push's record says it failed, its runner lost.
    base = git(repo, "rev-parse", "HEAD").strip()
    killed_revision = _commit(repo, "jobs/pushed.yaml", PUSHED_JOB)
    runner = runners.command(repo, "on-push", "--before", base, "--after", killed_revision,
                             "--ref", "refs/heads/main")

    uid = killed_in_its_run(repo, runner, "the pushed job")
    taken = _push_record(repo, killed_revision)
    assert taken is not None, "the push was not recorded when its runner took it"
    assert (taken["status"], taken["runner"]) == ("running", runner.owner)
    left = left_running(repo, runner)
    assert set(left) == {uid} and left[uid]["metadata"]["job"] == "pushed"

    next_revision = _commit(repo, "notes.txt", "nothing any job reads\n")
    done = runyard("on-push", "--before", killed_revision, "--after", next_revision,
                   "--ref", "refs/heads/main", "--json", cwd=repo)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    (push,) = json.loads(done.stdout)
    assert push["status"] == "completed", push
    assert [(run["job"], run["state"]) for run in push["runs"]] == [("pushed", "completed")]
    lost = _push_record(repo, killed_revision)
    assert lost is not None and lost["status"] == "failed", lost
    assert LOST in lost["reason"] and runner.owner in lost["reason"]
    assert lost["finished"] is not None
    assert running_index(repo) == set()
    assert git(repo, "ls-tree", "--name-only", BRANCH, "index/running-pushes/") == ""
    assert_recovered(repo, runner, left)
    status = runyard("status", "--json", cwd=repo)
    assert status.returncode == 0, status.stderr
    rows = {row["job"]: row for row in json.loads(status.stdout)}
    assert rows["pushed"]["stale"] is False, rows["pushed"]


# --- 9. schedule ---------------------------------------------------------------------------------


def test_a_killed_scheduler_loses_no_run(repo: Path, runners: Runners) -> None:
    # A scheduler claims what is due (so that two never run it twice), then runs it. Killed
    # while the claimed run runs, the next scheduler runs it again: the run of a one-off
    # `at` is not lost (and runs once more only).
    scheduler = runners.command(repo, "schedule", "-C", str(repo), "--once")

    uid = killed_in_its_run(repo, scheduler, "the scheduled run")
    left = left_running(repo, scheduler)
    assert left[uid]["metadata"]["job"] == "once"
    again = runyard("schedule", "-C", repo, "--once", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "1 scheduled run", again.stdout
    records = assert_recovered(repo, scheduler, left)
    ran = sorted((r["status"]["state"], r["status"]["reason"]) for r in records.values()
                 if r["metadata"]["job"] == "once")
    assert ran == [("aborted", LOST), ("completed", None)], ran
    last = runyard("schedule", "-C", repo, "--once", cwd=repo)
    assert last.returncode == 0 and last.stdout.splitlines()[-1] == "0 scheduled runs", last.stdout
