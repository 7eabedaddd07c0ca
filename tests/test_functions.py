"""`runyard functions list|history|show` and `runs show --code`: real git repositories with
several commits, runs on the local backend, no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.helpers import CHECKOUT, commit_all, committed_copy, edit_file, git

PROJECT = CHECKOUT / "tests" / "projects" / "run"


class History(NamedTuple):
    repo: Path
    first: str  # every function created
    code: str  # src/handlers.py changed: calc, hog and sleepy
    data: str  # data/table.csv changed: no function
    calc: str  # functions/calc.yaml changed: its definition and environment; extra created
    run_at_data: str  # a run of calc at `data`
    run_at_calc: str  # a run of calc at `calc`


def runyard(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=repo, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


def ok_json(repo: Path, *args: str) -> Any:
    done = runyard(repo, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def refused(repo: Path, *args: str) -> str:
    """The message of a command that must fail as a user's error."""
    done = runyard(repo, *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    repo = committed_copy(PROJECT, tmp_path_factory.mktemp("functions") / "project",
                          ("rytest", "rytest-functions"), "first")
    first = git(repo, "rev-parse", "HEAD").strip()
    with (repo / "src" / "handlers.py").open("a") as handlers:
        handlers.write("\nVERSION = 2\n")
    code = commit_all(repo, "handlers: version 2")
    with (repo / "data" / "table.csv").open("a") as table:
        table.write("9,9\n")
    data = commit_all(repo, "more data")
    run_at_data = ok_json(repo, "run", "calc", "-p", "x=1", "--backend", "local")
    edit_file(repo / "functions" / "calc.yaml", "environment: {base_image: python:3.11-slim}",
              "environment: {base_image: python:3.11-slim, env: {CALC: '2'}}")
    (repo / "functions" / "extra.yaml").write_text(
        (repo / "functions" / "calc.yaml").read_text().replace("name: calc", "name: extra"))
    calc = commit_all(repo, "calc: an environment variable")
    run_at_calc = ok_json(repo, "run", "calc", "-p", "x=2", "--backend", "local")
    return History(repo, first, code, data, calc, run_at_data["metadata"]["uid"],
                   run_at_calc["metadata"]["uid"])


def test_list_says_when_each_function_last_changed(history: History) -> None:
    found = {f["name"]: f for f in ok_json(history.repo, "functions", "list")}
    assert sorted(found) == ["calc", "extra", "hog", "shout", "sleepy"]
    assert found["calc"]["changed"] == history.calc
    assert found["hog"]["changed"] == history.code
    assert found["shout"]["changed"] == history.first
    assert found["calc"]["code"] == "src/handlers.py" and found["calc"]["handler"] == "calc"
    assert found["calc"]["env_hash"] != found["hog"]["env_hash"]
    assert found["shout"]["code"] is None


def test_list_is_the_default_and_prints_a_table(history: History) -> None:
    done = runyard(history.repo, "functions")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CODE", "HANDLER", "ENV", "IMAGE", "CHANGED", "AT"]
    calc = next(line for line in lines if line.startswith("calc "))
    assert history.calc[:12] in calc and "src/handlers.py" in calc


def test_history_lists_versions_newest_first_with_their_runs(history: History) -> None:
    versions = ok_json(history.repo, "functions", "history", "calc")
    assert [v["revision"] for v in versions] == [history.calc, history.code, history.first]
    assert [v["reasons"] for v in versions] == [
        ["definition", "environment"], ["code"], ["created"]]
    assert versions[0]["env_hash"] != versions[1]["env_hash"] == versions[2]["env_hash"]
    assert [[r["uid"] for r in v["runs"]] for v in versions] == [
        [history.run_at_calc], [history.run_at_data], []]
    assert versions[1]["runs"][0]["revision"] == history.data  # a later commit, same version
    assert versions[0]["runs"][0]["state"] == "completed"


def test_history_of_a_function_that_a_change_left_alone(history: History) -> None:
    versions = ok_json(history.repo, "functions", "history", "shout")
    assert [v["revision"] for v in versions] == [history.first]
    done = runyard(history.repo, "functions", "history", "calc")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(history.calc[:12])
    assert f"run {history.run_at_calc}" in done.stdout


def test_show_prints_the_definition_and_code_as_they_were(history: History) -> None:
    old = ok_json(history.repo, "functions", "show", f"calc@{history.first}")
    assert old["revision"] == history.first and old["file"] == "functions/calc.yaml"
    assert "CALC" not in old["definition"]
    assert [f["path"] for f in old["files"]] == ["src/handlers.py"]
    assert "VERSION = 2" not in old["files"][0]["text"]
    new = runyard(history.repo, "functions", "show", "calc")
    assert new.returncode == 0, new.stderr
    assert "--- functions/calc.yaml" in new.stdout and "CALC" in new.stdout
    assert "--- src/handlers.py" in new.stdout and "VERSION = 2" in new.stdout


def test_runs_show_code_prints_what_the_run_used(history: History) -> None:
    shown = ok_json(history.repo, "runs", "show", history.run_at_data, "--code")
    assert shown["name"] == "calc" and shown["revision"] == history.data
    assert "CALC" not in shown["definition"] and "VERSION = 2" in shown["files"][0]["text"]


def test_bad_input_is_a_clear_message(history: History) -> None:
    assert "no function 'nope'" in refused(history.repo, "functions", "history", "nope")
    assert "known: calc, extra" in refused(history.repo, "functions", "show", "nope")
    assert "no function 'extra'" in refused(history.repo, "functions", "show",
                                            f"extra@{history.first}")
    assert "no revision 'no-such-rev'" in refused(history.repo, "functions", "show",
                                                  "calc@no-such-rev")
    one, other = history.run_at_data, history.run_at_calc
    common = next(one[:i] for i, (a, b) in enumerate(zip(one, other, strict=True)) if a != b)
    assert "2 runs" in refused(history.repo, "runs", "show", common, "--code")
    assert "no run" in refused(history.repo, "runs", "show", "zzzz", "--code")
