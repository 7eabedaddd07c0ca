"""runner.record.gitstore's group commit: records that threads of one runner write while a
commit is being made wait, and the next commit carries them all. Real repositories; the
commit in progress is held open by a `derived` that waits, so what queues behind it is
known, not left to the scheduler."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from runner.record import index
from runner.record.gitstore import AtCommit, GitStore
from runner.record.model import Metadata, Params, RunRecord, Spec, State, Status
from runner.record.results import RUNNING, ResultsBranch, run_folder
from tests.helpers import git, make_repo

BRANCH = "runyard/results"
WAIT = 10.0


@pytest.fixture
def results(tmp_path: Path) -> Iterator[ResultsBranch]:
    branch = ResultsBranch(make_repo(tmp_path / "repo") / ".git", BRANCH)
    yield branch
    branch.close()


def _commits(store: GitStore) -> int:
    return int(git(store.git_dir.parent, "rev-list", "--count", BRANCH))


def _held(store: GitStore, pool: ThreadPoolExecutor) -> tuple[threading.Event, Future[str]]:
    """A grouped commit being made, held open until the event is set."""
    entered, release = threading.Event(), threading.Event()

    def wait(base: AtCommit) -> dict[str, bytes | None]:
        entered.set()
        assert release.wait(WAIT)
        return {}

    held = pool.submit(store.commit, {"index/held": b"1"}, "held", derived=wait, group=True)
    assert entered.wait(WAIT)
    return release, held


def _queued(store: GitStore, pool: ThreadPoolExecutor, count: int,
            call: Callable[[], str]) -> Future[str]:
    """`call` submitted, once it waits in the queue (the `count`th there)."""
    future = pool.submit(call)
    deadline = time.monotonic() + WAIT
    while len(store._queue) < count:  # (what waits is what this test is about)
        assert time.monotonic() < deadline and not future.done(), "it never queued"
        time.sleep(0.001)
    return future


def _record(uid: str, state: State = "completed", iteration: int = 1) -> RunRecord:
    """A trial's record: `running`, or ended (with a result)."""
    ended = state != "running"
    return RunRecord(
        Metadata(uid=uid, name="grid", project="p", job="grid", parent="parent0000000000",
                 iteration=iteration),
        Spec(params=Params(resolved={"a": iteration}), revision="ab" * 20),
        Status(state=state, start="2026-11-30T10:00:00+00:00",
               end="2026-11-30T10:00:01+00:00" if ended else None,
               results={"s": iteration} if ended else {}, runner="me@here:1"))


def test_what_queues_behind_a_commit_lands_in_the_next_one(results: ResultsBranch) -> None:
    store = results.store
    with ThreadPoolExecutor(max_workers=12) as pool:
        release, held = _held(store, pool)
        waiting = [_queued(store, pool, n + 1, lambda n=n: store.commit(
            {f"index/t/{n}": str(n).encode()}, f"write {n}", group=True)) for n in range(10)]
        assert not any(future.done() for future in waiting)  # none returns before it lands
        release.set()
        made = {future.result(WAIT) for future in waiting}
    assert len(made) == 1 and held.result() not in made  # one commit carried all ten
    assert store.files("index/t") == sorted(str(n) for n in range(10)) and store.read("index/held") == b"1"
    assert _commits(store) == 2
    message = git(store.git_dir.parent, "log", "-1", "--format=%B", BRANCH)
    assert message.startswith("10 changes\n\nwrite 0\nwrite 1\n")


def test_many_threads_at_once_lose_no_record_and_share_commits(results: ResultsBranch) -> None:
    uids = [f"{n:02x}{'0' * 13}{n % 10}" for n in range(64)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda uid: results.write(_record(uid), b"log"), uids))
    assert sorted(results.uids()) == sorted(uids)
    assert {row.uid for row in results.listing(children=True).rows} == set(uids)
    assert all(results.read(uid).status.state == "completed" for uid in uids)
    assert _commits(results.store) <= len(uids)


def test_rows_of_one_shard_grouped_in_one_commit_are_all_indexed(results: ResultsBranch) -> None:
    """Each record's index row is derived from what the records before it in the same
    commit wrote, not from the branch alone: rows sharing a shard keep each other."""
    store = results.store
    uids = [f"ab{n:014d}" for n in range(5)]  # one shard
    with ThreadPoolExecutor(max_workers=8) as pool:
        release, _ = _held(store, pool)
        waiting = [_queued(store, pool, n + 1, lambda uid=uid: results.write(_record(uid)))
                   for n, uid in enumerate(uids)]
        release.set()
        assert len({future.result(WAIT) for future in waiting}) == 1
    shard = index.decode(store.read(f"{index.CHILDREN}/ab.json") or b"")
    assert [row.uid for row in shard] == uids
    assert results.indexed()  # the first records of a branch made the index complete


def test_a_final_record_grouped_after_its_running_one_wins(results: ResultsBranch) -> None:
    store = results.store
    uid = "cd00000000000001"
    with ThreadPoolExecutor(max_workers=4) as pool:
        release, _ = _held(store, pool)
        running = _queued(store, pool, 1, lambda: results.write(_record(uid, "running")))
        final = _queued(store, pool, 2, lambda: results.write(_record(uid), b"the log"))
        release.set()
        assert running.result(WAIT) == final.result(WAIT)  # the same commit carried both
    assert results.read(uid).status.state == "completed"
    assert results.log(uid) == b"the log"
    assert results.running() == {} and store.read(f"{RUNNING}/{uid}") is None
    (row,) = results.listing(children=True).rows
    assert row.state == "completed" and row.results == {"s": 1}


def test_a_failing_commit_fails_every_record_it_carried(results: ResultsBranch) -> None:
    store = results.store

    def broken(base: AtCommit) -> dict[str, bytes | None]:
        raise OSError("the disk went away")

    with ThreadPoolExecutor(max_workers=4) as pool:
        release, held = _held(store, pool)
        failing = _queued(store, pool, 1, lambda: store.commit(
            {"index/one": b"1"}, "one", derived=broken, group=True))
        carried = _queued(store, pool, 2, lambda: store.commit({"index/two": b"2"}, "two", group=True))
        release.set()
        for future in (failing, carried):
            with pytest.raises(OSError, match="the disk went away"):
                future.result(WAIT)
    assert store.head() == held.result()
    assert store.read("index/one") is None and store.read("index/two") is None
    store.commit({"index/three": b"3"}, "three", group=True)  # the store goes on
    assert store.read("index/three") == b"3" and _commits(store) == 2


def test_a_commit_not_grouped_is_made_alone_in_its_turn(results: ResultsBranch) -> None:
    store = results.store
    with ThreadPoolExecutor(max_workers=6) as pool:
        release, _ = _held(store, pool)
        before = _queued(store, pool, 1, lambda: store.commit({"index/a": b"1"}, "a", group=True))
        alone = _queued(store, pool, 2, lambda: store.commit({"index/b": b"2"}, "b"))
        after = [_queued(store, pool, 3 + n, lambda n=n: store.commit(
            {f"index/c{n}": b"3"}, f"c{n}", group=True)) for n in range(2)]
        release.set()
        made = [before.result(WAIT), alone.result(WAIT), *(f.result(WAIT) for f in after)]
    assert len(set(made)) == 3 and made[2] == made[3]
    log = git(store.git_dir.parent, "log", "--format=%s", BRANCH).split("\n")[:3]
    assert log == ["2 changes", "b", "a"]  # in the order they were asked for


def test_a_group_that_loses_the_race_is_made_again_whole(results: ResultsBranch) -> None:
    """Another runner (another process: another store) moves the branch while a group is
    being made: compare-and-swap refuses it, and the group is made again on top, every
    record in it and what it derives made anew."""
    store = results.store
    other = GitStore(store.git_dir, BRANCH)
    bases: list[str | None] = []

    def racing(base: AtCommit) -> dict[str, bytes | None]:
        bases.append(base.commit)
        if len(bases) == 1:
            other.commit({"index/other": b"x"}, "another runner")
        return {"index/derived": str(len(bases)).encode()}

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            release, _ = _held(store, pool)
            first = _queued(store, pool, 1, lambda: store.commit(
                {"index/first": b"1"}, "first", derived=racing, group=True))
            second = _queued(store, pool, 2, lambda: results.write(_record("ef00000000000002")))
            release.set()
            assert first.result(WAIT) == second.result(WAIT)
    finally:
        other.close()
    assert len(bases) == 2 and bases[0] != bases[1]
    assert store.read("index/other") == b"x" and store.read("index/first") == b"1"
    assert store.read("index/derived") == b"2"
    assert results.read("ef00000000000002").status.state == "completed"
    assert [row.uid for row in results.listing(children=True).rows] == ["ef00000000000002"]


def test_a_record_reads_back_from_the_trees_as_git_shows_it(results: ResultsBranch) -> None:
    """AtCommit reads through the store's own trees (kept between commits), not git: what
    it reads is what `git show` shows."""
    uid = "0123456789abcdef"
    results.write(_record(uid), b"log")
    store = results.store
    at = AtCommit(store, store.head())
    shown = git(store.git_dir.parent, "show", f"{BRANCH}:{run_folder(uid)}/run.yaml")
    assert at.read(f"{run_folder(uid)}/run.yaml") == shown.encode()
    assert at.exists("runs") and at.exists(f"{run_folder(uid)}/log.txt")
    assert not at.exists("nothing") and at.read(run_folder(uid)) is None
    assert at.read(f"{run_folder(uid)}/log.txt/below") is None
    assert git(store.git_dir.parent, "fsck", "--strict").strip() == ""


# --- git's lock of the branch -------------------------------------------------------------


def _git_holding_the_lock(store: GitStore) -> subprocess.Popen[bytes]:
    """A real `git update-ref --stdin` that has prepared a move of the branch (to where it
    is): it holds git's lock of the branch until it is told to commit, or is killed."""
    tip = store.head()
    process = subprocess.Popen(["git", "--git-dir", str(store.git_dir), "update-ref", "--stdin"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(f"start\nupdate {store.ref} {tip} {tip}\nprepare\n".encode())
    process.stdin.flush()
    assert [process.stdout.readline() for _ in range(2)] == [b"start: ok\n", b"prepare: ok\n"]
    assert (store.git_dir / f"{store.ref}.lock").exists()
    return process


def test_a_lock_a_killed_git_left_is_removed_by_the_next_writer(results: ResultsBranch) -> None:
    # A runner's process group killed while its git moved the branch (or the machine going
    # down then) leaves git's lock: no git command moves the branch again by itself.
    store = results.store
    first = store.commit({"index/first": b"1"}, "first")
    holder = _git_holding_the_lock(store)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = store.git_dir / f"{store.ref}.lock"
    assert lock.exists(), "git removed its lock as it was killed"
    long_ago = time.time() - 10 * 60
    os.utime(lock, (long_ago, long_ago))
    started = time.monotonic()
    made = store.commit({"index/second": b"2"}, "second")
    assert time.monotonic() - started < 5
    assert not lock.exists()
    assert git(store.git_dir.parent, "rev-parse", BRANCH).strip() == made
    assert git(store.git_dir.parent, "rev-parse", f"{BRANCH}~1").strip() == first
    assert git(store.git_dir.parent, "show", f"{BRANCH}:index/first") == "1"
    git(store.git_dir.parent, "fsck", "--strict", "--no-dangling")


def test_a_lock_a_live_git_holds_is_waited_for(results: ResultsBranch) -> None:
    store = results.store
    first = store.commit({"index/first": b"1"}, "first")
    holder = _git_holding_the_lock(store)
    assert holder.stdin is not None and holder.stdout is not None
    with ThreadPoolExecutor(max_workers=1) as pool:
        writing = pool.submit(store.commit, {"index/second": b"2"}, "second")
        time.sleep(2)  # longer than a writer that gives up on a lock would try
        assert not writing.done(), "the commit did not wait for the lock"
        holder.stdin.write(b"commit\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == b"commit: ok\n", "the live git lost its lock"
        holder.stdin.close()
        assert holder.wait(WAIT) == 0
        made = writing.result(timeout=WAIT)
    assert git(store.git_dir.parent, "rev-parse", f"{made}~1").strip() == first
    assert git(store.git_dir.parent, "show", f"{BRANCH}:index/second") == "2"


# --- a writer killed between writing an object and naming it ------------------------------

KILLED_AT_RENAME = """
import os, signal, sys
from pathlib import Path
from runner.record.gitstore import GitStore

def die_at_rename(frame, event, arg):
    if event == "c_call" and arg is os.replace:  # the object is written, not yet named
        os.kill(os.getpid(), signal.SIGKILL)

store = GitStore(Path(sys.argv[1]), sys.argv[2])
sys.setprofile(die_at_rename)
store.commit({"index/record": b"a record"}, "a record")
"""


def test_an_object_a_killed_writer_left_half_made_is_gits_to_prune(results: ResultsBranch) -> None:
    store = results.store
    first = store.commit({"index/first": b"1"}, "first")
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_RENAME, str(store.git_dir), BRANCH],
                            capture_output=True, text=True, timeout=60, env=os.environ)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [path for path in (store.git_dir / "objects").glob("??/*")
            if not re.fullmatch(r"[0-9a-f]{38}", path.name)]
    assert len(left) == 1, left
    repo = store.git_dir.parent
    assert git(repo, "rev-parse", BRANCH).strip() == first  # the branch never moved
    git(repo, "fsck", "--strict", "--no-dangling")
    pruned = subprocess.run(["git", "gc", "--quiet", "--prune=now"], cwd=repo,
                            capture_output=True, text=True, check=True)
    assert "bad sha1 file" not in pruned.stderr, pruned.stderr
    assert not left[0].exists(), "git gc left the half-made object"
    counted = git(repo, "count-objects", "-v")
    assert "garbage: 0" in counted, counted
    assert store.commit({"index/second": b"2"}, "second")
