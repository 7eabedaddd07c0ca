"""The Python API as MLRun's documents write it (seed 002): real git, the local backend."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml

import runner
from runner.errors import RunyardError
from tests.helpers import CHECKOUT, bare_clone, committed_copy, git

PROJECT = CHECKOUT / "tests" / "projects" / "run"
NAME = f"ryapi-{secrets.token_hex(3)}"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The run test project, committed in a repository of its own."""
    return committed_copy(PROJECT, tmp_path / "project", ("rytest", NAME), "the API test project")


def test_new_project_is_committed_and_current(tmp_path: Path) -> None:
    project = runner.new_project("fresh", tmp_path / "fresh")
    assert project.name == "fresh"
    assert runner.get_current_project() is project
    assert git(tmp_path / "fresh", "log", "--format=%s").strip() == "A new runyard project"
    assert git(tmp_path / "fresh", "status", "--porcelain") == ""
    run = runner.run_function("hello", params={"times": 1}, local=True)  # the current project's
    assert run.state() == "completed", run.to_dict()["status"]
    assert run.outputs["length"] == len("hello fresh")
    assert run.to_dict()["metadata"]["job"] == "hello"


def test_new_project_without_git_and_into_a_full_folder(tmp_path: Path) -> None:
    plain = runner.new_project("plain", tmp_path / "plain", init_git=False)
    assert plain.name == "plain" and not (tmp_path / "plain" / ".git").exists()
    with pytest.raises(RunyardError, match="is not empty"):
        runner.new_project("again", tmp_path / "plain")
    assert runner.get_current_project() is plain


def test_load_project_from_a_baseline_under_a_new_name(repo: Path, tmp_path: Path) -> None:
    copy = runner.load_project(repo, name="copy", context=tmp_path / "copy")
    assert copy.name == "copy" and copy.path == (tmp_path / "copy").resolve()
    assert yaml.safe_load((tmp_path / "copy" / "project.yaml").read_text())["name"] == "copy"
    assert git(tmp_path / "copy", "status", "--porcelain") == ""
    assert runner.load_project(repo).name == NAME  # the baseline is left as it was
    remote = bare_clone(repo, tmp_path / "remote.git")
    other = runner.load_project(f"file://{remote}", name="other", context=tmp_path / "other")
    assert other.name == "other"
    assert runner.get_current_project() is other


def test_load_project_clones_a_git_url(repo: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    remote = bare_clone(repo, tmp_path / "remote.git")
    monkeypatch.chdir(tmp_path)
    cloned = runner.load_project(f"file://{remote}")  # into ./remote, history and all
    assert cloned.name == NAME and cloned.path == (tmp_path / "remote").resolve()
    assert git(tmp_path / "remote", "log", "--format=%s").strip() == "the API test project"
    assert cloned.run_function("calc", local=True).state() == "completed"
    with pytest.raises(RunyardError, match="cannot clone"):
        runner.load_project(tmp_path / "nowhere.git")


def test_a_named_task_names_the_run(repo: Path) -> None:
    project = runner.load_project(repo)
    task = runner.new_task(name="my-calc", params={"x": 4})
    run = project.run_function("calc", task=task, local=True)
    meta, spec = run.to_dict()["metadata"], run.to_dict()["spec"]
    assert (meta["name"], spec["function"], run.outputs["sum"]) == ("my-calc", "calc", 6)
    failed = runner.run_function("no-such", task=task, local=True, watch=False)
    assert failed.wait_for_completion(timeout=60).state() == "failed"
    assert failed.to_dict()["metadata"]["name"] == "my-calc"
    assert failed.to_dict()["status"]["reason"] == "not_started"
    renamed = runner.run_function("calc", task=task, name="calc-again", local=True)
    assert renamed.to_dict()["metadata"]["name"] == "calc-again"


def test_with_hyper_params_and_its_options(repo: Path) -> None:
    project = runner.load_project(repo)
    task = runner.new_task(name="sweep").with_hyper_params(
        {"x": [1, 5, 9]}, "max.sum", strategy="list", stop_condition="sum >= 7",
        max_errors=0, parallel=1)
    run = project.run_function("calc", task=task, local=True)
    record = run.to_dict()
    assert record["metadata"]["name"] == "sweep"
    assert [t["state"] for t in record["status"]["trials"]] == ["completed", "completed", "skipped"]
    assert record["status"]["best_iteration"] == 2
    assert run.outputs["sum"] == 7
    bad = runner.new_task().with_hyper_params({"x": [1, 2]}, strategy="sideways")
    with pytest.raises(RunyardError, match="unknown hyper strategy 'sideways'"):
        project.run_function("calc", task=bad, local=True)
    unparsable = runner.new_task().with_hyper_params({"x": [1, 2]}, stop_condition="sum >=")
    with pytest.raises(RunyardError, match="stop_condition"):
        project.run_function("calc", task=unparsable, local=True)
    bare = runner.new_task().with_hyper_params({}, parallel=2)
    with pytest.raises(RunyardError, match="need hyper-parameters"):
        project.run_function("calc", task=bare, local=True)


def test_list_runs_and_get_run(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = runner.load_project(repo)
    small = project.run_function("calc", params={"x": 1}, local=True)
    big = project.run_function("calc", params={"x": 10}, local=True)
    failed = project.run_function("always-fails", local=True)
    assert [r.uid() for r in runner.list_runs()] == [failed.uid(), big.uid(), small.uid()]
    assert [r.uid() for r in runner.list_runs(where="sum >= 10")] == [big.uid()]
    assert [r.uid() for r in project.list_runs(job="always-fails")] == [failed.uid()]
    assert project.list_runs(job="always-fails", where="sum >= 10") == []
    with pytest.raises(RunyardError, match="where 'sum >>'"):
        runner.list_runs(where="sum >>")
    uids = [r.uid() for r in runner.list_runs()]
    short = next(big.uid()[:n] for n in range(1, 18)
                 if [u for u in uids if u.startswith(big.uid()[:n])] == [big.uid()])
    assert runner.get_run(short).outputs["sum"] == 12
    capsys.readouterr()  # the runs' logs
    runner.get_run(short).show()  # as `runyard runs show` prints it
    shown = capsys.readouterr().out
    assert shown.startswith(f"run {big.uid()} (calc): completed") and "\n  tree " in shown
    with pytest.raises(RunyardError, match="no run"):
        runner.get_run("zzz")
    with pytest.raises(RunyardError, match="3 runs"):
        project.get_run("")


def test_background_runs_fail_when_they_cannot_start_and_show_their_log(repo: Path) -> None:
    project = runner.load_project(repo)
    run = project.run_function("calc", params={"x": 2}, local=True, watch=False)
    assert run.wait_for_completion(timeout=60).state() == "completed"
    assert "calc with x=2 y=2" in run.logs(watch=False)
    lost = runner.run_function("nothing", local=True, watch=False)
    assert lost.wait_for_completion(timeout=60).state() == "failed"
    assert lost.to_dict()["status"]["error"].startswith("no job or function named 'nothing'")
