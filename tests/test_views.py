"""`runyard runs list` and `runyard pushes`: the command line views, on records made by real
runs (local backend) in real git repositories.

The module's repository holds a function run (`score`), a hyper-parameter parent with
five trials (`grid-exclude`) and a pipeline run with three steps (`handoff`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CHECKOUT, committed_copy, on_a_terminal
from tests.helpers.gitops import Remote

PROJECT = CHECKOUT / "tests" / "projects" / "hyper"
ESCAPE = re.compile(r"\x1b\[")

Record = dict[str, Any]


def runyard(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run(repo: Path, *args: str) -> Record:
    record: Record = json.loads(ok(runyard("run", *args, "--backend", "local", "--json", cwd=repo)))
    return record


class Runs:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.plain = run(repo, "score", "-p", "a=3", "-p", "b=10")
        self.grid = run(repo, "grid-exclude", "--selector", "max.accuracy")
        self.pipeline = run(repo, "handoff")

    def listed(self, *args: str) -> list[str]:
        return ok(runyard("runs", "list", *args, cwd=self.repo)).splitlines()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    repo = committed_copy(PROJECT, tmp_path_factory.mktemp("views") / "project",
                          ("ryhyper", "ryviews"), "the views test project")
    yield Runs(repo)


def uid(record: Record) -> str:
    text: str = record["metadata"]["uid"]
    return text


def line_of(lines: list[str], record: Record) -> str:
    (found,) = [line for line in lines if uid(record).startswith(line.split()[0])]
    return found


def shown_uids(lines: list[str]) -> list[str]:
    """The uid prefix each line (but the header) starts with."""
    return [line.split()[0] for line in lines[1:]]


def prefixes_of(uids: list[str], lines: list[str]) -> bool:
    shown = shown_uids(lines)
    return len(shown) == len(uids) and all(u.startswith(p) for u, p in zip(uids, shown, strict=True))


def test_top_level_runs_with_their_children_folded(runs: Runs) -> None:
    lines = runs.listed()
    assert lines[0].split()[:4] == ["UID", "JOB", "STATE", "REVISION"]
    assert len(lines) == 4  # three top-level runs: no trial, no step
    revision = runs.grid["spec"]["revision"][:12]
    grid = line_of(lines, runs.grid)
    best = runs.grid["status"]["best_iteration"]
    assert f"grid-exclude  completed  {revision}" in grid
    assert " 5 trials " in grid and f" #{best} " in grid
    assert f"accuracy={runs.grid['status']['results']['accuracy']}" in grid
    assert "a=3" in grid  # the best trial's params
    assert " 3 steps " in line_of(lines, runs.pipeline)
    assert "a=3 b=10" in line_of(lines, runs.plain)


def test_uid_prefixes_are_unique_and_seven_long_at_least(runs: Runs) -> None:
    prefixes = [line.split()[0] for line in runs.listed("--all", "--limit", "100")[1:]]
    assert len(prefixes) == 3 + 5 + 3 == len(set(prefixes))
    assert all(len(prefix) >= 7 for prefix in prefixes)


def test_all_unfolds_children_under_their_parent(runs: Runs) -> None:
    lines = runs.listed("--all", "--job", "grid-exclude")
    assert line_of(lines, runs.grid) == lines[1]
    trials = runs.grid["status"]["trials"]
    for index, trial in enumerate(trials, start=2):
        line = lines[index]
        assert line.startswith("  ") and line.split()[1] == f"#{trial['iteration']}"
        assert trial["uid"].startswith(line.split()[0])
        assert f"a={trial['params']['a']} b={trial['params']['b']}" in line
    steps = runs.listed("--all", "--job", "handoff")
    assert prefixes_of([step["uid"] for step in runs.pipeline["status"]["steps"]], steps[1:])


def test_job_picks_a_job_or_a_function_run_by_itself(runs: Runs) -> None:
    """`--job` names what ran: a job, or a function run by itself, as the JOB column shows
    it; a name no recorded run has lists nothing (a job yet to run) with a warning that
    says what was recorded (a typo)."""
    assert prefixes_of([uid(runs.plain)], runs.listed("--job", "score"))
    assert line_of(runs.listed(), runs.plain).split()[1] == "score"
    done = runyard("runs", "list", "--job", "grid-exclud", "--json", cwd=runs.repo)
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert "warning: --job: no run recorded is of a job or function named 'grid-exclud'" in done.stderr
    assert "did you mean 'grid-exclude'" in done.stderr


def test_sort_by_a_result_both_ways(runs: Runs) -> None:
    trials = runs.grid["status"]["trials"]

    def order(*args: str) -> list[str]:
        return runs.listed("--all", "--job", "grid-exclude", *args)[1:]

    ascending = [t["uid"] for t in sorted(trials, key=lambda t: t["results"]["accuracy"])]
    assert prefixes_of(ascending, order("--sort", "accuracy"))
    assert prefixes_of(ascending[::-1], order("--sort", "-accuracy"))
    for sort in ("last_size", "-last_size"):  # runs without the result come last either way
        tops = [line.split()[1] for line in runs.listed("--sort", sort)[1:]]
        assert tops == ["handoff", "grid-exclude", "score"]


def test_json_is_the_records_of_the_runs_listed_in_their_order(runs: Runs) -> None:
    def listed(*args: str) -> list[dict[str, Any]]:
        return json.loads(ok(runyard("runs", "list", "--json", "--job", "grid-exclude",
                                     "--sort", "-accuracy", *args, cwd=runs.repo)))

    assert [uid(r) for r in listed()] == [uid(runs.grid)]
    parent, *records = listed("--all")
    accuracies = [r["status"]["results"]["accuracy"] for r in records]
    assert uid(parent) == uid(runs.grid)
    assert len(records) == 5 and accuracies == sorted(accuracies, reverse=True)
    records.append(parent)
    assert {uid(r) for r in records} == {uid(runs.grid)} | {t["uid"] for t in
                                                             runs.grid["status"]["trials"]}


def test_where_filters_on_results_and_params(runs: Runs) -> None:
    lines = runs.listed("--all", "--where", "accuracy > 0.9 and b == 10")
    (best,) = [t for t in runs.grid["status"]["trials"] if t["params"] == {"a": 3, "b": 10}]
    wanted = [uid(runs.grid), best["uid"], uid(runs.plain)]  # the trial under its parent
    assert prefixes_of(wanted, lines)
    assert len(runs.listed("--where", "accuracy > 2")) == 1  # the header alone


def test_a_malformed_where_says_why(runs: Runs) -> None:
    done = runyard("runs", "list", "--where", "accuracy >", cwd=runs.repo)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--where 'accuracy >': unexpected end of condition" in done.stderr


@pytest.mark.parametrize("args, said", [
    (["--where", "acuracy > 0.5"], "--where: no run listed has a result or param named "
                                   "'acuracy'; did you mean 'accuracy'? (results and params: "),
    (["--sort", "-acuracy"], "--sort: no run listed has a result named 'acuracy'; did you mean "
                             "'accuracy'? (results: "),
    (["--job", "handoff", "--sort", "accuracy"], "no run listed has a result named 'accuracy'"),
])
def test_a_where_or_sort_on_a_name_no_run_has_is_an_error(runs: Runs, args: list[str],
                                                          said: str) -> None:
    """A misspelt name would list nothing or leave the order as it is, without a word."""
    done = runyard("runs", "list", *args, cwd=runs.repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert said in done.stderr and done.stdout == ""


@pytest.mark.parametrize("command", [["runs", "list"], ["runs", "show", "0"], ["pushes", "list"],
                                     ["diff"], ["report", "-o", "site"]])
def test_a_results_branch_named_that_is_not_there_is_an_error(runs: Runs, command: list[str],
                                                              tmp_path: Path) -> None:
    """Not an empty listing: a misspelt --branch is said as such."""
    done = runyard(*command, "--branch", "runyard/result", "-C", str(runs.repo), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"no branch 'runyard/result' in {runs.repo / '.git'}")
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("args, said", [
    (["--state", "complete"], "Invalid value for '--state': 'complete' is not one of 'pending', "),
    (["--limit", "0"], "Invalid value for '--limit': 0 is not in the range x>=1."),
    (["--limit", "-1"], "Invalid value for '--limit': -1 is not in the range x>=1."),
])
def test_a_state_or_limit_that_means_nothing_is_a_usage_error(runs: Runs, args: list[str],
                                                              said: str) -> None:
    """Not an empty table (a misspelt state) or all but the last run (a negative limit)."""
    done = runyard("runs", "list", *args, cwd=runs.repo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}])
def test_plain_output_has_no_escape_codes(runs: Runs, env: dict[str, str]) -> None:
    out = ok(runyard("runs", "list", "--all", cwd=runs.repo, env=env))
    assert not ESCAPE.search(out) and "completed" in out


def test_a_terminal_gets_colours_unless_no_color(runs: Runs) -> None:
    def listed(env: dict[str, str]) -> str:
        return on_a_terminal("runs", "list", "--limit", "2", cwd=runs.repo, env=env)

    assert ESCAPE.search(listed({})) and "grid-exclude" in listed({})
    assert not ESCAPE.search(listed({"NO_COLOR": "1"}))


def test_pushes_list_and_show(pushed: Remote) -> None:
    sha = pushed.first["revision"]
    out = ok(runyard("pushes", cwd=pushed.bare))  # list, the default
    assert ok(runyard("pushes", "list", "-C", str(pushed.bare), cwd=pushed.work)) == out
    assert out.splitlines()[0].split() == ["REVISION", "REF", "RECEIVED", "STATUS", "REASON",
                                           "JOBS", "RUN"]
    row = out.splitlines()[1]
    assert row.split()[:2] == [sha[:12], "main"] and "completed" in row
    assert row.split()[-1] == str(len(pushed.first["runs"]))
    shown = ok(runyard("pushes", "show", sha[:8], "-C", str(pushed.bare), cwd=pushed.bare))
    assert shown.startswith(f"push {sha} to main: completed")
    for job in pushed.first["runs"]:
        assert f"  run      {job['job']} {job['uid']} {job['state']}" in shown
        assert f"  plan     run {job['job']}" in shown
    as_json = json.loads(ok(runyard("pushes", "show", sha[:8], "--json", "-C", str(pushed.bare),
                                    cwd=pushed.bare)))
    assert as_json == [pushed.first]


def test_pushes_show_of_a_revision_pushed_to_two_refs(pushed: Remote) -> None:
    sha = pushed.first["revision"]
    pushed.push("main:release")  # release is configured in project.yaml
    pushed.wait(sha, "release")
    shown = json.loads(ok(runyard("pushes", "show", sha[:10], "--json", "-C", str(pushed.bare),
                                  cwd=pushed.bare)))
    assert sorted(push["ref"] for push in shown) == ["refs/heads/main", "refs/heads/release"]
    missing = runyard("pushes", "show", "ffffffff", "-C", str(pushed.bare), cwd=pushed.bare)
    assert missing.returncode == 1 and "no pushed revision starting 'ffffffff'" in missing.stderr
