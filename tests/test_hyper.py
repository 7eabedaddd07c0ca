"""Hyper-parameter jobs end to end: `runyard run JOB` with `hyper:`, real git, no mocks.

A job with `hyper:` runs as a parent run (iteration 0) and one child run per trial
(metadata.parent is the parent's uid, iteration 1..N). Most tests use the `local`
backend, whose handlers (tests/projects/hyper/src/handlers.py) are stdlib only, and
append a line to a journal file when they start: what is not in the journal never
started. Two tests use Docker: the sample project's `tune` job, and SIGTERM in the
middle of a grid.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
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
    left_by_the_engine,
    most_at_once,
    read_record,
    sha256,
)

PROJECT = CHECKOUT / "tests" / "projects" / "hyper"
BRANCH = "runyard/results"
NAME = f"ryhyper-{secrets.token_hex(3)}"
LABEL = "dev.runyard.project"

Record = dict[str, Any]


# --- helpers -------------------------------------------------------------------------------


def runyard(*args: str | Path, cwd: Path, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` in `cwd`."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def run_json(repo: Path, *args: str | Path, expect: int = 0, timeout: float = 120) -> Record:
    """`runyard run ARGS --json` in `repo`: check its exit code, return the printed record."""
    done = runyard("run", *args, "--json", cwd=repo, timeout=timeout)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: Record = json.loads(done.stdout)
    return record


def run_local(repo: Path, job: str, *args: str | Path, expect: int = 0) -> Record:
    """A run on the local backend: seconds, so a minute means it hangs."""
    return run_json(repo, job, "--backend", "local", *args, expect=expect, timeout=60)



def children(repo: Path, parent: Record) -> list[Record]:
    """The trials' own records, in iteration order, as the parent's table lists them."""
    return [read_record(repo, trial["uid"]) for trial in parent["status"]["trials"]]


def job_records(repo: Path, job: str) -> list[Record]:
    done = runyard("runs", "list", "--all", "--job", job, "--limit", "10000", "--json", cwd=repo)
    assert done.returncode == 0, done.stderr
    records: list[Record] = json.loads(done.stdout)
    return records


def trial_params(parent: Record) -> list[dict[str, Any]]:
    return [trial["params"] for trial in parent["status"]["trials"]]


def started(journal: Path) -> list[dict[str, Any]]:
    """The journal's entries: one per handler that started."""
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text("utf-8").splitlines()]




def intervals_of(repo: Path, parent: Record) -> list[tuple[float, float]]:
    return [(r["status"]["results"]["start"], r["status"]["results"]["end"])
            for r in children(repo, parent)]


def new_project(dest: Path) -> Path:
    """A copy of the test project, named for this session, committed on branch main."""
    return committed_copy(PROJECT, dest, ("ryhyper", NAME), "the hyper test project")


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test project as a git repository, shared by this module's tests."""
    path = new_project(tmp_path_factory.mktemp("hyper") / "project")
    yield path
    tags = {r["spec"]["image"] for r in job_records(path, "slow-grid") if r["spec"].get("image")}
    for tag in tags:  # untag this module's image; its layers stay cached for the next run
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal.jsonl"


# --- strategies, exclude, max_trials ---------------------------------------------------------


def test_grid_never_runs_an_excluded_combination(repo: Path, journal: Path) -> None:
    parent = run_local(repo, "grid-exclude", "-p", f"journal={journal}")
    expected = [{"a": 1, "b": 10}, {"a": 1, "b": 20}, {"a": 2, "b": 10},
                {"a": 3, "b": 10}, {"a": 3, "b": 20}]
    assert parent["status"]["state"] == "completed"
    assert parent["metadata"]["iteration"] == 0 and parent["metadata"]["parent"] is None
    assert parent["spec"]["hyper"]["exclude"] == [{"a": 2, "b": 20}]
    assert trial_params(parent) == expected
    uid = parent["metadata"]["uid"]
    for iteration, child in enumerate(children(repo, parent), start=1):
        assert child["metadata"]["parent"] == uid
        assert child["metadata"]["iteration"] == iteration
        assert child["metadata"]["job"] == "grid-exclude"
        assert child["status"]["state"] == "completed"
        values = child["spec"]["params"]["trial"]  # the trial's own level
        assert values == expected[iteration - 1]
        assert not {"a", "b"} & set(child["spec"]["params"]["override"])  # given by hand only
        assert child["status"]["results"]["a"] == values["a"]  # what the handler got
    assert sorted((e["a"], e["b"]) for e in started(journal)) == sorted(
        (p["a"], p["b"]) for p in expected)
    # the excluded combination has no record at all, in this or any run of the job
    for record in job_records(repo, "grid-exclude"):
        values = record["spec"]["params"].get("trial", {})
        assert (values.get("a"), values.get("b")) != (2, 20)


@pytest.mark.parametrize(("job", "expected"), [
    ("grid-capped", [{"a": 1, "b": 10}, {"a": 1, "b": 20}, {"a": 2, "b": 10},
                     {"a": 2, "b": 20}]),
    ("list-capped", [{"a": 1, "b": 30}, {"a": 2, "b": 20}]),
    ("random-seeded", None),
])
def test_max_trials_caps_every_strategy(repo: Path, journal: Path, job: str,
                                        expected: list[dict[str, int]] | None) -> None:
    parent = run_local(repo, job, "-p", f"journal={journal}")
    params = trial_params(parent)
    if expected is None:  # random: 4 distinct combinations of the 5 x 4 grid
        assert len(params) == 4
        assert len({(p["a"], p["b"]) for p in params}) == 4
        assert all(p["a"] in range(1, 6) and p["b"] in range(4) for p in params)
    else:
        assert params == expected
    assert [t["state"] for t in parent["status"]["trials"]] == ["completed"] * len(params)
    assert len(started(journal)) == len(params)


def test_list_pairs_values_by_position(repo: Path) -> None:
    parent = run_local(repo, "list-pairs")
    pairs = [{"a": 1, "b": 30}, {"a": 2, "b": 20}, {"a": 3, "b": 10}]
    assert trial_params(parent) == pairs
    assert [{"a": c["status"]["results"]["a"], "b": c["status"]["results"]["b"]}
            for c in children(repo, parent)] == pairs


def test_random_trials_follow_the_project_seed(tmp_path: Path) -> None:
    from runner.project.trials import expand_trials

    project = new_project(tmp_path / "project")
    space = {"a": [1, 2, 3, 4, 5], "b": [0, 1, 2, 3]}
    first = trial_params(run_local(project, "random-seeded"))
    again = trial_params(run_local(project, "random-seeded"))
    assert again == first  # a rerun picks the same trials, in the same order
    assert first == expand_trials("random", space, max_trials=4, seed=11)
    edit_file(project / "project.yaml", "seed: 11", "seed: 12")
    commit_all(project, "another seed")
    other = trial_params(run_local(project, "random-seeded"))
    assert other == expand_trials("random", space, max_trials=4, seed=12)
    assert other != first


# --- stop_condition and max_errors -----------------------------------------------------------


def test_stop_condition_skips_trials_not_yet_started(repo: Path, journal: Path) -> None:
    parent = run_local(repo, "stop-early", "-p", f"journal={journal}")
    trials = parent["status"]["trials"]
    assert [(t["params"]["a"], t["state"], t["reason"]) for t in trials] == [
        (1, "completed", None), (2, "completed", None), (3, "completed", None),
        (4, "skipped", "stop_condition"), (5, "skipped", "stop_condition")]
    assert parent["status"]["state"] == "completed"
    assert [e["a"] for e in started(journal)] == [1, 2, 3]
    for child in children(repo, parent)[3:]:  # recorded, but never run
        assert child["metadata"]["parent"] == parent["metadata"]["uid"]
        assert child["status"]["state"] == "skipped"
        assert child["status"]["reason"] == "stop_condition"
        assert child["status"]["exit_code"] is None
        assert child["status"]["results"] == {}


def test_too_many_errors_fail_the_parent(repo: Path, journal: Path) -> None:
    # a = 2, 3 and 4 fail; max_errors: 1, so the second failure stops the job
    parent = run_local(repo, "errors-many", "-p", f"journal={journal}", expect=1)
    trials = parent["status"]["trials"]
    assert [(t["params"]["a"], t["state"], t["reason"]) for t in trials] == [
        (1, "completed", None), (2, "failed", "error"), (3, "failed", "error"),
        (4, "skipped", "max_errors"), (5, "skipped", "max_errors")]
    assert [e["a"] for e in started(journal)] == [1, 2, 3]
    status = parent["status"]
    assert status["state"] == "failed"
    assert status["reason"] == "max_errors"
    assert status["error"] == "2 of 5 trials failed"
    failed = children(repo, parent)[1]
    assert "ValueError: a=2 fails on purpose" in failed["status"]["error"]


def test_fewer_errors_than_max_errors_complete_and_are_counted(repo: Path) -> None:
    # a = 2 and 4 fail; max_errors: 2 tolerates them
    done = runyard("run", "errors-few", "--backend", "local", cwd=repo)
    assert done.returncode == 0, done.stdout + done.stderr
    uid = re.search(r"run (\w+) \(errors-few\): completed", done.stdout)
    assert uid is not None, done.stdout
    assert "error: 2 of 5 trials failed" in done.stdout
    parent = read_record(repo, uid[1])
    assert [t["state"] for t in parent["status"]["trials"]] == [
        "completed", "failed", "completed", "failed", "completed"]
    assert parent["status"]["state"] == "completed"
    assert parent["status"]["error"] == "2 of 5 trials failed"


# --- selector --------------------------------------------------------------------------------


@pytest.mark.parametrize(("selector", "best"), [
    (None, {"a": 2, "b": 0}),                 # the job's own: min.loss
    ("max.accuracy", {"a": 3, "b": 0}),       # given on the command line
])
def test_selector_picks_the_best_trial(repo: Path, selector: str | None,
                                       best: dict[str, int]) -> None:
    args = ["--selector", selector] if selector else []
    parent = run_local(repo, "pick", *args)
    chosen = selector or "min.loss"
    assert parent["spec"]["hyper"]["selector"] == chosen
    way, _, key = chosen.partition(".")
    trials = parent["status"]["trials"]
    assert len(trials) == 8
    winner = [t for t in trials if t["params"] == best]
    assert len(winner) == 1
    values = [t["results"][key] for t in trials]
    assert winner[0]["results"][key] == (min(values) if way == "min" else max(values))
    status = parent["status"]
    assert status["best_iteration"] == winner[0]["iteration"]
    record = read_record(repo, winner[0]["uid"])
    assert status["results"] == record["status"]["results"]
    assert status["artifacts"] == record["status"]["artifacts"]
    assert status["artifacts"][0]["hash"] == sha256(f"model a={best['a']} b=0\n".encode())
    # `runs show` lists the trials best first, by the selector, the best marked
    shown = runyard("runs", "show", parent["metadata"]["uid"], cwd=repo)
    assert shown.returncode == 0, shown.stderr
    rows = re.findall(r"^([* ])\s+(\d+)\s+(completed|failed|skipped|aborted)\b", shown.stdout,
                      re.MULTILINE)
    by_value = sorted(trials, key=lambda t: ((t["results"][key] if way == "min"
                                              else -t["results"][key]), t["iteration"]))
    assert [int(number) for _, number, _ in rows] == [t["iteration"] for t in by_value]
    assert [mark for mark, _, _ in rows] == ["*"] + [" "] * 7


def test_without_a_selector_no_trial_is_the_best(repo: Path) -> None:
    parent = run_local(repo, "score", "--hyper", "a=1,2,3")
    status = parent["status"]
    assert status["state"] == "completed"
    assert [t["state"] for t in status["trials"]] == ["completed"] * 3
    assert (status["best_iteration"], status["results"], status["artifacts"]) == (None, {}, [])


def test_without_a_selector_the_trial_that_met_the_stop_condition_is_the_best(
        repo: Path) -> None:
    parent = run_local(repo, "stop-first")  # a = 3 meets it; a = 1 was started beside it
    status = parent["status"]
    assert [(t["params"]["a"], t["state"]) for t in status["trials"]] == [
        (3, "completed"), (1, "completed")]
    assert status["best_iteration"] == 1
    assert status["results"]["a"] == 3


def test_a_selector_no_trial_reports_fails_the_parent(repo: Path) -> None:
    parent = run_local(repo, "pick", "--selector", "max.acuracy", expect=1)
    status = parent["status"]
    assert {t["state"] for t in status["trials"]} == {"completed"}
    assert (status["state"], status["reason"]) == ("failed", "selector")
    assert status["error"] == "selector max.acuracy: no trial reported acuracy as a number"
    assert (status["best_iteration"], status["results"]) == (None, {})


def test_hyper_and_selector_on_a_function(repo: Path) -> None:
    parent = run_local(repo, "score", "--hyper", "a=1,2,3", "--hyper", "b=0,5",
                       "--selector", "max.accuracy", "-p", "pause=0")
    assert parent["metadata"]["name"] == "score" and parent["metadata"]["job"] is None
    assert parent["spec"]["hyper"]["params"] == {"a": [1, 2, 3], "b": [0, 5]}
    assert trial_params(parent) == [{"a": a, "b": b} for a in (1, 2, 3) for b in (0, 5)]
    best = parent["status"]["trials"][parent["status"]["best_iteration"] - 1]
    assert best["params"] == {"a": 3, "b": 0}
    assert parent["status"]["results"]["accuracy"] == 1.0
    for child in children(repo, parent):
        assert child["spec"]["function"] == "score"
        assert child["metadata"]["parent"] == parent["metadata"]["uid"]
        assert child["spec"]["params"]["override"]["pause"] == 0
    bad = runyard("run", "score", "--hyper", "a=1,2", "--selector", "best.loss", cwd=repo)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "min.KEY or max.KEY" in bad.stderr


def test_python_with_hyper_params(repo: Path) -> None:
    import runner

    project = runner.load_project(repo)
    task = runner.new_task(params={"b": 5}).with_hyper_params({"a": [1, 2, 3]}, "min.loss")
    run = project.run_function("score", task=task, local=True, watch=False)
    assert run.wait_for_completion(timeout=60).state() == "completed"
    record = run.to_dict()
    assert record["metadata"]["iteration"] == 0
    assert record["spec"]["hyper"]["selector"] == "min.loss"
    assert [t["params"] for t in record["status"]["trials"]] == [{"a": a} for a in (1, 2, 3)]
    assert record["status"]["best_iteration"] == 2
    assert run.outputs["loss"] == 0.05
    assert run.output("a") == 2
    assert run.artifact("model").get() == b"model a=2 b=5\n"
    for child in children(repo, record):
        assert child["metadata"]["parent"] == run.uid()
        assert child["spec"]["params"]["override"]["b"] == 5


# --- parallel trials -------------------------------------------------------------------------


def test_trials_overlap_up_to_hyper_parallel(repo: Path) -> None:
    two = run_local(repo, "overlap-2")  # 4 trials of 0.8 s, 2 at a time
    assert [t["state"] for t in two["status"]["trials"]] == ["completed"] * 4
    assert most_at_once(intervals_of(repo, two)) == 2
    one = run_local(repo, "overlap-1")  # 3 trials of 0.4 s, 1 at a time
    assert [t["state"] for t in one["status"]["trials"]] == ["completed"] * 3
    assert most_at_once(intervals_of(repo, one)) == 1


# --- Docker ----------------------------------------------------------------------------------


def _containers(*flags: str) -> list[str]:
    done = subprocess.run(["docker", "ps", "--quiet", *flags, "--filter", f"label={LABEL}={NAME}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def _pass_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@pytest.mark.docker
def test_sigterm_in_the_middle_of_a_grid(repo: Path, tmp_path: Path) -> None:
    # slow-grid: 6 trials, 2 at a time; trials 1 and 2 end at once, from a=3 on they sleep
    errors = (tmp_path / "stderr.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "slow-grid", "--backend", "docker"], cwd=repo,
        stdout=subprocess.PIPE, stderr=errors, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_pass_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 240  # the image may need building first
    try:
        while sum("going to sleep" in line for line in seen) < 2:
            assert time.monotonic() < deadline, "".join(seen)
            assert process.poll() is None, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        assert len(_containers()) == 2  # trials 3 and 4 are running
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        errors.close()
    assert time.monotonic() - signalled < 30  # the sleeping trials were stopped, not waited for
    assert code == 1, (tmp_path / "stderr.txt").read_text()
    assert left_by_the_engine(lambda: _containers("--all")) == []  # nothing left running, nor behind
    parents = [r for r in job_records(repo, "slow-grid") if r["metadata"]["iteration"] == 0]
    assert len(parents) == 1, (tmp_path / "stderr.txt").read_text()
    parent = parents[0]
    assert parent["status"]["state"] == "aborted"
    assert parent["status"]["reason"] == "interrupted"
    trials = parent["status"]["trials"]
    assert [(t["params"]["a"], t["state"]) for t in trials] == [
        (1, "completed"), (2, "completed"), (3, "aborted"), (4, "aborted"),
        (5, "aborted"), (6, "aborted")]
    assert all(t["reason"] == "interrupted" for t in trials[2:])
    records = children(repo, parent)
    for record in records[:2]:  # finished before the signal: kept, results and all
        assert record["status"]["state"] == "completed"
        assert record["spec"]["backend"] == "docker"
        assert record["status"]["results"]["a"] == record["spec"]["params"]["trial"]["a"]
        assert record["status"]["artifacts"][0]["key"] == "model"
    for record in records[2:]:
        assert record["status"]["state"] == "aborted"
        assert record["metadata"]["parent"] == parent["metadata"]["uid"]
    # no selector, no stop condition: no trial is the best
    assert (parent["status"]["best_iteration"], parent["status"]["results"]) == (None, {})


def _by_name(repo: Path, pipeline_run: Record) -> dict[str, Record]:
    return {s["name"]: read_record(repo, s["uid"]) for s in pipeline_run["status"]["steps"]}


@pytest.mark.docker
def test_sample_project_tune_in_docker(sample_repo: Path) -> None:
    parent = run_json(sample_repo, "tune", timeout=600)
    status = parent["status"]
    assert status["state"] == "completed", status
    assert parent["spec"]["backend"] == "docker"
    trials = status["trials"]
    grid = [{"lr": lr, "depth": depth} for lr in (0.05, 0.2) for depth in (2, 3, 5)]
    grid.remove({"lr": 0.05, "depth": 5})  # excluded
    assert [t["params"] for t in trials] == grid
    completed = [t for t in trials if t["state"] == "completed"]
    for trial in trials:
        if trial["state"] == "skipped":  # only once a trial met accuracy >= 0.99
            assert trial["reason"] == "stop_condition"
            assert any(t["results"]["accuracy"] >= 0.99 for t in completed)
        else:
            assert trial["state"] == "completed", trial
    for trial in completed:
        record = read_record(sample_repo, trial["uid"])
        assert record["spec"]["pipeline"] == "training"
        assert record["metadata"]["parent"] == parent["metadata"]["uid"]
        steps = _by_name(sample_repo, record)
        assert list(steps) == ["prep", "train", "evaluate", "report"]
        for step in steps.values():
            assert step["status"]["state"] == "completed"
            assert step["metadata"]["parent"] == trial["uid"]
            assert step["spec"]["image"].startswith("runyard/churn:")
        assert steps["train"]["spec"]["params"]["resolved"]["lr"] == trial["params"]["lr"]
        made = {a["key"]: a["hash"] for s in steps.values() for a in s["status"]["artifacts"]}
        assert steps["train"]["spec"]["inputs"]["train_set"]["hash"] == made["train_set"]
        assert steps["evaluate"]["spec"]["inputs"]["model"]["hash"] == made["model"]
        assert steps["evaluate"]["spec"]["inputs"]["test_set"]["hash"] == made["test_set"]
    best = max(completed, key=lambda t: (t["results"]["accuracy"], -t["iteration"]))
    assert status["best_iteration"] == best["iteration"]
    assert status["results"]["accuracy"] == max(t["results"]["accuracy"] for t in completed)
    assert status["artifacts"] == read_record(sample_repo, best["uid"])["status"]["artifacts"]
