"""Every ref update of a push gets its push record, whatever fails; the hook's log stays bounded.

Real git, no mocks: the bare repository and clone of tests/helpers/gitops.py. Where a
test calls `on-push` itself, it removes the hook first, so that only its own call
processes the pushes. A bug is provoked for real: a file where runyard keeps its job
locks. One test uses the Docker engine (a build that fails, a base image missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.errors import APIError, ImageNotFound

from runner.record import index
from runner.record.gitstore import GitStore
from runner.record.model import PushRecord
from runner.record.owner import Owner
from runner.record.results import ResultsBranch, push_path
from runner.run.reconcile import reconcile_pushes
from runner.triggers.push import plan_base
from tests.helpers import commit_all, copy_project, git, make_repo
from tests.helpers.gitops import (
    BRANCH,
    PROJECT,
    PUSH_JOBS,
    ZERO,
    Remote,
    make_remote,
    ok,
    push_record,
    ran,
    runyard,
    wait_for,
)

UNREACHABLE = {"DOCKER_HOST": "tcp://127.0.0.1:9"}  # nothing listens there
MISSING_BASE = "runyard-test/nope:1"
LABEL_PROJECT = "dev.runyard.project"
BAD_JOB = """apiVersion: runyard/v1
kind: job
name: bad-job
run: {function: alpha, handler: double}
params: {x: {a: 1}}
"""  # a dict doubled: a TypeError in the handler


@pytest.fixture
def by_hand(pushed: Remote) -> Remote:
    """The same without the hook: the test processes its pushes with `on-push` itself."""
    (pushed.bare / "hooks" / "post-receive").unlink()
    return pushed


def on_push(remote: Remote, *lines: str, code: int, args: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`on-push --json` of the bare repository with `OLD NEW REF` lines; its push records."""
    done = runyard("on-push", "-C", remote.bare, "--json", *args, stdin="".join(lines), env=env)
    records: list[dict[str, Any]] = json.loads(ok(done, code))
    return records


def line(old: str | None, new: str, branch: str = "main") -> str:
    return f"{old or ZERO} {new} refs/heads/{branch}\n"


def release_branch(remote: Remote, files: dict[str, str | None], message: str) -> str:
    """A commit on a new branch `release` (from the first commit), pushed; main checked out."""
    git(remote.work, "checkout", "--quiet", "-b", "release", remote.first["revision"])
    sha = remote.change(files, message)
    remote.push("release")
    git(remote.work, "checkout", "--quiet", "main")
    return sha


# --- one record per branch and revision ----------------------------------------------------


def test_one_revision_pushed_to_two_branches_gets_a_record_each(pushed: Remote) -> None:
    sha = pushed.head()
    pushed.push("main:release")  # the same revision, now on release too
    release = pushed.wait(sha, "release")
    assert (release["revision"], release["ref"]) == (sha, "refs/heads/release")
    assert release["status"] == "completed"
    assert set(ran(release)) == set(PUSH_JOBS)
    assert ran(release)["alpha-job"] == "skipped"  # ran on main already: memoized
    assert push_record(pushed.bare, sha, "main") == pushed.first
    listing = git(pushed.bare, "ls-tree", "--name-only", f"{BRANCH}:pushes/{sha}").split()
    assert listing == ["main.yaml", "release.yaml"]


def test_a_slash_in_a_branch_name_is_escaped() -> None:
    assert push_path("abc", "refs/heads/feature/x") == "pushes/abc/feature%2Fx.yaml"
    assert push_path("abc", "refs/heads/100%") == "pushes/abc/100%25.yaml"


def test_push_records_of_the_older_layout_are_still_read(by_hand: Remote) -> None:
    first = by_hand.first["revision"]
    beta = by_hand.append("src/beta.py", "\n# beta\n", "beta")
    docs = by_hand.append("README.md", "\nwords\n", "docs")
    by_hand.push("main")
    # as an older runyard recorded it: pushes/<revision>.yaml, here an invalid push
    older = {"apiVersion": "runyard/v1", "kind": "push", "revision": beta, "old": first,
             "ref": "refs/heads/main", "status": "invalid", "problems": ["x"], "plan": None,
             "runs": []}
    GitStore(by_hand.bare, BRANCH).commit({f"pushes/{beta}.yaml": yaml.safe_dump(older).encode()},
                                          "a push record of the older layout")
    assert on_push(by_hand, line(first, beta), code=1) == [older]  # processed already
    (push,) = on_push(by_hand, line(beta, docs), code=0)
    assert push["plan"]["old"] == first  # planned from before the invalid push
    assert ran(push) == {"beta-job": "completed", "both-job": "completed"}


def test_a_push_never_recorded_is_planned_past(by_hand: Remote) -> None:
    """A runner killed before it took a push leaves no record of it: the next push is
    planned from the last push recorded before it, so the lost push's jobs still run."""
    first = by_hand.first["revision"]
    beta = by_hand.append("src/beta.py", "\n# beta\n", "beta")
    by_hand.push("main")  # and its runner never took it: no on-push, no record
    docs = by_hand.append("README.md", "\nwords\n", "docs")
    by_hand.push("main")
    (push,) = on_push(by_hand, line(beta, docs), code=0)
    assert push["plan"]["old"] == first
    assert ran(push) == {"beta-job": "completed", "both-job": "completed"}
    more = by_hand.append("README.md", "\nmore words\n", "more docs")
    by_hand.push("main")
    (then,) = on_push(by_hand, line(docs, more), code=0)  # docs was recorded: planned from it
    assert then["plan"]["old"] == docs


def test_the_runner_indexes_a_branch_an_older_runyard_wrote(by_hand: Remote) -> None:
    first = by_hand.first["revision"]
    store = GitStore(by_hand.bare, BRANCH)
    shards = [f"{folder}/{name}" for folder in (index.TOP, index.CHILDREN)
              for name in store.list(folder)]
    store.commit(dict.fromkeys([index.VERSION_PATH, *shards]), "as before there was an index")
    docs = by_hand.append("README.md", "\nwords\n", "docs")
    by_hand.push("main")
    on_push(by_hand, line(first, docs), code=0)
    with contextlib.closing(ResultsBranch(by_hand.bare, BRANCH)) as results:
        assert results.indexed()
        assert sorted(row.uid for row in results.listing(children=True).rows) == sorted(results.uids())


# --- whatever fails, every update gets its record ------------------------------------------


def test_a_failed_run_fails_its_push_and_says_which(pushed: Remote) -> None:
    sha = pushed.change({"jobs/bad-job.yaml": BAD_JOB}, "a job whose run fails")
    pushed.push("main")
    push = pushed.wait(sha)
    assert push["status"] == "failed"
    assert ran(push) == {"bad-job": "failed"}
    assert push["reason"] == "1 of 1 jobs did not complete: bad-job failed"


def test_a_bug_is_recorded_as_error_for_every_update_and_exits_3(by_hand: Remote) -> None:
    first = by_hand.first["revision"]
    on_main = by_hand.append("src/alpha.py", "\n# alpha\n", "alpha")
    by_hand.push("main")
    on_release = release_branch(by_hand, {"src/beta.py": "def inc(context, y=1):\n    pass\n"},
                                "beta")
    locks = by_hand.bare / "runyard" / "locks"
    shutil.rmtree(locks)
    locks.write_text("a file where runyard keeps a folder of locks")
    lines = (line(first, on_main), line(None, on_release, "release"))
    done = runyard("on-push", "-C", by_hand.bare, "--json", stdin="".join(lines))
    assert done.returncode == 3, done.stdout + done.stderr
    pushes = json.loads(done.stdout)
    assert [(p["ref"], p["status"]) for p in pushes] == [
        ("refs/heads/main", "error"), ("refs/heads/release", "error")]
    for push in pushes:
        assert push["reason"].startswith("internal error: FileExistsError: ")
        assert push["plan"]["to_run"] and push["runs"] == []
        assert push_record(by_hand.bare, push["revision"], push["ref"][11:]) == push
    assert done.stderr.count("Traceback (most recent call last)") == 2
    assert "internal error (a bug, please report it) in 2 of 2 pushes" in done.stderr
    # once the cause is gone, the same updates are processed again, and run
    locks.unlink()
    again = on_push(by_hand, *lines, code=0)
    assert [p["status"] for p in again] == ["completed", "completed"]
    assert ran(again[0]) == {"alpha-job": "completed", "both-job": "completed"}


def test_an_unreachable_engine_fails_the_push_and_the_next_push_runs_what_it_held(
        by_hand: Remote) -> None:
    first = by_hand.first["revision"]
    alpha = by_hand.append("src/alpha.py", "\n# alpha\n", "alpha")
    by_hand.push("main")
    (push,) = on_push(by_hand, line(first, alpha), code=1, args=("--backend", "docker"),
                      env=UNREACHABLE)
    assert push["status"] == "failed"
    assert push["reason"].startswith("cannot reach the Docker engine")
    assert "DOCKER_HOST is set to 'tcp://127.0.0.1:9'" in push["reason"]
    assert push["plan"]["to_run"] == ["alpha-job", "both-job"] and push["runs"] == []
    assert push_record(by_hand.bare, alpha) == push
    # the engine is back (here: the local backend); the next push runs alpha's change
    docs = by_hand.append("README.md", "\nwords\n", "docs")
    by_hand.push("main")
    (push,) = on_push(by_hand, line(alpha, docs), code=0)
    assert push["plan"]["old"] == first
    assert ran(push) == {"alpha-job": "completed", "both-job": "completed"}


def test_a_link_out_of_the_project_fails_the_push(pushed: Remote) -> None:
    os.symlink("/etc/passwd", pushed.work / "data" / "passwd")
    sha = commit_all(pushed.work, "a link out of the project")
    pushed.push("main")
    push = pushed.wait(sha)
    assert push["status"] == "failed"
    assert "'data/passwd' is a link to an absolute path" in push["reason"]
    assert push["reason"].endswith("links out of the project are refused")
    assert "Traceback" not in pushed.log.read_text()


@pytest.fixture
def images(tmp_path: Path) -> Iterator[Remote]:
    """A remote whose project has a name of its own, without the hook; its images are
    removed at the end."""
    remote = make_remote(tmp_path)
    name = f"rypush-{secrets.token_hex(4)}"
    remote.change({"project.yaml": (remote.work / "project.yaml").read_text().replace(
        "name: rygitops", f"name: {name}")}, "a name of its own")
    remote.first = {"revision": remote.head()}
    (remote.bare / "hooks" / "post-receive").unlink()
    yield remote
    client = docker.from_env()
    for image in client.api.images(filters={"label": f"{LABEL_PROJECT}={name}"}):
        with contextlib.suppress(ImageNotFound, APIError):
            client.api.remove_image(image["Id"], force=True)
    client.close()


@pytest.mark.docker
def test_a_failing_build_and_a_missing_base_image_fail_their_pushes(images: Remote) -> None:
    alpha = (images.work / "functions" / "alpha.yaml").read_text()
    beta = (images.work / "functions" / "beta.yaml").read_text()
    on_main = images.change(
        {"functions/alpha.yaml": alpha + 'environment: {setup: ["exit 3"]}\n'}, "a failing step")
    images.push("main")
    on_release = release_branch(
        images, {"functions/beta.yaml": beta + f"environment: {{base_image: {MISSING_BASE}}}\n"},
        "a base image that is nowhere")
    pushes = on_push(images, line(None, on_main), line(None, on_release, "release"), code=1,
                     args=("--backend", "docker"))
    assert [(p["ref"], p["status"]) for p in pushes] == [
        ("refs/heads/main", "failed"), ("refs/heads/release", "failed")]
    main, release = (p["reason"] for p in pushes)
    assert main.startswith("functions/alpha.yaml:7:")
    assert "the image of function alpha failed to build" in main and "exit 3" in main
    assert release.startswith("functions/beta.yaml:7:")
    assert f"base image {MISSING_BASE} is not on this machine" in release
    for push in pushes:
        assert push["runs"] == []
        assert push_record(images.bare, push["revision"], push["ref"][11:]) == push


# --- a broken or missing old revision ------------------------------------------------------


def test_an_old_environment_that_cannot_be_read_counts_as_changed(remote: Remote) -> None:
    alpha = (remote.work / "functions" / "alpha.yaml").read_text()
    old = remote.change({"functions/alpha.yaml": alpha + "environment: {requirements_file: "
                         "reqs.txt}\n"}, "alpha names a file that is not there")
    new = remote.change({"reqs.txt": "# nothing yet\n"}, "the file")
    plan = json.loads(ok(runyard("plan", f"{old}..{new}", "-C", remote.work, "--json")))
    assert plan["notes"] == [
        "function alpha: the old environment cannot be read (functions/alpha.yaml: "
        f"requirements_file 'reqs.txt' cannot be read at {old[:12]} (it does not exist)): "
        "counted as changed"]
    alpha_change = next(f for f in plan["functions"] if f["name"] == "alpha")
    assert alpha_change["environment_changed"] is True
    assert plan["to_run"] == ["alpha-job", "both-job"]
    text = ok(runyard("plan", f"{old}..{new}", "-C", remote.work))
    assert text.splitlines()[1].startswith("note: function alpha: the old environment cannot")
    (push,) = json.loads(ok(runyard("on-push", "-C", remote.work, "--before", old, "--after",
                                    new, "--backend", "local", "--json")))
    assert push["status"] == "completed"
    assert push["plan"]["notes"] == plan["notes"]


def test_an_old_revision_without_the_project_folder_counts_every_job_new(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "mono")
    (repo / "README.md").write_text("a monorepo\n")
    old = commit_all(repo, "before the project")
    copy_project(PROJECT, repo / "proj")
    new = commit_all(repo, "the project, in a folder")
    plan = json.loads(ok(runyard("plan", f"{old}..{new}", "-C", repo / "proj", "--json")))
    assert plan["notes"] == [f"old revision {old[:12]} cannot be read (no folder 'proj' at "
                             f"revision {old}): every job counts as new"]
    assert plan["to_run"] == PUSH_JOBS
    done = runyard("on-push", "-C", repo, "--path", "proj", "--before", old, "--after", new,
                   "--backend", "local", "--json")
    (push,) = json.loads(ok(done))
    assert push["status"] == "completed"
    assert ran(push) == dict.fromkeys(PUSH_JOBS, "completed")


def test_an_old_revision_not_in_the_repository(tmp_path: Path) -> None:
    work = copy_project(PROJECT, tmp_path / "ci")
    make_repo(work)
    new = commit_all(work, "the project")
    gone = "1234567" * 5 + "12345"  # a shallow clone of CI lacks the revision before
    done = runyard("on-push", "-C", work, "--before", gone, "--after", new, "--backend", "local",
                   "--json")
    (push,) = json.loads(ok(done))
    assert push["status"] == "completed"
    assert push["plan"]["notes"] == [f"old revision {gone[:12]} is not in this repository: "
                                     "every file counts as changed, every job as new"]
    assert ran(push) == dict.fromkeys(PUSH_JOBS, "completed")
    # named by hand, a revision that is not there is the user's mistake
    typo = runyard("plan", "nosuchrev..HEAD", "-C", work)
    assert typo.returncode == 1
    assert "no revision 'nosuchrev'" in typo.stderr


# --- the hook's log ------------------------------------------------------------------------


def test_the_hook_rotates_its_log_past_a_mebibyte(pushed: Remote) -> None:
    rotated = pushed.log.with_name("on-push.log.1")
    old_text = "x" * (1024 * 1024) + "\nthe end of an old log\n"
    pushed.log.write_text(old_text)
    first = pushed.append("README.md", "\nmore\n", "docs")
    pushed.push("main")
    done_line = f"{first[:12]} on refs/heads/main: nothing-to-run"
    wait_for(lambda: done_line in pushed.log.read_text(), "the push's last log line", pushed.log)
    assert rotated.read_text() == old_text
    assert pushed.log.stat().st_size < 4096
    # under the limit nothing moves: the log grows, the old one stays as it was
    second = pushed.append("README.md", "\neven more\n", "docs")
    pushed.push("main")
    done_line = f"{second[:12]} on refs/heads/main: nothing-to-run"
    wait_for(lambda: done_line in pushed.log.read_text(), "the push's last log line", pushed.log)
    assert f"{first[:12]} on refs/heads/main" in pushed.log.read_text()
    assert rotated.read_text() == old_text



# --- a push being processed, and one whose runner was lost ------------------------------------


def test_a_push_being_processed_is_planned_from_and_a_lost_ones_base_is_not(tmp_path: Path) -> None:
    """plan_base goes back past a push whose runner is gone (its jobs did not all run), not
    past one a live runner is processing; reconcile_pushes records only the lost one failed,
    without moving index/last-push."""
    git_dir = make_repo(tmp_path / "repo") / ".git"
    results = ResultsBranch(git_dir, BRANCH)
    gone = f"{Owner.current().host}/{2**22 + 1}:1"  # no such pid
    base, live, lost = "a" * 40, "b" * 40, "c" * 40
    try:
        results.write_push(PushRecord(base, None, "refs/heads/main", status="completed",
                                      plan={"to_run": []}))
        for revision, runner in ((live, str(Owner.current())), (lost, gone)):
            results.write_push(PushRecord(revision, base, "refs/heads/main", runner=runner),
                               newest=False)
        assert plan_base(results, git_dir, live, "refs/heads/main") == live
        assert plan_base(results, git_dir, lost, "refs/heads/main") == base
        notes: list[str] = []
        assert reconcile_pushes(results, notes.append) == 1
        assert notes == ["recorded 1 push(es) of a lost runner as failed"]
        failed = results.push(lost, "refs/heads/main")
        assert failed is not None and failed.status == "failed"
        assert failed.reason is not None and failed.reason.startswith("runner lost")
        assert failed.finished is not None
        still = results.push(live, "refs/heads/main")
        assert still is not None and still.status == "running"
        assert list(results.running_pushes()) == [(live, "refs/heads/main")]
        assert results.last_push() == (base, "refs/heads/main")
        assert plan_base(results, git_dir, lost, "refs/heads/main") == base
    finally:
        results.close()
