"""Pipelines end to end: `runyard run JOB` for a job with `run: {pipeline: P}`.

The pipeline run is the parent of one run per step (status.steps lists them).
Every test uses the `local` backend on tests/projects/hyper: its handlers are
stdlib only, note `start` and `end` times as results, and append a line to a
journal file when they start, so a test can tell a step that never started.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CHECKOUT, committed_copy, most_at_once, read_record, sha256

PROJECT = CHECKOUT / "tests" / "projects" / "hyper"
BRANCH = "runyard/results"
NAME = f"rypipe-{secrets.token_hex(3)}"

Record = dict[str, Any]


# --- helpers -------------------------------------------------------------------------------


def runyard(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` in `cwd`; a local pipeline takes seconds, so a minute is a hang."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def run_local(repo: Path, job: str, *args: str | Path, expect: int = 0) -> Record:
    """`runyard run JOB --backend local ARGS --json`: check its exit code, return the record."""
    done = runyard("run", job, "--backend", "local", *args, "--json", cwd=repo)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: Record = json.loads(done.stdout)
    return record



def steps_of(repo: Path, pipeline_run: Record) -> dict[str, Record]:
    """The step runs' own records, by step name, in the pipeline's order."""
    return {s["name"]: read_record(repo, s["uid"]) for s in pipeline_run["status"]["steps"]}


def started(journal: Path) -> list[str]:
    """The names of the runs whose handler started, in the order they started."""
    if not journal.exists():
        return []
    return [json.loads(line)["run"] for line in journal.read_text("utf-8").splitlines()]


def interval(record: Record) -> tuple[float, float]:
    results = record["status"]["results"]
    return results["start"], results["end"]




def payload(size: int) -> bytes:
    """What the `produce` handler writes (tests/projects/hyper/src/handlers.py)."""
    return hashlib.sha256(str(size).encode()).digest() * size + bytes(range(256))


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test project as a git repository, shared by this module's tests."""
    path = tmp_path_factory.mktemp("pipeline") / "project"
    committed_copy(PROJECT, path, ("ryhyper", NAME), "the pipeline test project")
    yield path


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal.jsonl"


# --- data between steps --------------------------------------------------------------------


def test_artifacts_hand_over_by_step_uri(repo: Path, journal: Path, tmp_path: Path) -> None:
    run = run_local(repo, "handoff", "-p", f"journal={journal}")
    uid = run["metadata"]["uid"]
    assert run["status"]["state"] == "completed"
    assert run["spec"]["pipeline"] == "handoff"
    assert [(s["name"], s["state"]) for s in run["status"]["steps"]] == [
        ("prep", "completed"), ("middle", "completed"), ("last", "completed")]
    steps = steps_of(repo, run)
    for step in steps.values():
        assert step["metadata"]["parent"] == uid
        assert step["metadata"]["job"] == "handoff"
        assert step["spec"]["function"] == "work"
    assert started(journal) == ["prep", "middle", "last"]
    written = payload(100)  # the pipeline-level size
    made = {a["key"]: a for s in steps.values() for a in s["status"]["artifacts"]}
    assert made["data"]["hash"] == sha256(written)
    assert made["out"]["hash"] == sha256(written[::-1])
    # the consumer read the bytes the producer wrote ...
    assert steps["middle"]["status"]["results"]["in_sha"] == sha256(written)
    assert steps["middle"]["status"]["results"]["in_size"] == len(written)
    assert steps["last"]["status"]["results"]["last_sha"] == sha256(written[::-1])
    # ... and its record names the producer's artifact by hash
    middle_in = steps["middle"]["spec"]["inputs"]["data"]
    assert middle_in["hash"] == made["data"]["hash"]
    assert middle_in["size"] == made["data"]["size"]
    assert steps["last"]["spec"]["inputs"]["data"]["hash"] == made["out"]["hash"]
    out = tmp_path / "data.bin"
    fetched = runyard("runs", "artifact", steps["prep"]["metadata"]["uid"], "data", "-o", out,
                      cwd=repo)
    assert fetched.returncode == 0, fetched.stderr
    assert out.read_bytes() == written
    # the pipeline run carries what its steps produced
    assert {a["key"] for a in run["status"]["artifacts"]} == {"data", "out"}
    assert run["status"]["results"]["last_size"] == len(written)


def test_after_orders_steps_without_data(repo: Path) -> None:
    run = run_local(repo, "ordered")  # parallel: 4, so only `after` keeps them apart
    steps = steps_of(repo, run)
    assert all(s["status"]["state"] == "completed" for s in steps.values())
    first, second, third, free = (interval(steps[n]) for n in ("first", "second", "third", "free"))
    assert first[1] <= second[0]
    assert second[1] <= third[0]
    assert free[0] < first[1]  # the step with no upstream started beside the first
    assert all(s["spec"]["inputs"] == {} for s in steps.values())


# --- failures ------------------------------------------------------------------------------


def test_failed_step_skips_its_dependents_not_other_branches(repo: Path, journal: Path) -> None:
    run = run_local(repo, "broken", "-p", f"journal={journal}", expect=1)
    status = run["status"]
    assert status["state"] == "failed"
    assert status["reason"] == "step_failed"
    assert "step 'middle' failed" in status["error"]
    assert "this step fails on purpose" in status["error"]
    assert [(s["name"], s["state"], s["reason"]) for s in status["steps"]] == [
        ("first", "completed", None), ("middle", "failed", "error"),
        ("dependent", "skipped", "upstream_failed"), ("tail", "skipped", "upstream_failed"),
        ("side", "completed", None)]
    # the dependents never started; the independent branch ran to the end
    assert sorted(started(journal)) == ["first", "middle", "side"]
    steps = steps_of(repo, run)
    for name in ("dependent", "tail"):
        record = steps[name]
        assert record["metadata"]["parent"] == run["metadata"]["uid"]
        assert record["status"]["state"] == "skipped"
        assert record["status"]["reason"] == "upstream_failed"
        assert record["status"]["exit_code"] is None
        assert record["status"]["results"] == {}
        assert record["spec"]["inputs"] == {}
    assert "'middle'" in steps["dependent"]["status"]["error"]
    assert "'dependent'" in steps["tail"]["status"]["error"]
    side = interval(steps["side"])
    assert side[1] - side[0] >= 0.5  # it slept its full pause: not cut short by the failure


# --- parameters ----------------------------------------------------------------------------


def test_step_param_wins_and_every_level_stays_readable(repo: Path) -> None:
    run = run_local(repo, "levels")
    steps = steps_of(repo, run)
    stepx = steps["stepx"]["status"]["results"]
    assert stepx["arg_x"] == "step"  # step, then job, then pipeline, then project
    assert stepx["get_param_x"] == "step"
    assert stepx["levels"]["step"] == {"x": "step"}
    assert stepx["levels"]["pipeline"]["x"] == "pipeline"  # Orchest: not hidden by the step's
    assert stepx["levels"]["job"] == {"x": "job"}
    assert stepx["arg_p"] == "pipeline"  # pipeline over project
    assert stepx["levels"]["project"]["p"] == "project"
    plain = steps["plain"]["status"]["results"]
    assert plain["arg_x"] == "job"  # no step-level x: the job's wins over the pipeline's
    assert plain["levels"]["step"] == {}
    assert plain["levels"]["pipeline"]["x"] == "pipeline"
    params = steps["stepx"]["spec"]["params"]
    assert params["step"] == {"x": "step"}
    assert params["pipeline"] == {"x": "pipeline", "p": "pipeline"}
    assert params["resolved"]["x"] == "step"


def test_override_sits_between_step_and_job(repo: Path) -> None:
    run = run_local(repo, "levels", "-p", "x=cli")
    steps = steps_of(repo, run)
    stepx = steps["stepx"]["status"]["results"]
    assert stepx["arg_x"] == "step"
    assert stepx["levels"]["override"] == {"x": "cli"}
    assert stepx["levels"]["pipeline"]["x"] == "pipeline"
    plain = steps["plain"]["status"]["results"]
    assert plain["arg_x"] == "cli"
    assert plain["levels"]["job"] == {"x": "job"}


# --- parallel steps ------------------------------------------------------------------------


@pytest.mark.parametrize(("job", "most"), [("fanout-2", 2), ("fanout-1", 1)])
def test_independent_steps_run_in_parallel_up_to_the_jobs_parallel(repo: Path, job: str,
                                                                   most: int) -> None:
    run = run_local(repo, job)  # four independent steps of 0.6 s
    steps = steps_of(repo, run)
    assert [s["status"]["state"] for s in steps.values()] == ["completed"] * 4
    assert most_at_once([interval(s) for s in steps.values()]) == most


# --- a pipeline per trial ------------------------------------------------------------------


def test_hyper_runs_one_pipeline_per_trial(repo: Path) -> None:
    parent = run_local(repo, "handoff-hyper")  # list: size 10, 20; max.last_size
    status = parent["status"]
    assert status["state"] == "completed"
    assert [t["params"] for t in status["trials"]] == [{"size": 10}, {"size": 20}]
    for trial in status["trials"]:
        run = read_record(repo, trial["uid"])
        assert run["spec"]["pipeline"] == "handoff"
        assert run["metadata"]["parent"] == parent["metadata"]["uid"]
        assert run["metadata"]["iteration"] == trial["iteration"]
        steps = steps_of(repo, run)
        assert list(steps) == ["prep", "middle", "last"]
        for step in steps.values():
            assert step["status"]["state"] == "completed"
            assert step["metadata"]["parent"] == trial["uid"]
        # the trial's value overrides the pipeline-level size: the bytes show it
        written = payload(trial["params"]["size"])
        assert steps["middle"]["status"]["results"]["in_sha"] == sha256(written)
        assert trial["results"]["last_size"] == len(written)
    assert status["best_iteration"] == 2
    assert status["results"]["last_size"] == len(payload(20))


def test_job_inputs_reach_the_pipeline_steps(repo: Path) -> None:
    done = runyard("run", "takes", "--backend", "local", "--json", cwd=repo)
    eat = steps_of(repo, json.loads(done.stdout))["eat"]
    expected = sha256((repo / "src" / "handlers.py").read_bytes())
    assert eat["status"]["state"] == "completed", eat["status"]["error"]
    assert eat["spec"]["inputs"]["data"]["hash"] == expected
    assert eat["status"]["results"]["last_sha"] == expected
