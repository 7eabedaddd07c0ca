"""The trust boundary's parts, one by one: the operator's policy, reading outputs,
resolving inputs, secrets, the bounded scratch and the runner's identity.

The hostile pushes that go through all of them at once are in test_hostile_push.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.errors import RunyardError
from runner.git import open_repository
from runner.project.model import Limits
from runner.project.policy import Policy, policy_from, registry_host
from runner.project.source import GitSource
from runner.record.artifacts import ArtifactStore
from runner.record.gitstore import AtCommit, GitStore
from runner.record.owner import Owner
from runner.record.results import ResultsBranch
from runner.run import scratch
from runner.run.execute import _Log
from runner.run.inputs import resolve_input
from runner.run.outputs import read_outputs
from runner.run.secrets import Secrets
from runner.run.snapshot import make_snapshot
from tests.helpers import commit_all, git, make_repo, sha256

SMALL = Limits(results=1000, artifact=5000, disk=64 << 20)

# --- the operator's policy ------------------------------------------------------------------


def test_strict_policy_refuses_what_widens_a_run() -> None:
    policy = Policy()
    assert not policy.allows_secret("HOME")
    assert not policy.allows_file(Path("/etc/shadow"))
    for address in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:127.0.0.1", "fd00::1"):
        assert not policy.allows_address(address), address
    assert policy.allows_address("93.184.216.34")
    for image in ("runyard/other:abc", "docker.io/runyard/other:abc", "index.docker.io/runyard/x:1",
                  "a" * 64, "sha256:" + "a" * 64, "6c9d5658fbf5"):
        assert policy.base_image_refusal(image) is not None, image
    assert policy.base_image_refusal("python:3.11-slim") is None
    assert policy.base_image_refusal("docker.io/library/python:3.11-slim") is None
    assert policy.base_image_refusal("python:3.11-slim", built_by="other") is not None
    assert Policy(base_images=("python:*",)).base_image_refusal("docker.io/library/python:3") is None
    assert Policy(base_images=("python:*",)).base_image_refusal("debian:12") is not None
    assert Policy.personal().base_image_refusal("runyard/other:abc", built_by="other") is None


def test_the_registry_host_of_an_image_as_docker_reads_it() -> None:
    hosts = {"python:3.11-slim": None, "library/python": None, "runyard/x:1": None,
             "localhost/x": "localhost", "127.0.0.1:5000/a/b:c": "127.0.0.1", "127.1:80/x": "127.1",
             "[::1]:5000/x": "::1", "registry.internal/x@sha256:" + "a" * 64: "registry.internal",
             "docker.io/library/python": "docker.io"}
    assert {image: registry_host(image) for image in hosts} == hosts


def test_policy_from_settings_and_its_errors() -> None:
    policy = policy_from({"allowsecret": ["A", "B"], "allowfiles": ["/data"], "maxdisk": ["1Gi"],
                          "allowhostnetwork": ["true"], "buildtimeout": ["10m"],
                          "allowprivatenetwork": ["true"]}, "here")
    assert policy.secrets == frozenset({"A", "B"})
    assert policy.private_network and not Policy().private_network and Policy.personal().private_network
    assert policy.allows_file(Path("/data/x.csv")) and not policy.allows_file(Path("/datax"))
    assert policy.limits.disk == 1 << 30 and policy.host_network and policy.build_timeout == 600
    with pytest.raises(RunyardError, match=r"unknown setting runyard\.alloweverything"):
        policy_from({"alloweverything": ["true"]}, "here")
    for key in ("maxdisk", "buildmemory"):  # a size, not only memory, and said so
        with pytest.raises(RunyardError) as caught:
            policy_from({key: ["1Gb"]}, "here")
        assert str(caught.value) == (f"here: runyard.{key}: value '1Gb' is not a size: use a "
                                     "number of bytes or 512Mi, 2Gi, 1G")
    with pytest.raises(RunyardError, match="not true or false"):
        policy_from({"allowhostnetwork": ["maybe"]}, "here")


def test_runs_at_once_are_the_operators() -> None:
    assert Policy().max_runs == 16 and Policy.personal().max_runs is None
    assert policy_from({"maxruns": ["3"]}, "here").max_runs == 3
    for bad in ("0", "-1", "lots"):
        with pytest.raises(RunyardError, match=r"runyard\.maxruns"):
            policy_from({"maxruns": [bad]}, "here")


def test_project_limits_stay_within_the_operators() -> None:
    assert Limits(results=10, artifact=1 << 40).within(SMALL) == Limits(
        results=10, artifact=5000, disk=SMALL.disk, log=SMALL.log)


# --- what a run leaves ----------------------------------------------------------------------


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    folder = tmp_path / "outputs"
    (folder / "artifacts").mkdir(parents=True)
    return folder


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore("store", tmp_path)


def _leave(outputs: Path, results: object = None, artifacts: object = None) -> None:
    if results is not None:
        (outputs / "results.json").write_text(json.dumps(results))
    if artifacts is not None:
        (outputs / "artifacts.json").write_text(json.dumps(artifacts))


def test_regular_outputs_are_stored(outputs: Path, store: ArtifactStore) -> None:
    (outputs / "artifacts" / "model").mkdir()
    (outputs / "artifacts" / "model" / "model.bin").write_bytes(b"weights")
    (outputs / "artifacts" / "tree" / "sub").mkdir(parents=True)
    (outputs / "artifacts" / "tree" / "sub" / "a.txt").write_bytes(b"a")
    _leave(outputs, {"accuracy": 0.9}, [
        {"key": "model", "kind": "model", "path": "model/model.bin", "format": "bin"},
        {"key": "tree", "kind": "file", "path": "tree", "format": None}])
    read = read_outputs(outputs, store, SMALL)
    assert read.refusal is None and read.results == {"accuracy": 0.9}
    model, tree = read.artifacts
    assert model.hash == sha256(b"weights") and model.size == 7
    assert tree.format == "tar" and store.has(tree.hash)
    assert not os.access(store.local_path(model.hash), os.W_OK) or os.geteuid() == 0
    assert store.local_path(model.hash).stat().st_mode & 0o222 == 0  # nobody writes it


@pytest.mark.parametrize("make", ["results-link", "artifact-link", "folder-link", "fifo", "nested-link"])
def test_links_and_pipes_are_refused_not_followed(outputs: Path, store: ArtifactStore,
                                                  tmp_path: Path, make: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("marker-of-the-host")
    if make == "results-link":
        (outputs / "results.json").symlink_to(secret)
    elif make == "fifo":
        os.mkfifo(outputs / "results.json")
    elif make == "artifact-link":
        (outputs / "artifacts" / "a").mkdir()
        (outputs / "artifacts" / "a" / "x").symlink_to(secret)
        _leave(outputs, {}, [{"key": "a", "kind": "file", "path": "a/x"}])
    elif make == "folder-link":
        (outputs / "artifacts" / "a").symlink_to(tmp_path)
        _leave(outputs, {}, [{"key": "a", "kind": "file", "path": "a/secret"}])
    else:
        (outputs / "artifacts" / "tree").mkdir()
        (outputs / "artifacts" / "tree" / "x").symlink_to(secret)
        _leave(outputs, {}, [{"key": "tree", "kind": "file", "path": "tree"}])
    read = read_outputs(outputs, store, SMALL)  # a pipe must not hang this
    assert read.refusal is not None and read.artifacts == ()
    assert not list((tmp_path / "store").rglob("*")) or all(
        b"marker-of-the-host" not in p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())


@pytest.mark.parametrize("entry", [
    {"key": "../../x", "path": "x"}, {"key": "a//b", "path": "x"}, {"key": ".git", "path": "x"},
    {"key": "a/b", "path": "x"}, {"key": "k" * 300, "path": "x"}, {"key": 7, "path": "x"},
    {"key": "ok", "path": "../x"}, {"key": "ok", "path": "/etc/passwd"}, {"key": "ok", "path": "a//x"},
    {"key": "ok", "path": "x", "kind": "a\nb"}, {"key": "ok", "path": "x", "format": "../p"},
    "not an object",
])
def test_bad_artifact_entries_are_refused(outputs: Path, store: ArtifactStore, entry: object) -> None:
    (outputs / "artifacts" / "x").write_bytes(b"x")
    _leave(outputs, {}, [entry])
    read = read_outputs(outputs, store, SMALL)
    assert read.refusal is not None and read.artifacts == ()


def test_oversize_outputs_are_refused(outputs: Path, store: ArtifactStore) -> None:
    _leave(outputs, {"big": "x" * 2000})
    assert "results.json is over the limit" in str(read_outputs(outputs, store, SMALL).refusal)
    _leave(outputs, {}, [{"key": "big", "kind": "file", "path": "big"}])
    (outputs / "artifacts" / "big").write_bytes(b"x" * 6000)
    assert "over the limit of 5000 bytes" in str(read_outputs(outputs, store, SMALL).refusal)
    assert not list(store.root.rglob("sha256/*/*"))  # nothing of it was kept


def test_a_handler_that_removed_a_listed_artifact_just_loses_it(outputs: Path,
                                                                 store: ArtifactStore) -> None:
    _leave(outputs, {"a": 1}, [{"key": "gone", "kind": "file", "path": "gone/x"}])
    (outputs / "artifacts" / "gone").mkdir()
    read = read_outputs(outputs, store, SMALL)
    assert read.refusal is None and read.results == {"a": 1} and read.artifacts == ()


# --- inputs ---------------------------------------------------------------------------------


class _Server:
    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def loopback() -> Iterator[_Server]:
    server = _Server(b"a token of the host's localhost")
    yield server
    server.server.shutdown()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0x7f000001",
                                  "2130706433", "127.1"])
def test_urls_reaching_loopback_are_refused(loopback: _Server, store: ArtifactStore,
                                            tmp_path: Path, host: str) -> None:
    with pytest.raises(RunyardError, match=r"private address|could not be fetched"):
        resolve_input("x", f"http://{host}:{loopback.port}/t", tmp_path, store, None, Policy())
    assert not store.root.exists() or not list(store.root.rglob("sha256/*/*"))


def test_urls_reaching_loopback_are_fetched_where_the_operator_allows(
        loopback: _Server, store: ArtifactStore, tmp_path: Path) -> None:
    allowed = Policy(private_urls=True)
    got = resolve_input("x", f"http://127.0.0.1:{loopback.port}/t.csv", tmp_path, store, None, allowed)
    assert got.hash == sha256(b"a token of the host's localhost") and got.filename == "t.csv"


def test_host_files_only_under_allowed_folders_and_never_through_links(
        store: ArtifactStore, tmp_path: Path) -> None:
    allowed = tmp_path / "data"
    allowed.mkdir()
    (allowed / "ok.csv").write_text("a\n1\n")
    private = tmp_path / "private"
    private.write_text("marker")
    (allowed / "link.csv").symlink_to(private)
    policy = Policy(file_inputs=(str(allowed),))
    assert resolve_input("x", f"file://{allowed}/ok.csv", tmp_path, store, None, policy).size == 4
    for uri in (f"file://{private}", f"file://{allowed}/link.csv", f"file://{allowed}/../private",
                "file://relative/path"):
        with pytest.raises(RunyardError):
            resolve_input("x", uri, tmp_path, store, None, policy)
    with pytest.raises(RunyardError, match="does not read host files"):
        resolve_input("x", f"file://{allowed}/ok.csv", tmp_path, store, None, Policy())


@pytest.mark.parametrize("uri", ["store://sha256:../../../etc/passwd", "store://sha256:" + "A" * 64,
                                 "store://sha256:abc", "store://md5:" + "a" * 64, "ftp://example.com/x",
                                 "src/../../outside", "link.csv"])
def test_inputs_never_leave_the_store_or_the_snapshot(store: ArtifactStore, tmp_path: Path,
                                                      uri: str) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "link.csv").symlink_to("/etc/passwd")
    with pytest.raises(RunyardError):
        resolve_input("x", uri, code, store, None, Policy.personal())


# --- the code a run sees -------------------------------------------------------------------


def _snapshot(repo: Path, revision: str, dest: Path, limit: int | None = None) -> Path:
    source = GitSource(open_repository(repo / ".git"), revision)
    try:
        return make_snapshot(source, dest, limit)
    finally:
        source.close()


def test_a_snapshot_past_its_limit_is_refused_before_a_file_is_written(tmp_path: Path) -> None:
    """Files of more bytes in all than the run may have on disk: refused, nothing written;
    the same files within the limit are written."""
    repo = make_repo(tmp_path / "repo")
    (repo / "a.txt").write_bytes(b"a" * 1000)
    (repo / "zeros.bin").write_bytes(bytes(3 << 20))  # git keeps it in some 3 KiB
    revision = commit_all(repo, "zeros")
    with pytest.raises(RunyardError, match=r"its files hold more than 2 MiB, what a run may "
                                           r"have on disk .*: the code is not unpacked"):
        _snapshot(repo, revision, tmp_path / "refused", 2 << 20)
    assert list((tmp_path / "refused").iterdir()) == []
    code = _snapshot(repo, revision, tmp_path / "code", (3 << 20) + 1000)
    assert (code / "zeros.bin").stat().st_size == 3 << 20


def test_a_snapshot_holds_the_committed_bytes_whatever_gitattributes_asks(tmp_path: Path) -> None:
    """No `.gitattributes` of the revision changes the snapshot (export-subst, export-ignore,
    ident, eol), and no filter driver of the runner's git config runs on it."""
    repo = make_repo(tmp_path / "repo")
    ran = tmp_path / "filter-ran"
    git(repo, "config", "filter.probe.smudge", f"touch {ran}; cat")
    files = {"subst.txt": b"$Format:%H %d$\n", "ignored.txt": b"kept\n", "ident.txt": b"$Id$\nx\n",
             "filtered.txt": b"pointer\n", "run.sh": b"#!/bin/sh\n"}
    for name, data in files.items():
        (repo / name).write_bytes(data)
    (repo / ".gitattributes").write_text("subst.txt export-subst\nignored.txt export-ignore\n"
                                         "ident.txt ident eol=crlf\nfiltered.txt filter=probe\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "sub").mkdir()
    (repo / "sub" / "link.txt").symlink_to("../ignored.txt")
    revision = commit_all(repo, "attributes")
    code = _snapshot(repo, revision, tmp_path / "code")
    assert {name: (code / name).read_bytes() for name in files} == files
    assert os.readlink(code / "sub" / "link.txt") == "../ignored.txt"
    assert os.access(code / "run.sh", os.X_OK) and not os.access(code / "ignored.txt", os.X_OK)
    assert not ran.exists(), "a filter of the runner's git config ran on the pushed tree"


def _crafted_commit(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """A commit of a tree git would never write, of (mode, object, name) entries."""
    body = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid) for mode, oid, name in entries)
    done = subprocess.run(["git", "hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
                          cwd=repo, input=body, capture_output=True, check=True)
    return git(repo, "commit-tree", "-m", "crafted", done.stdout.decode().strip()).strip()


@pytest.mark.parametrize("case", ["dot-dot-folder", "absolute-link", "link-out-then-folder"])
def test_a_crafted_tree_never_writes_outside_its_snapshot(tmp_path: Path, case: str) -> None:
    """Trees that a push may carry (receive.fsckObjects is off by default) with a `..`
    entry, an absolute link, or a link out and a folder of the same name after it: the
    first two are refused; the last is the folder, as the checks read the tree. Nothing
    ever lands outside the snapshot."""
    repo = make_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    blob = git(repo, "hash-object", "-w", "--stdin", stdin="planted\n").strip()
    inner = git(repo, "mktree", stdin=f"100644 blob {blob}\tplanted.txt\n").strip()
    link_out = git(repo, "hash-object", "-w", "--stdin", stdin=str(outside)).strip()
    entries = {"dot-dot-folder": [("40000", inner, "..")],
               "absolute-link": [("120000", link_out, "a")],
               "link-out-then-folder": [("120000", link_out, "a"), ("40000", inner, "a")]}[case]
    code = tmp_path / "work" / "code"
    if case == "link-out-then-folder":
        _snapshot(repo, _crafted_commit(repo, entries), code)
        assert not (code / "a").is_symlink() and (code / "a" / "planted.txt").read_text() == "planted\n"
    else:
        with pytest.raises(RunyardError, match=r"outside|links out"):
            _snapshot(repo, _crafted_commit(repo, entries), code)
    assert list(outside.iterdir()) == [] and not (tmp_path / "work" / "planted.txt").exists()


# --- secrets --------------------------------------------------------------------------------


def test_only_allowed_secrets_are_available_and_every_form_is_masked() -> None:
    environ = {"TOKEN": "s3cr3t/v+lue", "OTHER": "nope"}
    secrets = Secrets.available(["TOKEN", "OTHER", "UNSET"], Policy(secrets=frozenset({"TOKEN"})),
                                environ)
    assert dict(secrets.values) == {"TOKEN": "s3cr3t/v+lue"}
    value = "s3cr3t/v+lue"
    shown = {"plain": value, "in text": f"error: {value}!",
             "base64": base64.b64encode(value.encode()).decode(), "hex": value.encode().hex(),
             "url": "s3cr3t%2Fv%2Blue", value: [value, 1]}
    masked = json.dumps(secrets.mask(shown))
    assert "s3cr3t" not in masked and value.encode().hex() not in masked
    assert b"s3cr3t" not in secrets.mask_bytes(f"log: {value}\n".encode())
    assert Secrets.available(["TOKEN"], Policy(), environ).values == {}


SECRET_VALUE = "ryh-s3cr3t/v+lue-0123456789abcdefXY"  # 35 bytes: its base64 ends mid-group
PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu\n-----END PRIVATE KEY-----")


def _printed(value: str) -> dict[str, tuple[str, str]]:
    """How a handler prints a secret by accident: the text, and the part of it that comes
    from the secret's bytes alone (what must not survive masking)."""
    raw = value.encode()

    def b64(data: bytes, skip: int, url: bool = False) -> tuple[str, str]:
        text = (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()
        return text, text[skip:][4:-8]

    return {"echo | base64": b64(raw + b"\n", 0), "basic auth": b64(b"u:" + raw, 3),
            "after one byte": b64(b"u" + raw + b"!", 2), "base64url": b64(b"u" + raw, 2, url=True),
            "hex, upper case": (raw.hex().upper(), raw.hex().upper()[4:-4])}


def test_a_secret_printed_by_accident_is_masked_in_any_alignment() -> None:
    """A secret in base64 that does not start at a 3-byte boundary of what is encoded, or is
    followed by more bytes (`echo $S | base64`, HTTP basic auth), in base64url, in upper-case
    hex: the part that comes from the secret is masked, in a log line and in a record."""
    secrets = Secrets({"TOKEN": SECRET_VALUE})
    for how, (text, inner) in _printed(SECRET_VALUE).items():
        line = secrets.mask_bytes(f"Authorization: {text}\n".encode()).decode()
        assert inner not in line and "***" in line, (how, line)
        assert inner not in json.dumps(secrets.mask({"header": text})), how


def test_a_secret_across_the_cuts_of_an_endless_line_is_masked() -> None:
    """Output with no newline is cut into pieces of the log limit as it comes: a secret
    that straddles a cut, wherever it falls and however the chunks arrive, is masked whole,
    in the lines passed on and in the log kept."""
    secrets = Secrets({"TOKEN": SECRET_VALUE})
    raw = SECRET_VALUE.encode()
    limit = 64
    for offset in range(limit - len(raw), limit + 2):
        emitted: list[str] = []
        log = _Log(secrets, emitted.append, None, limit * 4)
        log.limit = limit  # what a project's small log limit makes it
        output = b"x" * offset + raw + b"y" * (3 * limit) + raw + b"z" * 5
        for start in range(0, len(output), 7):  # in chunks that split the secret too
            log.feed(output[start:start + 7])
        kept, _ = log.text()
        assert raw not in kept and SECRET_VALUE[:8] not in "".join(emitted), offset
        assert "".join(emitted).count("***") == 2 and kept.endswith(b"***zzzzz\n"), offset


def test_a_secret_of_many_lines_is_masked_line_by_line() -> None:
    """A secret of several lines (a private key) reaches a log one line at a time, or a
    result holds one of its lines: each line of it is masked on its own."""
    secrets = Secrets({"KEY": PEM})
    logged = b"".join(secrets.mask_bytes(line.encode()) + b"\n" for line in f"key:\n{PEM}\n".splitlines())
    masked = json.dumps(secrets.mask({"second": PEM.splitlines()[1]})) + logged.decode()
    for line in PEM.splitlines():
        assert line not in masked, line
    assert Secrets({"SHORT": "ab\ncd"}).mask("ab cd abc") == "ab cd abc"  # no piece alone that short


# --- the records' tree, the scratch, the runner ---------------------------------------------


@pytest.mark.parametrize("path", ["a//b", "../x", "runs/./x", "x/.git/y", "x/.GIT", "", "a/"])
def test_the_results_branch_never_gets_a_path_git_fsck_rejects(tmp_path: Path, path: str) -> None:
    git(tmp_path, "init", "-q", "--bare")
    with pytest.raises(ValueError, match="not a path for a git tree"):
        GitStore(tmp_path, "results").commit({path: b"x"}, "bad")


def test_a_branch_of_other_files_is_never_written(tmp_path: Path) -> None:
    """A results branch named after a branch of code (or a site): reading it finds no
    records, writing to it is refused, and the branch is left as it was."""
    work = make_repo(tmp_path / "work")
    (work / "project.yaml").write_text("name: x\n")
    (work / "report").mkdir()
    (work / "report" / "index.html").write_text("the project's own page\n")
    code = commit_all(work, "code")
    results = ResultsBranch(work / ".git", "main")
    try:
        assert results.store.strangers() == ["project.yaml"]
        with pytest.raises(RunyardError, match="not a results branch"):
            results.store.commit({"runs/x/run.yaml": b"x"}, "a record")
    finally:
        results.close()
    assert git(work, "rev-parse", "main").strip() == code


def test_a_results_branch_pushed_by_hand_with_a_huge_file_is_never_read_whole(tmp_path: Path) -> None:
    """A pusher may push the results branch itself: a file of 300 MB of zeros (some 300 KB
    in git) where the runner reads a record. Every way the store reads it refuses it (or
    passes it over, among many), and never holds it in memory."""
    work = make_repo(tmp_path / "work")
    git(work, "checkout", "--quiet", "--orphan", "results")
    (work / "pushes").mkdir()
    with (work / "pushes" / "huge.yaml").open("wb") as huge:
        for _ in range(300):
            huge.write(bytes(1_000_000))
    (work / "pushes" / "small.yaml").write_text("small\n")
    commit_all(work, "forged")
    results = ResultsBranch(work / ".git", "results")
    tracemalloc.start()
    try:
        with pytest.raises(RunyardError, match="over the"):
            results.store.read("pushes/huge.yaml")
        assert results.store.read_all(["pushes/huge.yaml", "pushes/small.yaml"]) == [None, b"small\n"]
        with pytest.raises(RunyardError, match="over the"):
            AtCommit(results.store, results.store.head()).read("pushes/huge.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        results.close()
    assert peak < 32 << 20, f"{peak >> 20} MiB held"


def test_removing_files_from_the_results_branch(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare")
    store = GitStore(tmp_path, "results")
    store.commit({"index/running/a": b"1", "keep": b"k"}, "add")
    store.commit({"index/running/a": None}, "remove")
    assert store.list("") == ["keep"]
    git(tmp_path, "fsck", "--strict")


def test_a_scratch_holds_no_more_than_its_size(tmp_path: Path) -> None:
    folder = tmp_path / "scratch"
    assert scratch.make(folder, 32 << 20, tmp_path / "templates")
    try:
        done = subprocess.run(["dd", "if=/dev/zero", f"of={folder / 'work' / 'big'}", "bs=1M",
                               "count=100"], capture_output=True)
        assert done.returncode != 0 and b"No space left" in done.stderr
        assert scratch.is_full(folder)
        assert (tmp_path / "scratch.img").stat().st_blocks * 512 < 40 << 20
    finally:
        scratch.remove(folder)
    assert not folder.exists() and not (tmp_path / "scratch.img").exists()
    assert scratch.mounted_under(tmp_path) == []



def test_scratches_are_copies_of_one_empty_image_and_free_their_loop_devices(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    first, second = tmp_path / "first", tmp_path / "second"
    assert scratch.make(first, 64 << 20, templates)
    (template,) = templates.iterdir()
    made = template.stat()
    try:
        (first / "work" / "left-behind").write_text("from an earlier run")
        assert scratch.make(second, 64 << 20, templates)
        assert template.stat().st_ino == made.st_ino and template.stat().st_mtime == made.st_mtime
        assert sorted(p.name for p in second.iterdir()) == ["outputs", "tmp", "work"]
        assert list((second / "work").iterdir()) == []
        assert oct((second / "tmp").stat().st_mode & 0o7777) == "0o1777"
        options = {point: opts for _, point, _, opts, *_ in
                   (line.split() for line in Path("/proc/self/mounts").read_text().splitlines())}
        assert {"nosuid", "nodev"} <= set(options[str(second)].split(","))
        assert (tmp_path / "second.img").stat().st_blocks * 512 < 8 << 20  # holes stay holes
    finally:
        scratch.remove(first)
        scratch.remove(second)
    assert scratch.mounted_under(tmp_path) == []
    backing = [f.read_text() for f in Path("/sys/block").glob("loop*/loop/backing_file")]
    assert not [b for b in backing if str(tmp_path) in b]  # the kernel freed the devices
    template.write_bytes(b"not a file system")  # damaged: made again, not a scratch unbounded
    try:
        assert scratch.make(tmp_path / "third", 64 << 20, templates)
        assert template.stat().st_size == 64 << 20
    finally:
        scratch.remove(tmp_path / "third")

def test_a_runner_is_lost_once_its_process_is_gone() -> None:
    me = Owner.current()
    assert Owner.parse(str(me)) == me and not me.is_lost()
    assert Owner.from_folder_name(me.folder_name) == me
    child = subprocess.Popen(["true"])
    child.wait()
    gone = Owner(me.host, child.pid, me.started)
    assert gone.is_lost()
    assert not Owner("another-host", child.pid, 1).is_lost()  # other hosts see to their own
    assert Owner.parse("garbage") is None
