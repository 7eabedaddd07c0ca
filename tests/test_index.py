"""runner.record.index: the rows of a results branch, written with each record, read
without reading a record, rebuilt from the records when missing, older or broken."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from runner.errors import RunyardError
from runner.record import index
from runner.record.gitstore import AtCommit, GitStore
from runner.record.model import Metadata, Params, RunRecord, Spec, Status, TrialSummary
from runner.record.results import ResultsBranch, new_uid, run_folder
from tests.helpers import git, make_repo

BRANCH = "runyard/results"


@pytest.fixture
def results(tmp_path: Path) -> ResultsBranch:
    branch = ResultsBranch(make_repo(tmp_path / "repo") / ".git", BRANCH)
    yield branch  # type: ignore[misc]
    branch.close()


def _record(uid: str, *, job: str = "tune", parent: str | None = None, iteration: int = 0,
            start: str = "2026-11-30T10:00:00+00:00", accuracy: float = 0.5) -> RunRecord:
    trials = () if parent or iteration else (
        TrialSummary(1, "child", "completed", {"depth": 3}, {"accuracy": 0.9}),)
    return RunRecord(
        Metadata(uid=uid, name=job, project="p", job=job, parent=parent, iteration=iteration),
        Spec(params=Params(project={"seed": 1}, job={"depth": 3},
                           resolved={"seed": 1, "depth": 3, "note": "x" * 500, "grid": [1, 2]}),
             revision="ab" * 20),
        Status(state="completed", start=start, duration=1.5, trials=trials,
               best_iteration=None if parent else 1,
               results={"accuracy": accuracy, "table": {"a": 1}}))


def test_each_record_writes_its_row_and_a_new_branch_is_indexed(results: ResultsBranch) -> None:
    written = [_record(new_uid(), start=f"2026-11-30T10:00:0{n}+00:00") for n in range(5)]
    for record in written:
        results.write(record)
    listing = results.listing()
    assert results.indexed() and listing.problems == []
    assert listing.rows == [index.row_of(r) for r in reversed(written)]  # newest first
    row = listing.rows[0]
    assert row.params == {"depth": 3, "note": "x" * index.MAX_TEXT}  # no project param, no list
    assert row.results == {"accuracy": 0.5} and (row.children, row.kind, row.best) == (1, "trial", 1)


def test_a_branch_not_made_yet_lists_nothing_and_warns_of_nothing(results: ResultsBranch) -> None:
    """Before the first run there is no branch: no rows, and no word of an index to make."""
    assert results.listing() == ([], [])
    assert results.listing(children=True) == ([], [])


def test_a_row_is_replaced_when_its_run_is_written_again(results: ResultsBranch) -> None:
    uid = new_uid()
    results.write(_record(uid, accuracy=0.1))
    results.write(_record(uid, accuracy=0.2))
    assert [row.results["accuracy"] for row in results.listing().rows] == [0.2]


def test_listing_reads_no_record(results: ResultsBranch) -> None:
    uids = [new_uid() for _ in range(20)]
    for uid in uids:
        results.write(_record(uid))
    results.store.commit({f"{run_folder(uid)}/run.yaml": b"not: [a record" for uid in uids},
                         "records broken by hand, the index intact")
    assert sorted(row.uid for row in results.listing().rows) == sorted(uids)


def test_an_older_branch_is_read_from_its_records_until_reindexed(results: ResultsBranch) -> None:
    old = [f"{n:011x}abcdef" for n in range(3)]  # uids as older runyards made them
    results.store.commit({f"{run_folder(uid)}/run.yaml": _record(uid).to_yaml() for uid in old},
                         "records written before there was an index")
    newer = new_uid()
    results.write(_record(newer))
    listing = results.listing()
    assert not results.indexed()
    assert "no index" in listing.problems[0] and "runyard runs reindex" in listing.problems[0]
    assert sorted(row.uid for row in listing.rows) == sorted([*old, newer])
    reindexed = results.reindex()
    assert reindexed.problems == [] and results.indexed()
    assert results.listing() == (reindexed.rows, [])
    assert results.find(old[0][:12]) == old[0]


def test_a_broken_index_or_record_is_named_and_the_rest_is_listed(results: ResultsBranch) -> None:
    uids = [new_uid() for _ in range(4)]
    for uid in uids:
        results.write(_record(uid))
    broken = index.shard_path(index.row_of(_record(uids[0])))
    results.store.commit({broken: b'{"version": 2, "rows": [[1, 2]]}',
                          f"{run_folder(uids[1])}/run.yaml": b"kind: run\n"}, "edited by hand")
    listing = results.listing()
    assert "cannot be read" in listing.problems[0]
    assert any(run_folder(uids[1]) in problem for problem in listing.problems[1:])
    assert sorted(row.uid for row in listing.rows) == sorted(set(uids) - {uids[1]})
    results.write(_record(uids[0]))  # writing over a broken shard mends it
    assert results.reindex().problems != [] and results.listing().problems == []


def test_short_prefixes_find_a_run_in_one_shard(results: ResultsBranch) -> None:
    uids = [new_uid() for _ in range(200)]
    assert len({uid[:2] for uid in uids}) > 100  # uids do not share their leading characters
    for uid in uids[:40]:
        results.write(_record(uid))
    for uid in uids[:40]:
        shortest = next(uid[:n] for n in range(2, 17)
                        if sum(other.startswith(uid[:n]) for other in uids[:40]) == 1)
        assert results.find(shortest) == uid
    with pytest.raises(RunyardError, match="no run"):
        results.find("zz")  # not hex: no uid has it
    twins = ["zy" + new_uid()[2:] for _ in range(2)]
    for uid in twins:
        results.write(_record(uid))
    with pytest.raises(RunyardError, match=r"2 runs .* starting 'zy'"):
        results.find("zy")


def test_the_index_and_its_records_land_in_one_commit(results: ResultsBranch) -> None:
    uid = new_uid()
    results.write(_record(uid))
    changed = git(results.store.git_dir.parent, "show", "--name-only", "--format=", BRANCH).split()
    assert f"{run_folder(uid)}/run.yaml" in changed
    assert index.shard_path(index.row_of(_record(uid))) in changed


def test_runs_reindex_from_the_command_line(results: ResultsBranch, tmp_path: Path) -> None:
    from tests.helpers.gitops import runyard

    with closing(results):
        results.store.commit({f"{run_folder(u)}/run.yaml": _record(u).to_yaml()
                              for u in (new_uid(), new_uid())}, "older records")
    repo = results.store.git_dir.parent
    listed = runyard("runs", "list", "--branch", BRANCH, cwd=repo)
    assert listed.returncode == 0 and "runyard runs reindex" in listed.stderr
    done = runyard("runs", "reindex", "--branch", BRANCH, cwd=repo)
    assert done.returncode == 0 and "indexed 2 runs" in done.stdout, done.stderr
    listed = runyard("runs", "list", "--branch", BRANCH, cwd=repo)
    assert listed.returncode == 0 and listed.stderr == "" and listed.stdout.count("tune") == 2


def test_a_shown_prefix_is_unique_among_children_too(results: ResultsBranch) -> None:
    top, child = "abcdef1200000000", "abcdef1299999999"
    results.write(_record(top))
    results.write(_record(child, parent=top, iteration=1))
    assert results.short_prefixes([top]) == {top: "abcdef120"}
    assert results.listing().rows[0].uid == top and len(results.listing().rows) == 1
    assert {row.uid for row in results.listing(children=True).rows} == {top, child}
    assert results.find("abcdef129") == child


def test_a_retried_commit_keeps_only_what_its_last_attempt_derived(results: ResultsBranch) -> None:
    store = results.store
    store.commit({"index/seed": b"1"}, "a first commit")
    calls: list[str | None] = []
    other = GitStore(store.git_dir, results.branch)  # another runner's

    def derive(base: AtCommit) -> dict[str, bytes | None]:
        calls.append(base.commit)
        if len(calls) == 1:  # another writer lands between this attempt and its move
            other.commit({"index/other": b"2"}, "a concurrent writer")
            return {"index/first-attempt": b"stale"}
        return {"index/last-attempt": b"fresh"}

    try:
        store.commit({"index/given": b"3"}, "derived", derived=derive)
    finally:
        other.close()
    assert len(calls) == 2 and calls[0] != calls[1]
    assert store.read("index/last-attempt") == b"fresh" and store.read("index/given") == b"3"
    assert store.read("index/other") == b"2" and store.read("index/first-attempt") is None
