"""runner.git, the one module that starts git: real repositories, bare and not."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runner import git as rgit
from runner.errors import RunyardError
from runner.record import gitstore
from runner.record.gitstore import GitStore
from runner.record.results import ResultsBranch, run_folder
from tests.helpers import bare_clone, commit_all, git, make_repo


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A repository with a work tree, a file in a sub-folder, and two commits."""
    repo = make_repo(tmp_path / "work")
    (repo / "sub" / "deep").mkdir(parents=True)
    (repo / "sub" / "deep" / "file.txt").write_text("one\n")
    commit_all(repo, "one")
    (repo / "sub" / "deep" / "file.txt").write_text("two\n")
    commit_all(repo, "two")
    return repo


def _cat_files(git_dir: Path, what: bytes = b"cat-file") -> list[int]:
    """The `git cat-file` (or `what`) processes on `git_dir` this test process has started
    and not reaped."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in _read(task / "children").split():
            args = _read(Path(f"/proc/{pid.decode()}/cmdline")).split(b"\0")
            if what in args and str(git_dir).encode() in args:
                found.append(int(pid))
    return found


def _read(path: Path) -> bytes:
    """A file of /proc, or nothing when its thread or process has ended meanwhile."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def test_finds_the_repository_from_a_subfolder(work: Path) -> None:
    found = rgit.find_repository(work / "sub" / "deep")
    assert found == rgit.Location(rgit.Repository(work.resolve() / ".git", work.resolve()), "sub/deep")
    assert rgit.find_repository(work) == rgit.Location(found.repository, "")
    assert not found.repository.bare


def test_finds_a_bare_repository_from_inside_it(work: Path, tmp_path: Path) -> None:
    bare = bare_clone(work, tmp_path / "bare.git").resolve()
    for path in (bare, bare / "refs" / "heads"):
        assert rgit.find_repository(path) == rgit.Location(rgit.Repository(bare, None), "")
    assert rgit.open_repository(bare).bare
    assert rgit.find_repository(tmp_path / "nowhere") is None
    with pytest.raises(RunyardError, match="is not a git repository"):
        rgit.open_repository(tmp_path)


def test_a_git_dir_in_the_environment_does_not_leak(work: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a post-receive hook of another repository: GIT_DIR and friends point elsewhere."""
    other = make_repo(tmp_path / "other")
    (other / "x").write_text("x\n")
    elsewhere = commit_all(other, "elsewhere")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(other / ".git" / "objects"))
    git_dir = work / ".git"
    assert rgit.find_repository(work / "sub") == rgit.Location(
        rgit.Repository(git_dir.resolve(), work.resolve()), "sub")
    head = git(work, "rev-parse", "HEAD").strip()  # the helper drops every GIT_* variable
    assert rgit.commit_of(git_dir, "HEAD") == head != elsewhere
    with rgit.ObjectReader(git_dir) as reader:
        assert reader.blob(head, "sub/deep/file.txt") == b"two\n"
    assert [entry.path for entry in rgit.list_tree(git_dir, "HEAD") or []] == ["sub"]


def test_one_reader_process_for_many_reads_closed_after(work: Path) -> None:
    git_dir = work / ".git"
    with rgit.ObjectReader(git_dir) as reader:
        assert _cat_files(git_dir) == []  # started by the first read, not before
        for _ in range(100):
            assert reader.blob("HEAD~1", "sub/deep/file.txt") == b"one\n"
            assert reader.blob("HEAD", "sub/deep/nothing") is None
            assert reader.blob("HEAD", "sub") is None  # a folder is no file
        assert len(_cat_files(git_dir)) == 1
        big = reader.read("HEAD:sub/deep/file.txt", limit=2)
        assert big == rgit.GitObject("blob", 4, None)  # not read: over the limit
        assert reader.blob("HEAD", "sub/deep/file.txt") == b"two\n"
    assert _cat_files(git_dir) == []


def test_the_results_branch_reads_through_one_process(work: Path) -> None:
    git_dir = work / ".git"
    results = ResultsBranch(git_dir, "results")
    uids = [f"{n:011x}abcdef" for n in range(20)]
    results.store.commit({f"{run_folder(uid)}/log.txt": uid.encode() for uid in uids}, "logs")
    try:
        assert sorted(results.log(uid) for uid in results.uids()) == [uid.encode() for uid in uids]
        assert len(_cat_files(git_dir)) == 1
    finally:
        results.close()
    assert _cat_files(git_dir) == []


def test_many_reads_at_once_read_what_one_read_each_would(work: Path) -> None:
    """Over _LISTED_OVER paths, the store finds objects through a listing of their folders:
    the same answers as a read each, for files, folders, missing paths and older commits."""
    git_dir = work / ".git"
    results = ResultsBranch(git_dir, "results")
    store = results.store
    first = store.commit({f"runs/{n % 7}/{n}/run.yaml": f"run {n}".encode() for n in range(100)}, "one")
    store.commit({"runs/0/0/run.yaml": b"changed", "runs/0/0/log.txt": b"log", "top": b"t"}, "two")
    paths = [f"runs/{n % 7}/{n}/run.yaml" for n in range(100)] + [
        "runs/0/0/log.txt", "runs/0/1/run.yaml", "runs/0", "runs", "top", "nowhere/x",
        "runs/0/0/run.yaml/deeper", "runs/../top"]
    try:
        for commit in (None, first):
            assert len(paths) > gitstore._LISTED_OVER
            assert store.read_all(paths, commit) == [store.read(path, commit) for path in paths]
        assert store.read_all(paths)[0] == b"changed"
        assert store.read_all(paths, first)[0] == b"run 0"
    finally:
        results.close()


def test_the_reader_resolves_a_commit_as_rev_parse_does(work: Path) -> None:
    git_dir = work / ".git"
    git(work, "tag", "-a", "-m", "a tag", "v1", "HEAD~1")
    tree = git(work, "rev-parse", "HEAD^{tree}").strip()
    with rgit.ObjectReader(git_dir) as reader:
        for revision in ("HEAD", "HEAD~1", "v1", "main", tree, "nowhere", "HEAD~9", "-h",
                         "HEAD..HEAD~1", "HEAD:sub"):
            assert reader.commit_of(revision) == rgit.commit_of(git_dir, revision), revision
        assert reader.commit_of("v1") is not None and reader.commit_of(tree) is None
        assert reader.tree_of("HEAD") == tree and reader.tree_of("v1") != tree
        assert reader.tree_of("nowhere") is None
        assert reader.blob("HEAD", "sub/deep/file.txt") == b"two\n"  # still in step


@pytest.mark.parametrize("packed", [False, True])
def test_a_folder_of_the_results_branch_is_listed_as_git_lists_it(work: Path, packed: bool) -> None:
    git_dir = work / ".git"
    results = ResultsBranch(git_dir, "results")
    files = {"index/running/b2": b"x", "index/running/a1": b"y", "index/running/sub/c": b"z",
             "index/last": b"w", "top": b"t"}
    results.store.commit(files, "files")
    if packed:  # the trees are then read through git cat-file
        git(work, "gc", "-q")
        assert not list((git_dir / "objects").glob("??/*"))
    try:
        for folder in ("", "index", "index/running", "index/running/sub", "top", "nowhere",
                       "index/nowhere/deeper"):
            listed = rgit.list_tree(git_dir, f"results:{folder}") or []
            expected = sorted(entry.path for entry in listed) if folder != "top" else []
            assert results.store.list(folder) == expected, folder
        assert results.running() == {"a1": "y", "b2": "x", "sub": ""}
    finally:
        results.close()


def test_compare_and_swap_refuses_a_stale_old_value(work: Path) -> None:
    git_dir = work / ".git"
    one, two = (rgit.commit_of(git_dir, revision) for revision in ("HEAD~1", "HEAD"))
    assert one and two
    assert rgit.update_ref(git_dir, "refs/heads/cas", one, None)
    assert not rgit.update_ref(git_dir, "refs/heads/cas", two, None)  # it exists now
    assert rgit.update_ref(git_dir, "refs/heads/cas", two, one)
    assert not rgit.update_ref(git_dir, "refs/heads/cas", one, one)  # one is stale
    assert rgit.commit_of(git_dir, "cas") == two


def test_refs_move_through_one_process_and_a_lost_race_is_told(work: Path) -> None:
    git_dir = work / ".git"
    one, two = (rgit.commit_of(git_dir, revision) for revision in ("HEAD~1", "HEAD"))
    assert one and two
    mover = rgit.RefMover(git_dir)
    try:
        assert _cat_files(git_dir, b"update-ref") == []  # started by the first move
        assert mover.move("refs/heads/cas", one, None)
        assert not mover.move("refs/heads/cas", two, None)  # it exists now
        assert mover.move("refs/heads/cas", two, one)
        assert not mover.move("refs/heads/cas", one, one)  # one is stale
        assert rgit.commit_of(git_dir, "cas") == two
        for _ in range(20):
            assert mover.move("refs/heads/cas", one, two) and mover.move("refs/heads/cas", two, one)
        assert len(_cat_files(git_dir, b"update-ref")) == 1
        assert not (git_dir / "refs" / "heads" / "cas.lock").exists()
    finally:
        mover.close()
    assert _cat_files(git_dir, b"update-ref") == []
    assert rgit.commit_of(git_dir, "cas") == two



def test_threads_of_one_process_commit_in_turn_without_losing_a_race(work: Path) -> None:
    """Trials of one runner write records at once: none is lost, and none races another
    for the ref (a lost race would end the update-ref process and build the commit again)."""
    git_dir = work / ".git"
    store = GitStore(git_dir, "results")
    try:
        store.commit({"first": b"0"}, "first")
        (mover,) = _cat_files(git_dir, b"update-ref")
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: store.commit({f"t/{n}": str(n).encode()}, f"write {n}"),
                          range(40)))
        assert _cat_files(git_dir, b"update-ref") == [mover]  # the same process all along
        assert store.files("t") == sorted(str(n) for n in range(40))
        assert git(work, "rev-list", "--count", "results").strip() == "41"
    finally:
        store.close()

def test_config_and_symbolic_ref(work: Path) -> None:
    git_dir = work / ".git"
    rgit.set_config(git_dir, "runyard.allowSecret", ["A", "B"])
    rgit.set_config(git_dir, "runyard.allowSecret", ["C", "with space"])
    assert rgit.read_config(git_dir, r"^runyard\.") == [
        ("runyard.allowsecret", "C"), ("runyard.allowsecret", "with space")]
    assert rgit.symbolic_ref(git_dir) == "refs/heads/main"
    assert rgit.changed_paths(git_dir, "HEAD~1", "HEAD", "sub") == ["deep/file.txt"]
