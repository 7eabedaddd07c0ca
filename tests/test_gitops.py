"""The GitOps loop end to end: `plan`, `on-push`, `hook install` and `status`.

Real git, no mocks: a bare repository with runyard's post-receive hook, and a clone
that pushes to it with `git push`. The project under tests/projects/gitops uses the
local backend and stdlib-only handlers, so the hook's runs take a fraction of a
second. The hook works in the background: tests poll the results branch of the
bare repository for the push record.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import commit_all, copy_project, git, make_repo
from tests.helpers.gitops import (
    BRANCH,
    PROJECT,
    PUSH_JOBS,
    ZERO,
    Remote,
    children,
    decisions,
    fsck_clean,
    ok,
    processed,
    push_record,
    ran,
    read,
    run_records,
    runyard,
    tip,
    wait_for,
)

SCHEDULED = ["nightly", "once", "six-hourly"]
SCHEDULE_ONLY = "schedule only: never runs on push"
SLOW_JOB = """apiVersion: runyard/v1
kind: job
name: slow
run: {function: alpha, handler: nap}
params: {seconds: 3}
triggers:
  push: {paths: ["slow/**"]}
"""
BROKEN_JOB = """apiVersion: runyard/v1
kind: job
name: broken
run: {function: gamma}
"""


# --- fixtures ------------------------------------------------------------------------------


# --- the first push, and the hook ----------------------------------------------------------


def test_first_push_runs_every_push_triggered_job(pushed: Remote) -> None:
    push, sha = pushed.first, pushed.head()
    assert push["kind"] == "push"
    assert push["revision"] == sha
    assert push["old"] is None
    assert push["ref"] == "refs/heads/main"
    assert push["problems"] == []
    assert push["plan"]["to_run"] == PUSH_JOBS
    assert ran(push) == dict.fromkeys(PUSH_JOBS, "completed")
    jobs = decisions(push)
    for name in SCHEDULED:  # scheduled jobs never run on push
        assert jobs[name]["runs"] is False
        assert jobs[name]["reasons"] == [SCHEDULE_ONLY]
    for name in PUSH_JOBS:
        assert jobs[name]["reasons"][0] == "new job"
    records = run_records(pushed.bare)
    for run in push["runs"]:
        record = records[run["uid"]]
        assert record["metadata"]["job"] == run["job"]
        assert record["status"]["state"] == "completed"
        assert record["spec"]["revision"] == sha
        assert record["spec"]["backend"] == "local"
        assert record["spec"]["trigger"] == {"kind": "push", "ref": "refs/heads/main",
                                             "detail": f"..{sha[:12]}",
                                             "by": "test <test@example.com>"}  # its author
    by_job = {run["job"]: run["uid"] for run in push["runs"]}
    assert records[by_job["alpha-job"]]["status"]["results"] == {"doubled": 20}
    assert records[by_job["beta-job"]]["status"]["results"] == {"incremented": 21}
    assert records[by_job["notes-job"]]["status"]["results"] == {"lines": 2}
    steps = children(records, by_job["both-job"])
    assert {name: r["status"]["state"] for name, r in steps.items()} == {
        "first": "completed", "second": "completed"}
    assert len(records) == len(PUSH_JOBS) + 2  # four jobs, two pipeline steps
    assert yaml.safe_load(read(pushed.bare, "index/last-push.yaml") or "") == {
        "revision": sha, "ref": "refs/heads/main"}
    raw = read(pushed.bare, f"pushes/{sha}/main.yaml") or ""
    assert "&id0" not in raw and "*id0" not in raw  # plain YAML for `git show`, no aliases
    fsck_clean(pushed.bare)


def test_hook_returns_at_once(pushed: Remote) -> None:
    sha = pushed.change({"jobs/slow.yaml": SLOW_JOB}, "a job that sleeps 3 s")
    started = time.monotonic()
    done = pushed.push("main")
    took = time.monotonic() - started
    assert took < 1.5, f"git push took {took:.2f} s: the hook must not wait for the runs"
    assert "runyard: processing the push in the background" in done.stderr
    assert processed(push_record(pushed.bare, sha)) is None  # the job is still asleep
    push = pushed.wait(sha)
    assert ran(push) == {"slow": "completed"}
    assert decisions(push)["slow"]["reasons"] == ["new job"]
    record = run_records(pushed.bare)[push["runs"][0]["uid"]]
    assert record["status"]["duration"] >= 3
    assert record["status"]["results"] == {"slept": 3}
    took_there = datetime.fromisoformat(push["finished"]) - datetime.fromisoformat(push["received"])
    assert took_there.total_seconds() >= 2  # the record's times are to the second


# --- what a push runs ----------------------------------------------------------------------


def test_code_change_runs_only_the_jobs_that_use_it(pushed: Remote) -> None:
    sha = pushed.append("src/alpha.py", "\n# a change to alpha only\n", "change alpha")
    pushed.push("main")
    push = pushed.wait(sha)
    assert push["status"] == "completed"
    assert push["old"] == pushed.first["revision"]
    assert push["plan"]["changed"] == ["src/alpha.py"]
    functions = {f["name"]: f for f in push["plan"]["functions"]}
    assert functions["alpha"]["reasons"] == ["code changed (src/alpha.py)"]
    assert functions["alpha"]["environment_changed"] is False
    assert functions["beta"]["reasons"] == []
    assert push["plan"]["images"] == {}
    jobs = decisions(push)
    assert jobs["alpha-job"] == {"name": "alpha-job", "runs": True,
                                 "reasons": ["function alpha changed"]}
    assert jobs["both-job"] == {"name": "both-job", "runs": True,
                                "reasons": ["function alpha changed"]}
    assert jobs["beta-job"]["runs"] is False
    assert jobs["beta-job"]["reasons"] == ["nothing it uses changed"]
    # notes-job uses alpha too, but runs on push only when its paths (data/**) match
    assert jobs["notes-job"]["runs"] is False
    assert ran(push) == {"alpha-job": "completed", "both-job": "completed"}
    records = run_records(pushed.bare)
    both = next(r["uid"] for r in push["runs"] if r["job"] == "both-job")
    steps = children(records, both)
    assert steps["first"]["status"]["state"] == "completed"  # alpha changed: it ran
    # beta did not change: the step is memoized, pointing at the first push's run
    first_both = next(r["uid"] for r in pushed.first["runs"] if r["job"] == "both-job")
    earlier_second = children(records, first_both)["second"]["metadata"]["uid"]
    assert steps["second"]["status"]["state"] == "skipped"
    assert steps["second"]["status"]["reason"] == "memoized"
    assert steps["second"]["status"]["skipped_for"] == earlier_second


def test_step_after_a_memoized_step_runs(pushed: Remote) -> None:
    sha = pushed.append("src/beta.py", "\n# a change to beta only\n", "change beta")
    pushed.push("main")
    push = pushed.wait(sha)
    assert ran(push) == {"beta-job": "completed", "both-job": "completed"}
    both = next(r["uid"] for r in push["runs"] if r["job"] == "both-job")
    steps = children(run_records(pushed.bare), both)
    assert steps["first"]["status"]["reason"] == "memoized"  # alpha unchanged
    # beta changed, so the second step must run; it is never started instead
    assert (steps["second"]["status"]["state"], steps["second"]["status"]["reason"]) == (
        "completed", None)


def test_readme_only_push_runs_nothing(pushed: Remote) -> None:
    before = run_records(pushed.bare)
    sha = pushed.append("README.md", "\nMore words.\n", "docs only")
    pushed.push("main")
    push = pushed.wait(sha)
    assert push["status"] == "nothing-to-run"
    assert push["runs"] == []
    assert push["plan"]["changed"] == ["README.md"]
    assert push["plan"]["to_run"] == []
    assert all(not job["runs"] for job in push["plan"]["jobs"])
    assert run_records(pushed.bare).keys() == before.keys()
    assert yaml.safe_load(read(pushed.bare, "index/last-push.yaml") or "")["revision"] == sha


def test_invalid_push_runs_nothing_and_its_fix_runs_what_it_held(pushed: Remote) -> None:
    before = run_records(pushed.bare)
    # beta's code changes in the same push that breaks a reference
    pushed.append("src/beta.py", "\n# beta changes\n", "change beta")
    bad = pushed.change({"jobs/broken.yaml": BROKEN_JOB}, "a job naming a missing function")
    pushed.push("main")
    push = pushed.wait(bad)
    assert push["status"] == "invalid"
    assert push["runs"] == []
    assert push["plan"] is None
    assert len(push["problems"]) == 1
    assert push["problems"][0].startswith(
        "jobs/broken.yaml:4:17: no function named 'gamma' (known: alpha, beta)")
    assert run_records(pushed.bare).keys() == before.keys()
    # the fix touches only the broken job: what the invalid push changed must still run
    fixed = pushed.change({"jobs/broken.yaml": None}, "remove the broken job")
    pushed.push("main")
    push = pushed.wait(fixed)
    assert push["old"] == bad
    assert push["plan"]["old"] == pushed.first["revision"]  # planned from the last valid push
    assert "src/beta.py" in push["plan"]["changed"]
    assert ran(push) == {"beta-job": "completed", "both-job": "completed"}
    assert decisions(push)["beta-job"]["reasons"] == ["function beta changed"]


def test_only_an_unrelated_path_changes_so_the_run_is_memoized(pushed: Remote) -> None:
    first_notes = next(r["uid"] for r in pushed.first["runs"] if r["job"] == "notes-job")
    # data/other.txt matches notes-job's paths (data/**), but the job reads only data/notes.txt
    sha = pushed.append("data/other.txt", "one more line\n", "an unrelated data file")
    pushed.push("main")
    push = pushed.wait(sha)
    assert push["status"] == "completed"
    assert decisions(push)["notes-job"]["reasons"] == ["paths matched (data/other.txt)"]
    assert ran(push) == {"notes-job": "skipped"}
    record = run_records(pushed.bare)[push["runs"][0]["uid"]]
    assert record["status"]["reason"] == "memoized"
    assert record["status"]["skipped_for"] == first_notes
    assert record["spec"]["run_key"] == run_records(pushed.bare)[first_notes]["spec"]["run_key"]
    # a change to the file it reads runs it again
    sha = pushed.append("data/notes.txt", "third note\n", "a new note")
    pushed.push("main")
    push = pushed.wait(sha)
    assert ran(push) == {"notes-job": "completed"}
    assert run_records(pushed.bare)[push["runs"][0]["uid"]]["status"]["results"] == {"lines": 3}


def test_replay_processes_nothing_twice_and_force_runs_again(pushed: Remote) -> None:
    sha, line = pushed.head(), f"{ZERO} {pushed.head()} refs/heads/main\n"
    results_tip = tip(pushed.bare)
    done = runyard("on-push", "-C", pushed.bare, "--json", stdin=line)
    assert json.loads(ok(done)) == [pushed.first]
    assert f"{sha[:12]} was processed already (completed)" in done.stderr
    assert tip(pushed.bare) == results_tip  # nothing written, nothing run
    done = runyard("on-push", "-C", pushed.bare, "--force", "--json", stdin=line)
    (push,) = json.loads(ok(done))
    assert push["status"] == "completed"
    assert ran(push) == dict.fromkeys(PUSH_JOBS, "completed")  # run again, not memoized
    earlier = {run["uid"] for run in pushed.first["runs"]}
    assert not earlier & {run["uid"] for run in push["runs"]}
    records = run_records(pushed.bare)
    for run in push["runs"]:
        assert records[run["uid"]]["status"]["state"] == "completed"
    assert push_record(pushed.bare, sha) == push
    fsck_clean(pushed.bare)


# --- what a push ignores -------------------------------------------------------------------


def test_push_to_a_branch_not_configured_is_ignored(pushed: Remote) -> None:
    before, results_tip = run_records(pushed.bare), tip(pushed.bare)
    git(pushed.work, "checkout", "--quiet", "-b", "feature")
    sha = pushed.append("src/alpha.py", "\n# on a feature branch\n", "feature work")
    pushed.push("feature")
    wait_for(lambda: pushed.log.exists() and "refs/heads/feature: not a branch that triggers "
             "runs; ignored" in pushed.log.read_text(), "the ignored line", pushed.log)
    assert push_record(pushed.bare, sha) is None
    assert run_records(pushed.bare).keys() == before.keys()
    assert tip(pushed.bare) == results_tip


def test_deleted_ref_and_tags_are_ignored(pushed: Remote) -> None:
    git(pushed.work, "checkout", "--quiet", "-b", "release")
    on_release = pushed.append("README.md", "\nrelease notes\n", "release docs")
    git(pushed.work, "tag", "v1")
    pushed.push("release", "v1")
    release = pushed.wait(on_release, "release")  # release is configured in project.yaml
    assert release["ref"] == "refs/heads/release"
    git(pushed.work, "checkout", "--quiet", "main")
    # one push: delete release, push a new commit of main
    sha = pushed.append("README.md", "\nwords\n", "docs")
    pushed.push(":release", "main")
    assert pushed.wait(sha)["status"] == "nothing-to-run"
    listing = git(pushed.bare, "ls-tree", "--name-only", f"{BRANCH}:pushes").split()
    assert sorted(listing) == sorted((pushed.first["revision"], on_release, sha))
    # the same by hand: a deletion and a tag give no record and write nothing
    results_tip = tip(pushed.bare)
    lines = f"{sha} {ZERO} refs/heads/release\n{ZERO} {sha} refs/tags/v2\n"
    assert json.loads(ok(runyard("on-push", "-C", pushed.bare, "--json", stdin=lines))) == []
    assert tip(pushed.bare) == results_tip


# --- CI systems, concurrency ---------------------------------------------------------------


def test_before_after_ref_in_a_non_bare_clone(tmp_path: Path) -> None:
    work = copy_project(PROJECT, tmp_path / "ci")
    make_repo(work)
    old = commit_all(work, "the gitops test project")
    (work / "src" / "beta.py").write_text((work / "src" / "beta.py").read_text() + "\n# ci\n")
    new = commit_all(work, "change beta")
    # --backend local: the operator's own flag allows what the project's `local` asks for
    done = runyard("on-push", "-C", work, "--before", old, "--after", new, "--ref",
                   "refs/heads/main", "--backend", "local", "--json")
    (push,) = json.loads(ok(done))
    assert (push["old"], push["revision"], push["ref"]) == (old, new, "refs/heads/main")
    assert push["status"] == "completed"
    assert ran(push) == {"beta-job": "completed", "both-job": "completed"}
    assert push_record(work / ".git", new) == push
    records = run_records(work / ".git")
    assert {r["spec"]["trigger"]["kind"] for r in records.values()} == {"push"}
    # as a CI system gives it for a new branch: all-zero before, the ref from the checkout
    done = runyard("on-push", "-C", work, "--before", ZERO, "--after", "HEAD", "--force",
                   "--backend", "local", "--json")
    (again,) = json.loads(ok(done))
    assert (again["old"], again["ref"]) == (None, "refs/heads/main")
    assert ran(again) == dict.fromkeys(PUSH_JOBS, "completed")
    assert git(work, "status", "--porcelain") == ""  # the checkout is untouched
    fsck_clean(work / ".git")


def test_pushes_at_once_all_get_every_record(pushed: Remote, tmp_path: Path) -> None:
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(pushed.bare), str(other))
    git(other, "checkout", "--quiet", "-b", "release")
    on_release = pushed.append("src/beta.py", "\n# release work\n", "beta", clone=other)
    on_main = pushed.append("src/alpha.py", "\n# main work\n", "alpha")
    later_main = pushed.append("data/notes.txt", "a note\n", "notes")
    # two clones push to two configured branches at once; main gets a second push before
    # the first push's hook is done
    pushes = [subprocess.Popen(["git", "push", "--quiet", "origin", f"{ref}:refs/heads/{branch}"],
                               cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for cwd, ref, branch in ((pushed.work, on_main, "main"),
                                       (other, "release", "release"))]
    for process in pushes:
        assert process.wait(60) == 0
    pushed.push("main")
    records_of = {sha: pushed.wait(sha, branch) for sha, branch in (
        (on_release, "release"), (on_main, "main"), (later_main, "main"))}
    assert ran(records_of[on_release]) == dict.fromkeys(PUSH_JOBS, "completed") | {
        "alpha-job": "skipped", "notes-job": "skipped"}  # unchanged there: memoized
    assert ran(records_of[on_main]) == {"alpha-job": "completed", "both-job": "completed"}
    assert ran(records_of[later_main]) == {"notes-job": "completed"}
    records = run_records(pushed.bare)
    for sha, push in records_of.items():
        assert push["status"] == "completed"
        for run in push["runs"]:
            record = records[run["uid"]]
            assert record["spec"]["revision"] == sha
            assert record["status"]["state"] == run["state"]
    every_top = [r["uid"] for p in [pushed.first, *records_of.values()] for r in p["runs"]]
    tops = [uid for uid, r in records.items() if r["metadata"]["parent"] is None]
    assert sorted(tops) == sorted(every_top)
    for record in records.values():  # each pipeline run has both its steps
        if record["spec"]["pipeline"] and record["metadata"]["parent"] is None:
            assert set(children(records, record["metadata"]["uid"])) == {"first", "second"}
    listing = git(pushed.bare, "ls-tree", "--name-only", f"{BRANCH}:pushes").split()
    assert len(listing) == 4
    fsck_clean(pushed.bare)


# --- plan and status -----------------------------------------------------------------------


def test_plan_names_the_reasons(remote: Remote) -> None:
    base = remote.head()
    remote.append("src/alpha.py", "\n# alpha\n", "alpha")
    remote.append("data/other.txt", "more\n", "data")
    text = ok(runyard("plan", f"{base}..HEAD", "-C", remote.work))
    lines = text.splitlines()
    assert lines[0] == f"runyard plan {base[:12]}..{remote.head()[:12]}: 2 files changed"
    assert "  ~ alpha                code changed (src/alpha.py)" in lines
    assert "    beta                 unchanged" in lines
    assert "  + alpha-job            will run: function alpha changed" in lines
    assert "  + both-job             will run: function alpha changed" in lines
    assert "  + notes-job            will run: paths matched (data/other.txt)" in lines
    assert "    beta-job             will not run: nothing it uses changed" in lines
    for name in SCHEDULED:
        assert f"    {name:<20} will not run: {SCHEDULE_ONLY}" in lines
    assert "images to build:" not in text
    assert lines[-1] == "Plan: 3 jobs to run, 4 not."
    plan = json.loads(ok(runyard("plan", f"{base}..HEAD", "-C", remote.work, "--json")))
    assert set(plan) == {"old", "new", "changed", "functions", "images", "jobs", "to_run",
                         "notes"}
    assert plan["notes"] == []
    assert (plan["old"], plan["new"]) == (base, remote.head())
    assert plan["changed"] == ["data/other.txt", "src/alpha.py"]
    assert plan["images"] == {}
    assert plan["to_run"] == ["alpha-job", "both-job", "notes-job"]
    assert set(plan["functions"][0]) == {"name", "reasons", "environment_changed", "env_hash"}
    assert [j["name"] for j in plan["jobs"]] == sorted(PUSH_JOBS + SCHEDULED)
    assert all(set(j) == {"name", "runs", "reasons"} for j in plan["jobs"])
    # without records, the default OLD is nothing: every job is new, images to build
    first = json.loads(ok(runyard("plan", "-C", remote.work, "--json")))
    assert first["old"] is None
    assert first["to_run"] == PUSH_JOBS
    assert list(first["images"].values()) == [["alpha", "beta"]]
    assert "images to build:" in ok(runyard("plan", "-C", remote.work))


def test_plan_starts_from_the_last_processed_push(pushed: Remote) -> None:
    pushed.fetch_results()
    sha = pushed.append("src/beta.py", "\n# beta\n", "beta")
    plan = json.loads(ok(runyard("plan", "-C", pushed.work, "--json")))
    assert (plan["old"], plan["new"]) == (pushed.first["revision"], sha)
    assert plan["to_run"] == ["beta-job", "both-job"]


def status_of(work: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(ok(runyard("status", "-C", work, "--json")))
    return {row["job"]: row for row in rows}


def pushed_jobs_stale(work: Path) -> dict[str, bool]:
    return {job: row["stale"] for job, row in status_of(work).items() if job in PUSH_JOBS}


def test_status_stale_after_a_change_and_up_to_date_once_pushed(pushed: Remote) -> None:
    pushed.fetch_results()
    rows = status_of(pushed.work)
    assert pushed_jobs_stale(pushed.work) == dict.fromkeys(PUSH_JOBS, False)
    for name in SCHEDULED:
        assert (rows[name]["stale"], rows[name]["why"]) == (True, ["never run"])
    # an unrelated data change: notes-job's newest run becomes a memoized skip, up to date
    sha = pushed.append("data/other.txt", "more\n", "data")
    assert status_of(pushed.work)["notes-job"]["why"] == ["paths matched (data/other.txt)"]
    pushed.push("main")
    assert ran(pushed.wait(sha)) == {"notes-job": "skipped"}
    pushed.fetch_results()
    rows = status_of(pushed.work)
    assert rows["notes-job"]["newest"]["state"] == "skipped"
    assert (rows["notes-job"]["stale"], rows["notes-job"]["why"]) == (False, [])
    # a code change: stale until its push is processed
    pushed.append("src/alpha.py", "\n# alpha\n", "alpha")
    rows = status_of(pushed.work)
    assert (rows["alpha-job"]["stale"], rows["alpha-job"]["why"]) == (
        True, ["function alpha changed"])
    assert rows["both-job"]["stale"] is True
    assert rows["beta-job"]["stale"] is False
    text = ok(runyard("status", "-C", pushed.work))
    alpha_line = next(line for line in text.splitlines() if line.startswith("alpha-job"))
    assert "stale" in alpha_line and "function alpha changed" in alpha_line
    pushed.push("main")
    assert ran(pushed.wait(pushed.head())) == {"alpha-job": "completed", "both-job": "completed"}
    pushed.fetch_results()
    assert pushed_jobs_stale(pushed.work) == dict.fromkeys(PUSH_JOBS, False)
    text = ok(runyard("status", "-C", pushed.work))
    alpha_line = next(line for line in text.splitlines() if line.startswith("alpha-job"))
    assert "up to date" in alpha_line


# --- the results branch is the runner's ---------------------------------------------------


def refused(remote: Remote, *refspecs: str) -> str:
    """git's answer to a push the pre-receive hook refuses (nothing of it is taken)."""
    done = subprocess.run(["git", "push", "origin", *refspecs], cwd=remote.work,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stderr
    assert "a results branch is written by runyard's runner only" in done.stderr, done.stderr
    return done.stderr


def test_a_push_never_writes_a_results_branch(pushed: Remote) -> None:
    """Forged records (a memo key pointing at results that never ran, an artifact's
    hash) would be taken for what ran: the hook refuses to make, move or delete a results
    branch, under its name or any other, and the runner's own writes go on."""
    git(pushed.work, "fetch", "--quiet", "origin", f"{BRANCH}:{BRANCH}")
    ours = tip(pushed.bare)
    git(pushed.work, "checkout", "--quiet", BRANCH)
    forged = pushed.change({"index/keys/ab/forged": "a run that never ran\n"}, "forged records")
    git(pushed.work, "checkout", "--quiet", "main")
    refused(pushed, f"{forged}:refs/heads/{BRANCH}")  # moved
    refused(pushed, f"{forged}:refs/heads/elsewhere")  # made under another name
    refused(pushed, f":refs/heads/{BRANCH}")  # deleted
    assert tip(pushed.bare) == ours and tip(pushed.bare, "elsewhere") is None
    # a branch of other files, and the project's own pushes, go through
    pushed.push("main:refs/heads/feature")
    pushed.change({"notes.txt": "more\n"}, "a change after the refusals")
    assert pushed.push_and_wait("main")["status"] in ("completed", "nothing-to-run")
    assert tip(pushed.bare) != ours  # the runner still writes its branch
