"""Warm trial workers end to end: a hyper-parameter job forks its trials inside long-lived
containers of the function's image (runner/run/workers.py), on the Docker backend and
on the swarm backend (a service a worker, pinned to the runner's node). Each test that
takes `repo` runs on both. Real Docker, a real one-node swarm and registry
(scripts/swarm-setup), real git, no mocks.

The project (tests/projects/workers) has one handler, `probe`, that reports what it
finds of the trials before it (files in its working folder and /tmp, processes
other than the worker's fork server and itself, the container it runs in) and can
leave files and a lingering process behind, sleep past its timeout or take more
memory than its limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.helpers import (
    CHECKOUT,
    commit_all,
    committed_copy,
    edit_file,
    git,
    left_by_the_engine,
    read_record,
)
from tests.test_swarm import REGISTRY, project_services
from tests.test_swarm import swarm_ready as swarm_ready

PROJECT = CHECKOUT / "tests" / "projects" / "workers"
BRANCH = "runyard/results"
NAME = f"ryworkers-{secrets.token_hex(3)}"
LABEL = "dev.runyard.project"

Record = dict[str, Any]

pytestmark = pytest.mark.docker


def runyard(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def run_json(repo: Path, job: str, expect: int = 0) -> Record:
    done = runyard("run", job, "--json", cwd=repo)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: Record = json.loads(done.stdout)
    return record



def containers(*flags: str) -> list[str]:
    done = subprocess.run(["docker", "ps", "--quiet", *flags, "--filter", f"label={LABEL}={NAME}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def trials(parent: Record) -> list[Record]:
    rows: list[Record] = parent["status"]["trials"]
    return rows


@pytest.fixture(scope="module", params=["docker", "swarm"])
def repo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project, its runs on the Docker backend or (the runner's node a swarm manager,
    scripts/swarm-setup) on the swarm."""
    backend = request.param
    path = committed_copy(PROJECT, tmp_path_factory.mktemp("workers") / "project",
                          ("ryworkers", NAME), "the workers test project")
    if backend == "swarm":
        request.getfixturevalue("swarm_ready")
        with (path / "project.yaml").open("a") as handle:
            handle.write(f"execution: {{backend: swarm, registry: '{REGISTRY}'}}\n")
        commit_all(path, "on the swarm")
    yield path
    for tag in subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                              capture_output=True, text=True).stdout.split():
        if tag.startswith((f"runyard/{NAME}:", f"{REGISTRY}/runyard/{NAME}:")):
            subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def backend_of(repo: Path) -> str:
    return "swarm" if "backend: swarm" in (repo / "project.yaml").read_text() else "docker"


def test_a_trial_sees_nothing_of_the_trials_before_it(repo: Path) -> None:
    # every trial leaves a file in its working folder, /tmp and /dev/shm, a System V shared
    # memory segment, and a process in a session of its own that keeps writing /tmp/still-here
    parent = run_json(repo, "leftovers")
    assert parent["status"]["state"] == "completed", parent["status"]
    assert parent["spec"]["hyper"]["isolation"] == "process"
    rows = trials(parent)
    assert [t["state"] for t in rows] == ["completed"] * 6
    hosts = {t["results"]["host"] for t in rows}
    assert len(hosts) <= 2, hosts  # parallel: 2 -> two workers, each ran several trials
    for trial in rows:
        results = trial["results"]
        assert (results["cwd"], results["tmp"], results["shm"], results["others"]) == (
            [], [], [], []), trial
        assert results["sysv_shm"] == 0, trial
        assert results["tmpdir"] == "/tmp"
        record = read_record(repo, trial["uid"])
        assert record["spec"]["backend"] == backend_of(repo)
        assert "started" in git(repo, "show", f"{BRANCH}:runs/{trial['uid'][-2:]}/"
                                f"{trial['uid']}/log.txt")
    assert left_by_the_engine(lambda: containers("--all")) == []  # the workers are gone with the job
    assert project_services(NAME) == []  # (on the swarm, their services)
    assert mounts_under(repo) == []  # and so are the mounts of the trials' folders
    if backend_of(repo) == "swarm":  # each trial records its worker's service and node
        services = {read_record(repo, t["uid"])["status"]["service"] for t in rows}
        assert len(services) <= 2, services


def mounts_under(folder: Path) -> list[str]:
    points = (line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines())
    return [point for point in points if point.startswith(f"{folder.resolve()}/")]


def test_a_trial_cannot_reach_its_worker_nor_change_what_it_reads(repo: Path) -> None:
    parent = run_json(repo, "attack")
    rows = trials(parent)
    assert [t["state"] for t in rows] == ["completed"] * 2
    for trial in rows:
        results = {k: v for k, v in trial["results"].items() if k != "n"}
        assert results == {
            "input": "PermissionError", "spec": "PermissionError",
            "control_in": "PermissionError", "control_out": "PermissionError",  # chmod 0
            "server_fds": "PermissionError", "server_environ": "PermissionError",  # not dumpable
            "code": "PermissionError", "root": "PermissionError", "input_mount": "OSError",
            # and what the trial reads is on read-only mounts, as in a run's own container
            "read_only": ["/runyard/code", "/runyard/inputs", "/runyard/secrets",
                          "/runyard/trial"]}, trial


def test_a_trial_that_times_out_does_not_stop_the_others(repo: Path) -> None:
    parent = run_json(repo, "timeout")  # one failed trial of four: the job completes
    rows = trials(parent)
    assert [(t["state"], t["reason"]) for t in rows] == [
        ("completed", None), ("failed", "timeout"), ("completed", None), ("completed", None)]
    record = read_record(repo, rows[1]["uid"])
    assert record["status"]["error"] == "timed out after 3.0 s"
    # parallel: 1, so one worker ran them all: the timeout killed the trial, not the worker
    assert len({t["results"]["host"] for t in rows if t["state"] == "completed"}) == 1


def test_a_trial_out_of_memory_is_recorded_oom_and_the_job_goes_on(repo: Path) -> None:
    parent = run_json(repo, "oom")
    rows = trials(parent)
    assert [(t["state"], t["reason"]) for t in rows] == [
        ("completed", None), ("failed", "oom"), ("completed", None), ("completed", None)]
    record = read_record(repo, rows[1]["uid"])
    assert record["status"]["error"].startswith("killed: out of memory")
    assert [t["results"]["others"] for t in rows if t["state"] == "completed"] == [[]] * 3


def test_ctrl_c_stops_every_worker_and_records_the_unfinished_trials_aborted(
        repo: Path, tmp_path: Path) -> None:
    errors = (tmp_path / "stderr.txt").open("w")
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", "sleepers"], cwd=repo,
                               stdout=subprocess.PIPE, stderr=errors, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_pass_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 240
    try:
        while sum("started" in line for line in seen) < 2:
            assert time.monotonic() < deadline, "".join(seen)
            assert process.poll() is None, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        assert len(containers()) == 2  # two workers, a sleeping trial in each
        process.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        errors.close()
    assert time.monotonic() - signalled < 30  # the sleeping trials were stopped, not waited for
    assert code == 1, (tmp_path / "stderr.txt").read_text()
    assert left_by_the_engine(lambda: containers("--all")) == []
    assert project_services(NAME) == []
    runs = json.loads(runyard("runs", "list", "--job", "sleepers", "--json", cwd=repo).stdout)
    parent = next(r for r in runs if r["metadata"]["iteration"] == 0)
    assert (parent["status"]["state"], parent["status"]["reason"]) == ("aborted", "interrupted")
    assert [(t["state"], t["reason"]) for t in trials(parent)] == [("aborted", "interrupted")] * 6


def test_the_same_results_with_workers_and_with_a_container_per_trial(repo: Path) -> None:
    workers = run_json(repo, "same")
    edit_file(repo / "jobs" / "same.yaml", "  parallel: 2\n", "  parallel: 2\n  isolation: container\n")
    commit_all(repo, "a container per trial")
    alone = run_json(repo, "same")
    assert workers["spec"]["hyper"]["isolation"] == "process"
    assert alone["spec"]["hyper"]["isolation"] == "container"
    for parent in (workers, alone):
        assert parent["status"]["state"] == "completed"
    def outcome(parent: Record) -> list[tuple[Any, ...]]:
        return [(t["params"], t["state"], t["results"]["product"], t["results"]["cwd"],
                 t["results"]["tmp"]) for t in trials(parent)]

    assert outcome(workers) == outcome(alone)
    assert workers["status"]["best_iteration"] == alone["status"]["best_iteration"] == 6
    assert workers["status"]["results"]["product"] == alone["status"]["results"]["product"] == 60
    # a container per trial: six hosts; workers: two at most
    assert len({t["results"]["host"] for t in trials(alone)}) == 6
    assert len({t["results"]["host"] for t in trials(workers)}) <= 2
    # a rerun runs as the run did, and reproduces it but for the workers' host names
    done = runyard("rerun", workers["metadata"]["uid"], cwd=repo)
    differences = [line for line in done.stdout.splitlines()
                   if line.startswith(("result ", "trial ")) and line.split()[-2:] != ["old", "new"]]
    assert differences and all(" result host " in f" {line} " for line in differences), \
        done.stdout + done.stderr
    runs = json.loads(runyard("runs", "list", "--job", "same", "--json", cwd=repo).stdout)
    rerun = next(r for r in runs if r["metadata"].get("rerun_of") == workers["metadata"]["uid"])
    assert rerun["spec"]["hyper"]["isolation"] == "process"


def _pass_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_an_unknown_isolation_is_refused_with_its_place(tmp_path: Path) -> None:
    project = committed_copy(PROJECT, tmp_path / "project", ("ryworkers", NAME), "project")
    edit_file(project / "jobs" / "same.yaml", "  parallel: 2\n", "  parallel: 2\n  isolation: vm\n")
    done = runyard("validate", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    text = done.stdout + done.stderr
    assert "jobs/same.yaml:9" in text and "isolation" in text, text
    assert "Traceback" not in text


def test_the_sample_projects_tune_gives_the_same_results_either_way(sample_repo: Path) -> None:
    # a pipeline job with hyper: each step function has its own workers
    workers = run_json(sample_repo, "tune")
    edit_file(sample_repo / "jobs" / "tune.yaml", "  max_errors: 2\n",
              "  max_errors: 2\n  isolation: container\n")
    commit_all(sample_repo, "a container per trial")
    alone = run_json(sample_repo, "tune")
    assert (workers["spec"]["hyper"]["isolation"], alone["spec"]["hyper"]["isolation"]) == (
        "process", "container")

    def outcome(parent: Record) -> list[tuple[Any, ...]]:
        return [(t["params"], t["state"], t["results"]) for t in trials(parent)]

    assert [t["state"] for t in trials(workers)] == ["completed"] * 5
    assert outcome(workers) == outcome(alone)
    for key in ("best_iteration", "results", "artifacts"):
        assert workers["status"][key] == alone["status"][key], key


def test_the_workers_of_a_killed_runner_are_removed_by_the_next(repo: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", "sleepers"], cwd=repo,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pass_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 240
    try:
        while sum("started" in line for line in seen) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
    finally:
        process.kill()  # no chance to clean up
        process.wait()
    assert len(containers("--all")) == 2
    assert mounts_under(repo) != []
    run_json(repo, "same")  # the next runner puts right what the lost one left
    assert left_by_the_engine(lambda: containers("--all")) == []
    assert project_services(NAME) == []
    assert mounts_under(repo) == []
    runs = json.loads(runyard("runs", "list", "--job", "sleepers", "--json", cwd=repo).stdout)
    lost = [r for r in runs if r["status"]["reason"] == "runner lost"]
    assert lost and all(r["status"]["state"] == "aborted" for r in lost)


def test_the_local_backend_has_no_workers_and_records_no_isolation(repo: Path) -> None:
    done = runyard("run", "same", "--backend", "local", "--json", cwd=repo)
    assert done.returncode == 0, done.stderr
    parent = json.loads(done.stdout)
    assert parent["status"]["state"] == "completed"
    assert "isolation" not in parent["spec"]["hyper"]
