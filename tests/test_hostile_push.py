"""The hostile-push suite of issue 9: a pusher tries to get the runner's host out.

`runyard on-push` runs as root, on a server, for everyone who can push. Each test here
pushes a project (tests/projects/hostile, renamed per test, with the jobs of one
attack) to a bare repository of its own whose operator settings (`runyard hook install
--allow-...`) are the test's, and then checks what issue 9 asks of every attack:

- the push is recorded: refused or invalid before anything ran, or run and failed with
  a reason;
- no byte of the host's secrets appears anywhere: not in any object of the repository
  (the results branch included), not in any file of the artifact store, not in what
  the runner printed. The secrets are a root-only file (mode 0600) with a random token,
  a token served by an HTTP server that listens only on the host's loopback, and a token
  in the runner's environment (RY_HOSTILE_SECRET);
- `git fsck --strict` of the repository is clean, and the artifact store is still
  content-addressed (every file hashes to its name);
- the runner finished within a bounded time, and left no container of the project;
- the loopback-only server was never asked for anything the test did not allow.

Real Docker, real git, no mocks. Most pushes are handed to `runyard on-push` directly,
with the `OLD NEW REF` line the post-receive hook would give it; the output-folder
attacks go through the installed hook and a real `git push`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import CHECKOUT, commit_all, copy_project, edit_file, git, make_repo, most_at_once
from tests.helpers.gitops import processed

pytestmark = pytest.mark.docker

PROJECT = CHECKOUT / "tests" / "projects" / "hostile"
BRANCH = "runyard/results"
ZERO = "0" * 40
LIMIT = 120.0  # seconds a push may take, at most, whatever it tries
SECRET = "RY_HOSTILE_SECRET"
SUFFIX = secrets.token_hex(3)
OWN_BYTES = b"the run's own bytes\n"  # what src/hostile.py's handlers write as their own files
MiB = 1 << 20


# --- the host: what must not get out ------------------------------------------------------


class Server:
    """A tiny HTTP server on the host's loopback only (IPv4 and IPv6): `.../token` is a
    secret, `.../public` is harmless; every request is logged with its path."""

    def __init__(self, token: str, public: str) -> None:
        self.token, self.public = token, public
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.servers = [self._serve(http.server.ThreadingHTTPServer, "127.0.0.1")]
        self.servers.append(self._serve(_V6Server, "::1"))

    def _serve(self, kind: type[http.server.ThreadingHTTPServer],
               address: str) -> http.server.ThreadingHTTPServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner.lock:
                    owner.seen.append(self.path)
                body = (owner.token if self.path.endswith("/token") else owner.public
                        if self.path.endswith("/public") else None)
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, *args: Any) -> None:
                pass

        server = kind((address, 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    @property
    def port(self) -> int:
        return int(self.servers[0].server_address[1])

    @property
    def port6(self) -> int:
        return int(self.servers[1].server_address[1])

    def url(self, prefix: str, what: str = "token", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{prefix}/{what}"

    def requests(self, prefix: str) -> list[str]:
        with self.lock:
            return [path for path in self.seen if path.startswith(f"/{prefix}/")]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@dataclass(frozen=True)
class Host:
    """The runner's host as an attacker sees it: secrets to get, and an allowed folder."""

    marker: Path  # root-only file (0600) in a root-only folder
    token: str  # its content
    secret: str  # RY_HOSTILE_SECRET's value in the runner's environment
    allowed: Path  # a folder an operator may allow file:// inputs from (holds harmless.txt)
    harmless: str  # the content of allowed/harmless.txt
    server: Server
    tmp: Path

    def tokens(self) -> dict[str, str]:
        return {"marker file": self.token, "loopback server": self.server.token,
                "runner's secret": self.secret}

    def forms(self) -> dict[bytes, str]:
        """Every token in the forms a handler would print it in: plain, base64, hex."""
        found = {}
        for what, token in self.tokens().items():
            raw = token.encode()
            found[raw] = what
            found[base64.b64encode(raw).rstrip(b"=")] = f"{what} (base64)"
            found[raw.hex().encode()] = f"{what} (hex)"
        return found

    def env(self) -> dict[str, str]:
        """The runner's environment: this one, with the secret in it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        return {**env, SECRET: self.secret, "NO_COLOR": "1", "GIT_CONFIG_NOSYSTEM": "1"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    tmp = tmp_path_factory.mktemp("hostile-host")
    folder = tmp / "root-only"
    folder.mkdir(mode=0o700)
    token = f"ryhmarker{secrets.token_hex(16)}"
    marker = folder / "marker.txt"
    marker.write_text(token)
    marker.chmod(0o600)
    allowed = tmp / "allowed"
    allowed.mkdir()
    harmless = f"harmless {secrets.token_hex(4)}"
    (allowed / "harmless.txt").write_text(harmless)
    (allowed / "link.txt").symlink_to(marker)  # a link in an allowed folder, pointing out
    (allowed / "hostdir").symlink_to(folder)  # a linked folder in an allowed folder
    server = Server(f"ryhserved{secrets.token_hex(16)}", f"public {secrets.token_hex(4)}")
    yield Host(marker, token, f"ryhsecret{secrets.token_hex(16)}", allowed, harmless, server, tmp)
    server.close()


@pytest.fixture(scope="module")
def projects() -> Iterator[list[str]]:
    """The names of the projects pushed here; their images are removed at the end."""
    names: list[str] = []
    yield names
    for name in names:
        ids = _docker("images", "-q", "--filter", f"label=dev.runyard.project={name}").split()
        if ids:
            _docker("rmi", "-f", *sorted(set(ids)), check=False)


# --- pushing -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a push left: its record, every run record, and what the runner printed."""

    name: str
    label: str  # the attack's, also its prefix on the loopback server
    bare: Path
    revision: str
    push: dict[str, Any] | None
    records: list[dict[str, Any]]
    seconds: float
    output: str

    def job(self, job: str) -> dict[str, Any]:
        """The top-level run record of `job`."""
        found = [r for r in self.records
                 if r["metadata"]["job"] == job and not r["metadata"]["parent"]]
        assert len(found) == 1, f"{len(found)} top-level runs of job {job}; push: {self.push}"
        return found[0]

    def trials(self, job: str) -> dict[str, dict[str, Any]]:
        """The child runs of a hyper-parameter `job`, by their `case` parameter."""
        parent = self.job(job)["metadata"]["uid"]
        return {r["spec"]["params"]["resolved"]["case"]: r for r in self.records
                if r["metadata"]["parent"] == parent}

    @property
    def status(self) -> str:
        assert self.push is not None
        return str(self.push["status"])

    @property
    def refused_at_push(self) -> bool:
        """Refused (policy) or invalid (validation) before anything ran, with the problems."""
        return self.push is not None and self.status in ("refused", "invalid") \
            and bool(self.push.get("problems"))


@dataclass
class Attack:
    """A hostile project (a renamed copy of tests/projects/hostile plus `files`) pushed to a
    bare repository of its own, whose operator settings are `settings`."""

    host: Host
    tmp: Path
    label: str
    files: Mapping[str, str | bytes]
    settings: Sequence[str] = ()
    links: Mapping[str, str] = field(default_factory=dict)
    project: str | None = None  # the project's name; by default one of its own
    git_config: Mapping[str, str] = field(default_factory=dict)  # the operator's own, in the bare repo

    @property
    def name(self) -> str:
        return self.project or f"ryh-{self.label}-{SUFFIX}"

    def url(self, what: str = "token", host: str = "127.0.0.1") -> str:
        """A URL of the loopback-only server, under this attack's own prefix."""
        port = self.host.server.port6 if host.startswith("[") else self.host.server.port
        return f"http://{host}:{port}/{self.label}/{what}"

    def prepare(self, *, hook: bool = False) -> tuple[Path, Path, str]:
        """The work clone and the bare repository (hook and settings installed); the commit."""
        work = copy_project(PROJECT, self.tmp / self.label / "work")
        for path, content in self.files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, "utf-8")
        edit_file(work / "project.yaml", "name: ryhostile\n", f"name: {self.name}\n")
        for path, points_to in self.links.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).symlink_to(points_to)
        make_repo(work)
        revision = commit_all(work, f"attack {self.label}")
        bare = self.tmp / self.label / "bare.git"
        git(self.tmp, "init", "--quiet", "--bare", "-b", "main", str(bare))
        if not hook:  # pushed before the hook is there: the test hands the push over itself
            git(work, "push", "--quiet", str(bare), "main")
        installed = runyard("hook", "install", bare, *self.settings, env=self.host.env())
        assert installed.returncode == 0, installed.stdout + installed.stderr
        for key, value in self.git_config.items():
            git(bare, "config", key, value)
        return work, bare, revision

    def run(self, timeout: float = LIMIT) -> Outcome:
        """Push, and hand the push to `runyard on-push` as the hook would (killed after
        `timeout` seconds)."""
        _, bare, revision = self.prepare()
        started = time.monotonic()
        try:
            done = runyard("on-push", "-C", bare, env=self.host.env(), timeout=timeout,
                           stdin=f"{ZERO} {revision} refs/heads/main\n")
            said = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        except subprocess.TimeoutExpired as expired:
            said = f"killed after {timeout:.0f} s\n{_text(expired.stdout)}\n{_text(expired.stderr)}"
        return self.outcome(bare, revision, time.monotonic() - started, said)

    def push_through_hook(self) -> Outcome:
        """A real `git push` to the bare repository, whose hook runs the runner in the
        background; wait for the push record."""
        work, bare, revision = self.prepare(hook=True)
        started = time.monotonic()
        pushed = subprocess.run(["git", "push", "--quiet", str(bare), "main"], cwd=work,
                                env=self.host.env(), capture_output=True, text=True, timeout=60)
        assert pushed.returncode == 0, pushed.stderr
        assert "runyard: processing the push in the background" in pushed.stderr
        log = bare / "runyard" / "on-push.log"
        while processed(push_record(bare, revision)) is None and time.monotonic() - started < LIMIT:
            time.sleep(0.2)
        seconds = time.monotonic() - started
        return self.outcome(bare, revision, seconds, log.read_text(errors="replace")
                            if log.exists() else "(no on-push log)")

    def outcome(self, bare: Path, revision: str, seconds: float, output: str) -> Outcome:
        return Outcome(self.name, self.label, bare, revision, push_record(bare, revision),
                       run_records(bare), seconds, output)


def runyard(*args: str | Path, env: Mapping[str, str] | None = None, stdin: str | None = None,
            timeout: float = LIMIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], input=stdin,
                          env=dict(env) if env is not None else None, capture_output=True,
                          text=True, timeout=timeout, cwd=CHECKOUT)


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert not check or done.returncode == 0, done.stderr
    return done.stdout


def _git_bytes(bare: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "--git-dir", str(bare), *args], input=stdin,
                          capture_output=True, check=True).stdout


def branch_paths(bare: Path, folder: str | None = None) -> list[str]:
    """Every file of the results branch (under `folder`)."""
    done = subprocess.run(["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", BRANCH,
                           *([folder] if folder else [])], capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else []


def read_many(bare: Path, paths: Sequence[str]) -> list[bytes]:
    """The files at `paths` of the results branch, read in one `git cat-file --batch`."""
    if not paths:
        return []
    batch = _git_bytes(bare, "cat-file", "--batch",
                       stdin="".join(f"{BRANCH}:{p}\n" for p in paths).encode())
    found = []
    while batch:
        header, _, batch = batch.partition(b"\n")
        size = int(header.split()[2])
        found.append(batch[:size])
        batch = batch[size + 1:]
    return found


def push_record(bare: Path, revision: str) -> dict[str, Any] | None:
    """The push record of `revision`: found by listing pushes/, wherever its file is."""
    paths = [p for p in branch_paths(bare, "pushes/") if revision in p]
    for raw in read_many(bare, paths):
        data = yaml.safe_load(raw)
        if isinstance(data, dict) and data.get("revision") == revision:
            return data
    return None


def run_records(bare: Path) -> list[dict[str, Any]]:
    paths = [p for p in branch_paths(bare, "runs/") if p.endswith("/run.yaml")]
    return [yaml.safe_load(raw) for raw in read_many(bare, paths)]


def all_objects(bare: Path) -> Iterator[tuple[str, str, bytes]]:
    """(id, type, content) of every object in the repository, reachable or not."""
    batch = _git_bytes(bare, "cat-file", "--batch-all-objects", "--batch")
    while batch:
        header, _, batch = batch.partition(b"\n")
        oid, kind, size = header.decode().split()
        yield oid, kind, batch[:int(size)]
        batch = batch[int(size) + 1:]


def containers(label: str) -> list[str]:
    return _docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.ID}} {{.Names}}",
                   ).splitlines()


# --- the checks every attack gets ----------------------------------------------------------


def assert_contained(outcome: Outcome, host: Host, *, stores: Sequence[Path] = (),
                     allowed_requests: Sequence[str] = (), limit: float = LIMIT) -> None:
    """Everything issue 9 asks after any attack, in one call (see the module's docstring)."""
    where = f"push {outcome.revision[:12]} of {outcome.name}"
    assert outcome.push is not None, f"{where} has no push record; the runner said:\n{outcome.output}"
    assert outcome.seconds < limit, f"{where} took {outcome.seconds:.0f} s"
    assert outcome.status != "running", outcome.push
    forms = host.forms()
    for oid, kind, data in all_objects(outcome.bare):
        for form, what in forms.items():
            assert form not in data, f"the {what} is in {kind} {oid} of {where}:\n{_around(data, form)}"
    for store in [outcome.bare / ".runyard" / "artifacts", *stores]:
        assert_store_clean(store, forms)
    for form, what in forms.items():
        assert form.decode() not in outcome.output, f"the runner printed the {what}"
    fsck = subprocess.run(["git", "--git-dir", str(outcome.bare), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0 and "error" not in fsck.stderr, fsck.stdout + fsck.stderr
    left = _containers_after(f"dev.runyard.project={outcome.name}")
    assert left == [], f"containers of {outcome.name} left behind: {left}"
    asked = [path for path in host.server.requests(outcome.label)
             if path.rsplit("/", 1)[-1] not in allowed_requests]
    assert asked == [], f"the host's loopback-only server was reached: {asked}"


def _containers_after(label: str, grace: float = 5.0) -> list[str]:
    """Containers with `label`, once `grace` seconds passed without them (the engine
    removes a container a moment after it is told to)."""
    deadline = time.monotonic() + grace
    while (left := containers(label)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def assert_store_clean(store: Path, forms: Mapping[bytes, str]) -> None:
    """No token in any file of the store, and every stored object hashes to its name."""
    if not store.exists():
        return
    for path in store.rglob("*"):
        if path.is_symlink() or not path.is_file():
            assert not path.is_symlink(), f"a link in the artifact store: {path}"
            continue
        data = path.read_bytes()
        for form, what in forms.items():
            assert form not in data, f"the {what} is in {path}"
        if re.fullmatch(r"[0-9a-f]{64}", path.name) and path.parent.parent.name == "sha256":
            assert hashlib.sha256(data).hexdigest() == path.name, f"{path} changed in place"


def _around(data: bytes, form: bytes) -> str:
    at = data.find(form)
    return data[max(0, at - 200):at + 200].decode("utf-8", "replace")


def assert_refused_at_push(outcome: Outcome, *files: str) -> None:
    """Refused by the operator's policy before anything ran; the problems name `files`."""
    assert outcome.push is not None, outcome.output
    assert outcome.status == "refused", outcome.push
    assert outcome.records == [], "nothing runs of a refused push"
    _assert_named(outcome, files)


def assert_invalid(outcome: Outcome, *files: str) -> None:
    """Invalid at validation; a problem at file:line:col names each of `files`."""
    assert outcome.push is not None, outcome.output
    assert outcome.status == "invalid", outcome.push
    assert outcome.records == []
    _assert_named(outcome, files)


def _assert_named(outcome: Outcome, files: Sequence[str]) -> None:
    problems = [str(p) for p in (outcome.push or {}).get("problems", [])]
    assert problems, outcome.push
    for problem in problems:
        assert re.match(r"^[^:\s]+:\d+:\d+: ", problem), f"not file:line:col: {problem}"
    for name in files:
        assert any(p.startswith(f"{name}:") for p in problems), f"no problem at {name}: {problems}"


def assert_stopped(outcome: Outcome, jobs: Sequence[str], reason: str) -> None:
    """Each job was refused at push, or ran and failed with `reason` (before it started)."""
    if outcome.refused_at_push:
        assert outcome.records == []
        return
    for job in jobs:
        status = outcome.job(job)["status"]
        assert (status["state"], status["reason"]) == ("failed", reason), f"job {job}: {status}"
        assert status["error"], status


# --- project files -------------------------------------------------------------------------


def doc(kind: str, name: str, **fields: Any) -> str:
    return yaml.safe_dump({"apiVersion": "runyard/v1", "kind": kind, "name": name, **fields},
                          sort_keys=False, allow_unicode=True, width=1000)


def job(name: str, handler: str, *, function: str = "probe", **fields: Any) -> dict[str, str]:
    """A job file for `jobs/NAME.yaml`, running `handler` of `function`."""
    return {f"jobs/{name}.yaml": doc("job", name, run={"function": function, "handler": handler},
                                     **fields)}


def function(name: str, handler: str, **fields: Any) -> dict[str, str]:
    fields.setdefault("environment", {"base_image": "python:3.11-slim"})
    return {f"functions/{name}.yaml": doc("function", name, code="src/hostile.py",
                                          handler=handler, **fields)}


def input_jobs(inputs: Sequence[str]) -> dict[str, str]:
    """One job per input URI (in-0, in-1, ...), whose handler logs what it was given."""
    files: dict[str, str] = {}
    for index, uri in enumerate(inputs):
        files |= job(f"in-{index}", "echo_inputs", inputs={"data": uri})
    return files


def with_project(text: str) -> dict[str, str]:
    """project.yaml with `text` added at its end."""
    return {"project.yaml": (PROJECT / "project.yaml").read_text("utf-8") + text}


def local_backend() -> dict[str, str]:
    """project.yaml asking for the local backend (runs on the runner's host itself)."""
    return {"project.yaml": (PROJECT / "project.yaml").read_text("utf-8").replace(
        "defaults:\n", "defaults:\n  backend: local\n")}


@pytest.fixture
def attack(host: Host, tmp_path: Path, projects: list[str]) -> Callable[..., Attack]:
    """Make an Attack: attack(label, files, settings=(), links={}, project=None)."""

    def make(label: str, files: Mapping[str, str | bytes], settings: Sequence[str] = (),
             links: Mapping[str, str] | None = None, project: str | None = None) -> Attack:
        made = Attack(host, tmp_path, label, files, settings, links or {}, project)
        projects.append(made.name)
        return made

    return make


# --- 1. host files as inputs ---------------------------------------------------------------


def _file_inputs(host: Host) -> dict[str, tuple[list[str], list[str]]]:
    marker, allowed = str(host.marker), host.allowed
    return {
        # what the policy can tell from the URI alone
        "file-static": ([], [f"file://{marker}", f"file://{allowed}/../root-only/marker.txt",
                             f"file://{marker}%00",
                             f"file://{marker.replace('/root-only/', '/root-only/./')}"]),
        # what only opening it tells: other spellings of the same file
        "file-runtime": ([], [f"file://localhost{marker}", f"FILE://{marker}"]),
        # repository paths that lead to it
        "file-repo-path": ([], [f"file:{marker}", "../" * 30 + marker.lstrip("/")]),
        # with --allow-files: a path out of the folder, and links in it that point out
        "file-dotdot": ([f"--allow-files={allowed}"],
                        [f"file://{allowed}/../root-only/marker.txt",
                         f"file://{allowed}/./../root-only/marker.txt"]),
        "file-links": ([f"--allow-files={allowed}"],
                       [f"file://{allowed}/link.txt", f"file://{allowed}/hostdir/marker.txt"]),
    }


@pytest.mark.parametrize("label", ["file-static", "file-runtime", "file-repo-path", "file-dotdot",
                                   "file-links"])
def test_host_file_inputs_are_refused(attack: Callable[..., Attack], host: Host, label: str) -> None:
    """Attack 1: a job input naming the root-only marker file of the runner's host, as
    `file://`, `file://localhost`, upper case, without slashes, as a repository path that
    climbs out, with `..`, and through links in a folder the operator allows."""
    settings, inputs = _file_inputs(host)[label]
    outcome = attack(label, input_jobs(inputs), settings).run()
    assert_contained(outcome, host)
    assert_stopped(outcome, [f"in-{i}" for i in range(len(inputs))], "input")


def test_allowed_host_folder_is_read(attack: Callable[..., Attack], host: Host) -> None:
    """The control of attack 1: with --allow-files DIR a file under DIR is read (so the
    refusals above are the policy, not a broken handler or input)."""
    outcome = attack("file-allowed", input_jobs([f"file://{host.allowed}/harmless.txt"]),
                     [f"--allow-files={host.allowed}"]).run()
    assert_contained(outcome, host)
    record = outcome.job("in-0")
    assert record["status"]["state"] == "completed", record["status"]
    assert record["status"]["results"] == {"data": host.harmless}


def test_links_committed_in_the_repository(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 1 through the repository: links committed in an ordinary-looking data folder,
    absolute and relative, pointing at the marker; jobs take them as plain repository inputs."""
    relative = "../" * 40 + str(host.marker).lstrip("/")
    outcome = attack("repo-links", input_jobs(["data/notes.txt", "data/more.txt"]),
                     links={"data/notes.txt": str(host.marker), "data/more.txt": relative}).run()
    assert_contained(outcome, host)
    assert_stopped(outcome, ["in-0", "in-1"], "input")


# --- 2. the artifact store and earlier artifacts as inputs ---------------------------------


def test_store_and_artifact_inputs_cannot_climb_out(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 2: `store://` inputs that are not content hashes (path traversal, non-hex,
    upper case, too short, trailing junk) and `artifact://` inputs with odd keys."""
    hexes = hashlib.sha256(host.token.encode()).hexdigest()
    inputs = ["store://sha256:../../../" + "../" * 20 + str(host.marker).lstrip("/"),
              "store://sha256:../../..", f"store://{host.marker}", "store://../../etc/passwd",
              "store://sha256:" + "z" * 64, "store://sha256:" + hexes.upper(),
              "store://sha256:" + hexes[:12], f"store://sha256:{hexes}/../../x",
              f"store://sha256:{hexes}\n", "artifact://../../x", "artifact://a//b",
              "artifact://.git", "artifact://x@../../..", "artifact://", f"artifact://{host.marker}"]
    outcome = attack("store-inputs", input_jobs(inputs)).run()
    assert_contained(outcome, host)
    assert_stopped(outcome, [f"in-{i}" for i in range(len(inputs))], "input")


# --- 3, 4, 5. what a run leaves in its outputs folder --------------------------------------

LINK_CASES = ["artifact-symlink", "relative-symlink", "results-symlink", "artifacts-json-symlink",
              "error-symlink", "folder-symlink", "link-in-folder", "through-folder-link",
              "artifacts-folder-link"]
SPECIAL_CASES = ["fifo-results", "fifo-artifacts-json", "fifo-error", "fifo-artifact",
                 "fifo-in-folder", "oversize-results", "oversize-artifact", "oversize-folder",
                 "deep-results"]
KEY_CASES = ["key-dotdot", "key-double-slash", "key-git", "key-slash", "key-long", "key-int",
             "key-null", "key-newline", "key-empty", "key-duplicate", "path-dotdot", "path-absolute",
             "path-inner-dotdot", "path-empty", "path-nul"]


@pytest.fixture(scope="module")
def outputs_attack(host: Host, tmp_path_factory: pytest.TempPathFactory,
                   projects: list[str]) -> Outcome:
    """Attacks 3, 4 and 5 in one push through the real hook: one trial per case of
    src/hostile.py's `leave` (links, pipes, sizes, keys, paths) and a hard-link control,
    with a 1 MiB limit per artifact."""
    cases = [*LINK_CASES, "hardlink", *SPECIAL_CASES, *KEY_CASES]
    files = job("outputs", "leave", params={"marker": str(host.marker)},
                hyper={"strategy": "grid", "params": {"case": cases}, "parallel": 4})
    made = Attack(host, tmp_path_factory.mktemp("outputs"), "outputs", files,
                  ["--max-artifact", "1Mi"])
    projects.append(made.name)
    return made.push_through_hook()


def test_outputs_push_through_the_hook_is_contained(outputs_attack: Outcome,
                                                    host: Host) -> None:
    """The push with every output attack, through `git push` and the installed hook: it
    is recorded, with a trial per case, and nothing got out."""
    outcome = outputs_attack
    assert_contained(outcome, host)
    assert outcome.status in ("completed", "failed"), outcome.push  # the parent: as its trials
    trials = outcome.trials("outputs")
    assert len(trials) == len(LINK_CASES) + 1 + len(SPECIAL_CASES) + len(KEY_CASES)


@pytest.mark.parametrize("case", LINK_CASES)
def test_links_in_outputs_are_not_followed(outputs_attack: Outcome, case: str) -> None:
    """Attack 3: a symlink left in the outputs folder to the host's marker: as an artifact
    (absolute, relative), as results.json, artifacts.json or error.json, as a folder
    artifact, inside a folder artifact, on the way to an artifact, and the artifacts
    folder itself. The run fails with reason `outputs` and an error, and keeps nothing."""
    status = outputs_attack.trials("outputs")[case]["status"]
    assert (status["state"], status["reason"]) == ("failed", "outputs"), status
    assert status["error"] and status["artifacts"] == [] and status["results"] == {}, status


def test_hard_link_in_outputs_is_the_runs_own(outputs_attack: Outcome) -> None:
    """The control of attack 3: a hard link to a file the run wrote is an ordinary artifact."""
    status = outputs_attack.trials("outputs")["hardlink"]["status"]
    assert status["state"] == "completed", status
    assert [(a["key"], a["hash"]) for a in status["artifacts"]] == [
        ("own", "sha256:" + hashlib.sha256(OWN_BYTES).hexdigest())]


@pytest.mark.parametrize("case", SPECIAL_CASES)
def test_pipes_and_oversize_outputs_fail_quickly(outputs_attack: Outcome,
                                                 case: str) -> None:
    """Attack 4: a named pipe as results.json, artifacts.json, error.json, an artifact or
    inside a folder artifact (the runner must not block on it); and outputs over their
    limits (results over 1 MiB, an artifact or folder over --max-artifact 1Mi, JSON nested
    200 000 deep). The run fails with reason `outputs` within seconds."""
    status = outputs_attack.trials("outputs")[case]["status"]
    assert (status["state"], status["reason"]) == ("failed", "outputs"), status
    assert status["duration"] < 30, status


@pytest.mark.parametrize("case", KEY_CASES)
def test_bad_artifact_keys_and_paths_are_refused(outputs_attack: Outcome,
                                                 case: str) -> None:
    """Attack 5: artifacts.json with keys like `../../x`, `a//b`, `.git`, `a/b`, 300
    characters, a number, null, a newline, empty, twice; and paths that climb out, are
    absolute, empty or hold a NUL. The run fails with `outputs`, or completes without
    that artifact; either way no record path is made of the key (fsck stays clean)."""
    outcome = outputs_attack
    status = outcome.trials("outputs")[case]["status"]
    if status["state"] == "completed":
        assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}", a["key"])
                   for a in status["artifacts"]), status
        assert case == "key-duplicate" or status["artifacts"] == [], status
    else:
        assert (status["state"], status["reason"]) == ("failed", "outputs"), status
    for path in branch_paths(outcome.bare):
        assert all(part not in ("", ".", "..", ".git") for part in path.split("/")), path


# --- 6. the Dockerfile ---------------------------------------------------------------------


def _build_injections(made: Attack) -> tuple[dict[str, str], list[str]]:
    """Functions whose environment tries to add Dockerfile lines or pip options, a job per
    function (reading what an injected ADD would have fetched), and the files to blame."""
    add = f"ADD {made.url()} /x"
    images = {"inj-newline": f"python:3.11-slim\n{add}", "inj-crlf": f"python:3.11-slim\r\n{add}",
              "inj-cr": f"python:3.11-slim\r{add}", "inj-as": f"python:3.11-slim AS base\n{add}",
              "inj-space": f"python:3.11-slim {add}", "inj-flag": "--platform=linux/amd64 python:3.11-slim",
              "inj-trailing": "python:3.11-slim\n"}
    requirements = {"req-index": [f"--index-url {made.url('simple')}"],
                    "req-extra": [f"--extra-index-url={made.url('simple')}", "six"],
                    "req-editable": ["-e file:///"], "req-include": ["-r /etc/passwd"],
                    "req-find-links": [f"-f {made.url('links')}"],
                    "req-newline": [f"six\n--index-url {made.url('simple')}"],
                    "req-trailing": ["six\n"]}
    files: dict[str, str] = {}
    blamed = []
    for name, image in images.items():
        files |= function(name, "cat", environment={"base_image": image})
        files |= job(f"run-{name}", "cat", function=name, params={"path": "/x"})
        blamed.append(f"functions/{name}.yaml")
    for name, lines in requirements.items():
        files |= function(name, "cat", environment={"base_image": "python:3.11-slim",
                                                    "requirements": lines})
        blamed.append(f"functions/{name}.yaml")
    files |= function("req-file", "cat", environment={"base_image": "python:3.11-slim",
                                                      "requirements_file": "requirements.txt"})
    files["requirements.txt"] = (f"six\n--index-url {made.url('simple')}\n-e file:///\n"
                                 f"--trusted-host 127.0.0.1\n-r /etc/passwd\n")
    files |= function("pkg-trailing", "cat", environment={"base_image": "python:3.11-slim",
                                                          "system_packages": ["libgomp1\n"]})
    blamed.append("functions/pkg-trailing.yaml")
    return files, blamed


def test_dockerfile_injection_is_invalid(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 6: a `base_image` with a newline (LF, CRLF, CR) and an `ADD` of a URL on
    the host's loopback after it, with words or a flag after the name, or a trailing
    newline; `requirements` entries that are pip options (index URLs, -e, -r, -f), that
    hide one after a newline, or end in one; a requirements file with such lines; a system
    package with a newline. The push is `invalid`, each file blamed at file:line:col, and
    nothing is built (the loopback server is never asked)."""
    made = attack("build-inject", {})
    made.files, blamed = _build_injections(made)
    outcome = made.run()
    assert_contained(outcome, host)
    assert_invalid(outcome, *blamed)
    problems = [str(p) for p in (outcome.push or {}).get("problems", [])]
    assert any(p.startswith(("functions/req-file.yaml:", "requirements.txt:")) for p in problems), problems


def test_env_values_stay_one_dockerfile_line(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 6's relative: an `env` value and a `setup` step with a newline and an `ADD`
    line in them are valid, but rendered as one escaped value each: the image builds, the
    run finds no /y, and the loopback server is never asked."""
    made = attack("env-inject", {})
    made.files = {**function("envy", "cat", environment={
        "base_image": "python:3.11-slim", "env": {"NOTE": f"x\nADD {made.url()} /y"},
        "setup": [f"ADD() {{ :; }}\nADD {made.url()} /y"]}),
        **job("look", "cat", function="envy", params={"path": "/y"})}
    outcome = made.run()
    assert_contained(outcome, host)
    status = outcome.job("look")["status"]
    assert status["state"] == "completed", status
    assert "missing" in status["results"], status


# --- 7. URLs on the host's loopback --------------------------------------------------------


def _url_inputs(made: Attack, group: str) -> list[str]:
    port, path = made.host.server.port, f"/{made.label}/token"
    if group == "url-static":  # what the policy can tell from the URI alone
        return [made.url(), made.url(host="localhost"), made.url(host="[::1]"),
                made.url(host="0.0.0.0"), f"http://[::ffff:127.0.0.1]:{port}{path}",
                f"http://evil.example@127.0.0.1:{port}{path}", made.url(host="127.0.0.2"),
                f"https://127.0.0.1:{port}{path}", f"http://LOCALHOST:{port}{path}"]
    # other spellings of 127.0.0.1, that only resolving tells
    return [f"http://0x7f000001:{port}{path}", f"http://2130706433:{port}{path}",
            f"http://127.1:{port}{path}", f"http://0177.0.0.1:{port}{path}",
            f"HTTP://127.0.0.1:{port}{path}"]


@pytest.mark.parametrize("label", ["url-static", "url-runtime"])
def test_loopback_urls_are_refused(attack: Callable[..., Attack], host: Host, label: str) -> None:
    """Attack 7: an input URL on the host's loopback, also as localhost, [::1], 0.0.0.0,
    an IPv4-mapped IPv6 address, behind user info, 127.0.0.2, https, and the encodings
    0x7f000001, 2130706433, 127.1, 0177.0.0.1, upper case. Refused (at push, or the run
    fails with reason `input`), and the server never sees a request."""
    made = attack(label, {})
    inputs = _url_inputs(made, label)
    made.files = input_jobs(inputs)
    outcome = made.run()
    assert_contained(outcome, host)
    assert_stopped(outcome, [f"in-{i}" for i in range(len(inputs))], "input")


def test_loopback_url_is_fetched_where_the_operator_allows(attack: Callable[..., Attack],
                                                           host: Host) -> None:
    """The control of attack 7: with --allow-private-urls the runner fetches from the same
    server (its harmless path), so the refusals above are the policy's."""
    made = attack("url-allowed", {}, ["--allow-private-urls"])
    made.files = input_jobs([made.url("public")])
    outcome = made.run()
    assert_contained(outcome, host, allowed_requests=["public"])
    record = outcome.job("in-0")
    assert record["status"]["state"] == "completed", record["status"]
    assert record["status"]["results"] == {"data": host.server.public}
    assert host.server.requests("url-allowed") == ["/url-allowed/public"]


# --- 8. the host's network, and the host itself --------------------------------------------


def test_host_network_is_refused(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 8: a function with `network: host` fetching the loopback-only server. Refused
    (push `refused`, or the run fails with reason `refused`): no container starts on the
    host's network, so the server never sees a request."""
    made = attack("hostnet", {})
    made.files = {**function("netter", "fetch", network="host"),
                  **job("reach", "fetch", function="netter", params={"url": made.url()})}
    outcome = made.run()
    assert_contained(outcome, host)
    if outcome.refused_at_push:
        assert_refused_at_push(outcome, "functions/netter.yaml")
    else:
        assert_stopped(outcome, ["reach"], "refused")


class Listener:
    """A TCP service on all of this host's addresses, as many a server has: it notes who
    connects."""

    def __init__(self) -> None:
        self.server = socket.create_server(("0.0.0.0", 0))
        self.reached: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed at the end
            while True:
                connection, peer = self.server.accept()
                self.reached.append(peer[0])
                connection.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    made = Listener()
    yield made
    made.server.close()


def _host_addresses() -> list[str]:
    """This host's IPv4 addresses, loopback aside (the default bridge's gateway among them)."""
    listed = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                            check=True).stdout
    found = [line.split()[3].partition("/")[0] for line in listed.splitlines()]
    return [address for address in found if not address.startswith("127.")]


def _reach(made: Attack, listener: Listener) -> dict[str, str]:
    """The results of a run that tries to reach `listener`, whose image's build tried too."""
    knock = ("python3 -c \"import socket, struct; routes = [line.split() for line in "
             "open('/proc/net/route')][1:]; gateway = [socket.inet_ntoa(struct.pack('<L', "
             "int(route[2], 16))) for route in routes if route[1] == '00000000'][0]; "
             f"socket.create_connection((gateway, {listener.port}), timeout=3)\" || true")
    made.files = {**function("knocker", "reach", environment={
                      "base_image": "python:3.11-slim", "setup": [knock]}),
                  **job("reach", "reach", function="knocker",
                        params={"port": listener.port, "addresses": _host_addresses()})}
    outcome = made.run()
    assert_contained(outcome, made.host)
    record = outcome.job("reach")
    assert record["status"]["state"] == "completed", record["status"]
    results: dict[str, str] = record["status"]["results"]
    assert {"gateway", "metadata"} <= set(results), results
    return results


def test_a_run_reaches_neither_this_host_nor_its_networks(attack: Callable[..., Attack],
                                                          listener: Listener) -> None:
    """Attack 8b: a run on the network a push's runs get (a function's `network: bridge`,
    the default) connects to a service listening on all of this host's addresses, through
    its network's gateway and at each address of the host (the default bridge's gateway,
    the host's own on its networks), and to a cloud's metadata address (169.254.169.254);
    so does a setup step of its image's build, through the gateway. None answers and the
    service sees no connection; the run itself completes."""
    results = _reach(attack("reach", {}), listener)
    assert [name for name, said in results.items() if said == "reached"] == [], results
    assert listener.reached == []


def test_a_run_reaches_this_host_where_the_operator_allows(attack: Callable[..., Attack],
                                                           listener: Listener) -> None:
    """The control of attack 8b: with --allow-private-network the same build and run reach
    the service, so the refusals above are runyard's firewall."""
    results = _reach(attack("reach-allowed", {}, ["--allow-private-network"]), listener)
    assert results["gateway"] == "reached", results
    assert len(listener.reached) >= 2  # the build's step, and the run at least once


def test_local_backend_is_refused_by_default(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 8's relative: the project asks for the local backend (its code would run on
    the host itself, as root) and fetches the loopback-only server. Refused at push (or
    the run fails with reason `refused`), and the server never sees a request."""
    made = attack("local-default", {})
    made.files = {**local_backend(), **job("reach", "fetch", params={"url": made.url()})}
    outcome = made.run()
    assert_contained(outcome, host)
    if outcome.refused_at_push:
        assert_refused_at_push(outcome, "project.yaml")
    else:
        assert_stopped(outcome, ["reach"], "refused")


# --- 9. secrets ----------------------------------------------------------------------------


def _secret_files(hold: float) -> dict[str, str]:
    return {**with_project(f"secrets: [{SECRET}]\n"),
            **function("keeper", "reveal", secrets=[SECRET]),
            **job("reveal", "reveal", function="keeper", params={"name": SECRET, "hold": hold}),
            **job("peek", "peek", params={"name": SECRET})}


def test_secret_not_allowed_is_not_given(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 9 without --allow-secret: the project lists the runner's RY_HOSTILE_SECRET
    and a function names it. Refused at push, or the runs go without it."""
    outcome = attack("secret-denied", _secret_files(0)).run()
    assert_contained(outcome, host)
    if outcome.refused_at_push:
        assert_refused_at_push(outcome, "project.yaml")
        return
    for name in ("reveal", "peek"):
        status = outcome.job(name)["status"]
        assert status["results"].get("got") is False, status
        assert status["results"].get("in_environment") is False, status


def test_allowed_secret_is_masked_everywhere(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 9 with --allow-secret RY_HOSTILE_SECRET: the function that names the secret
    gets it (as a file), prints it, logs it base64-encoded, returns it as results (also
    as a key) and raises an exception holding it. The token is nowhere on the results
    branch (masked `***`), `docker inspect` of the running container never shows it, and
    a function that does not name the secret does not get it."""
    made = attack("secret-allowed", _secret_files(4.0), [f"--allow-secret={SECRET}"])
    _, bare, revision = made.prepare()
    label = f"dev.runyard.project={made.name}"
    started = time.monotonic()
    runner = subprocess.Popen([sys.executable, "-m", "runner", "on-push", "-C", str(bare)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=host.env(), cwd=CHECKOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(runner.communicate(
        f"{ZERO} {revision} refs/heads/main\n", timeout=LIMIT)[0]), daemon=True)
    reader.start()
    inspected = 0
    while reader.is_alive() and time.monotonic() - started < LIMIT:
        for line in containers(label):
            found = subprocess.run(["docker", "inspect", line.split()[0]], capture_output=True,
                                   text=True)
            if found.returncode == 0 and json.loads(found.stdout)[0]["State"]["Running"]:
                inspected += 1
                assert host.secret not in found.stdout, "the secret is in `docker inspect`"
        time.sleep(0.3)
    reader.join(timeout=10)
    outcome = made.outcome(bare, revision, time.monotonic() - started, "".join(output))
    assert_contained(outcome, host)
    assert inspected > 0, "no running container was inspected"
    revealed = outcome.job("reveal")
    status = revealed["status"]
    assert (status["state"], status["reason"]) == ("failed", "error"), status
    assert status["results"]["got"] is True, status
    assert status["results"]["in_environment"] is False, status  # a file, not a variable
    assert status["results"]["secret"] == "***", status
    assert "***" in status["error"], status
    log = read_many(bare, [f"runs/{revealed['metadata']['uid'][-2:]}/{revealed['metadata']['uid']}/log.txt"])
    assert b"the secret is ***" in log[0], log
    peeked = outcome.job("peek")["status"]
    assert peeked["state"] == "completed", peeked
    assert peeked["results"] == {"got": False, "in_environment": False, "secret_files": []}, peeked


# --- 10. the store stays content-addressed -------------------------------------------------


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_run_cannot_change_its_stored_input(attack: Callable[..., Attack], host: Host,
                                            backend: str) -> None:
    """Attack 10: a handler writes into its input file (in place, after chmod, by replacing
    it), on the local backend (the operator allows it) and in Docker. The stored object
    still hashes to its name afterwards."""
    files = job("tamper", "write_input", inputs={"data": "data/harmless.txt"})
    settings: list[str] = []
    if backend == "local":
        files |= local_backend()
        settings.append("--allow-local-backend")
    outcome = attack(f"tamper-{backend}", files, settings).run()
    assert_contained(outcome, host)
    record = outcome.job("tamper")
    assert record["status"]["state"] == "completed", record["status"]
    assert record["spec"]["backend"] == backend
    digest = record["spec"]["inputs"]["data"]["hash"]
    original = (PROJECT / "data" / "harmless.txt").read_bytes()
    assert digest == "sha256:" + hashlib.sha256(original).hexdigest()
    stored = outcome.bare / ".runyard" / "artifacts" / "sha256" / digest[7:9] / digest[7:]
    assert stored.read_bytes() == original


# --- 11, 12. builds and disks that never end -----------------------------------------------


def test_endless_build_is_stopped(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 11: a build `setup` step that sleeps for ever, with --build-timeout 10s. The
    push is recorded `failed` within a bounded time and no build container is left."""
    mark = f"ryh-endless-{secrets.token_hex(4)}"
    made = attack("endless-build", {
        **function("slow", "cat", environment={"base_image": "python:3.11-slim",
                                               "setup": [f"sleep 100000 # {mark}"]}),
        **job("wait", "cat", function="slow", params={"path": "/x"})}, ["--build-timeout", "10s"])
    outcome = made.run(timeout=60)
    assert_contained(outcome, host, limit=60)
    assert outcome.status == "failed", outcome.push
    deadline = time.monotonic() + 10
    while (left := [line for line in _docker("ps", "-a", "--no-trunc", "--format",
                                             "{{.ID}} {{.Command}}").splitlines() if mark in line]) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"build containers left: {left}"


def test_run_that_fills_its_disk_fails(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 12: a run writes 1 GiB in its working folder and 1 GiB in /tmp, with
    --max-disk 64Mi. It fails with reason `disk` (or an error that says so), and the free
    space of the host's disk never dropped by more than ~100 MiB meanwhile."""
    made = attack("fill-disk", job("fill", "fill_disk", params={"mib": 1024}),
                  ["--max-disk", "64Mi"])
    lowest: list[int] = []
    stop = threading.Event()

    def watch(path: Path) -> None:
        while not stop.is_set():
            stats = os.statvfs(path)
            lowest.append(stats.f_bavail * stats.f_frsize)
            stop.wait(0.05)

    before = os.statvfs(made.tmp).f_bavail * os.statvfs(made.tmp).f_frsize
    watcher = threading.Thread(target=watch, args=(made.tmp,), daemon=True)
    watcher.start()
    try:
        outcome = made.run()
    finally:
        stop.set()
        watcher.join()
    assert_contained(outcome, host)
    status = outcome.job("fill")["status"]
    assert status["state"] == "failed", status
    assert status["reason"] == "disk" or re.search(r"disk|space", status["error"] or ""), status
    dropped = before - min(lowest)
    assert dropped < 100 * MiB, f"the host's free disk dropped by {dropped / MiB:.0f} MiB"


# --- 13. another project's image -----------------------------------------------------------


@dataclass(frozen=True)
class OtherImage:
    """Another project's runyard image, holding that project's secret (the marker token)."""

    project: str
    tag: str
    image_id: str
    top_layer: str


@pytest.fixture(scope="module")
def other_image(host: Host, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtherImage]:
    context = tmp_path_factory.mktemp("other-image")
    (context / "secret").write_text(host.token)
    (context / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY secret /other-secret\n"
                                        "RUN chmod 644 /other-secret\n")
    project = f"ryh-other-{SUFFIX}"
    tag = f"runyard/{project}:abc"
    _docker("build", "-q", "-t", tag, "--label", f"dev.runyard.project={project}", str(context))
    found = json.loads(_docker("image", "inspect", tag))[0]
    yield OtherImage(project, tag, found["Id"], found["RootFS"]["Layers"][-1])
    ids = _docker("images", "-q", "--filter", f"label=dev.runyard.project={project}").split()
    _docker("rmi", "-f", tag, *sorted(set(ids)), check=False)  # the namesake's images too


def _from_other(made: Attack, images: Sequence[str]) -> None:
    """A function per base image, each with a job that reads the other project's secret."""
    made.files = {}
    for index, image in enumerate(images):
        made.files |= function(f"base-{index}", "cat", environment={"base_image": image})
        made.files |= job(f"steal-{index}", "cat", function=f"base-{index}",
                          params={"path": "/other-secret"})


def assert_not_built_on(project: str, other: OtherImage) -> None:
    for image_id in set(_docker("images", "-q", "--no-trunc", "--filter",
                                f"label=dev.runyard.project={project}").split()):
        layers = json.loads(_docker("image", "inspect", image_id))[0]["RootFS"]["Layers"]
        assert other.top_layer not in layers, f"{image_id} of {project} is built on {other.tag}"


def test_another_projects_image_is_refused(attack: Callable[..., Attack], host: Host,
                                           other_image: OtherImage) -> None:
    """Attack 13: `base_image: runyard/<another project>:<tag>`. The push is refused, no
    image is built on it, and the other project's secret does not get out."""
    made = attack("other-image", {})
    _from_other(made, [other_image.tag])
    outcome = made.run()
    assert_contained(outcome, host)
    assert_refused_at_push(outcome, "functions/base-0.yaml")
    assert_not_built_on(made.name, other_image)


@pytest.mark.parametrize("spelling", ["registry", "id"])
def test_another_projects_image_by_other_names(attack: Callable[..., Attack], host: Host,
                                               other_image: OtherImage, spelling: str) -> None:
    """Attack 13 by other names for the same image: `docker.io/runyard/...`,
    `index.docker.io/runyard/...`, a short image id (12 hex digits); its full id, with and
    without `sha256:`. Refused at push or at build: no image is built on it, and the
    other project's secret does not get out."""
    full = other_image.image_id.removeprefix("sha256:")
    images = {"registry": [f"docker.io/{other_image.tag}", f"index.docker.io/{other_image.tag}",
                           full[:12]],
              "id": [other_image.image_id, full]}[spelling]
    made = attack(f"other-{spelling}", {})
    _from_other(made, images)
    outcome = made.run()
    assert_contained(outcome, host)
    assert outcome.status in ("refused", "invalid", "failed"), outcome.push
    assert all(r["status"]["state"] != "completed" for r in outcome.records), outcome.records
    assert_not_built_on(made.name, other_image)


def test_namesake_of_another_project_gets_not_its_image(attack: Callable[..., Attack], host: Host,
                                                        other_image: OtherImage) -> None:
    """Attack 13 by name: a repository whose project takes the other project's name, so
    `runyard/<that name>:<tag>` looks like its own image. That image was built for
    another repository: refused, and its secret does not get out."""
    made = attack("namesake", {}, project=other_image.project)
    _from_other(made, [other_image.tag])
    outcome = made.run()
    assert_contained(outcome, host)
    assert outcome.status in ("refused", "failed"), outcome.push
    assert all(r["status"]["state"] != "completed" for r in outcome.records), outcome.records


# --- 14. where artifacts go ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["absolute", "file-url", "http-url", "climbing"])
def test_project_artifact_store_outside_is_refused(attack: Callable[..., Attack], host: Host,
                                                   tmp_path: Path, where: str) -> None:
    """Attack 14: the project sets its artifact store to an absolute path, a file:// URL,
    a URL on the host's loopback, or a path that climbs out. Without --artifact-store the
    push is refused; nothing is written there, and the server never sees a request."""
    evil = tmp_path / "evil-store"
    made = attack(f"store-{where}", {})
    store = {"absolute": str(evil), "file-url": f"file://{evil}", "http-url": made.url("store"),
             "climbing": "../../evil-store"}[where]
    made.files = {**with_project(f"artifacts: {{store: '{store}'}}\n"),
                  **job("keep", "leave", params={"case": "hardlink"})}
    outcome = made.run()
    assert_contained(outcome, host, stores=[evil])
    assert_refused_at_push(outcome, "project.yaml")
    assert not evil.exists()  # also where ../../evil-store leads from the bare repository


def test_project_store_inside_git_internals(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 14's relative: a store path that is relative, so "inside the project", but
    for a bare repository lands in git's own folders (`refs`). The run's artifact must not
    become a ref (fsck stays clean, no new ref appears)."""
    made = attack("store-refs", {**with_project("artifacts: {store: refs}\n"),
                                 **job("keep", "leave", params={"case": "hardlink"})})
    outcome = made.run()
    assert_contained(outcome, host)
    assert not (outcome.bare / "refs" / "sha256").exists()
    refs = subprocess.run(["git", "--git-dir", str(outcome.bare), "for-each-ref",
                           "--format=%(refname)"], capture_output=True, text=True)
    assert set(refs.stdout.split()) <= {"refs/heads/main", f"refs/heads/{BRANCH}"}, refs.stdout
    assert "warning" not in refs.stderr, refs.stderr


def test_operator_store_wins_over_the_projects(attack: Callable[..., Attack], host: Host,
                                               tmp_path: Path) -> None:
    """The control of attack 14: where the operator names a store (--artifact-store), the
    push runs, the artifact goes there, and the project's own location is not touched."""
    evil, operator = tmp_path / "evil-store", tmp_path / "operator-store"
    made = attack("store-operator", {**with_project(f"artifacts: {{store: '{evil}'}}\n"),
                                     **job("keep", "leave", params={"case": "hardlink"})},
                  ["--artifact-store", str(operator)])
    outcome = made.run()
    assert_contained(outcome, host, stores=[operator, evil])
    status = outcome.job("keep")["status"]
    assert status["state"] == "completed", status
    digest = hashlib.sha256(OWN_BYTES).hexdigest()
    assert (operator / "sha256" / digest[:2] / digest).read_bytes() == OWN_BYTES
    assert not evil.exists()


# --- 15. what the pushed tree asks of git ------------------------------------------------

ATTRIBUTED = {  # files of the attack: what their `.gitattributes` line asks git, what is committed
    "data/lfs.txt": ("filter=lfs diff=lfs merge=lfs -text", "version https://git-lfs.github.com/spec/v1\n"),
    "data/subst.txt": ("export-subst", "$Format:%H %d %G?$\n"),
    "data/ignored.txt": ("export-ignore", "still here\n"),
    "data/ident.txt": ("ident eol=crlf", "$Id$\nline\n"),
    "data/utf16.txt": ("working-tree-encoding=UTF-16", "plain\n"),
}


def test_the_code_a_run_sees_is_the_committed_tree(attack: Callable[..., Attack],
                                                   host: Host) -> None:
    """Attack 15: a `.gitattributes` that asks git to change the files a run gets from what
    was committed (and validated): `export-subst` placeholders (commit data, ref names, a
    signature check), `export-ignore`, `ident`, eol and encoding conversions, and a
    `filter=lfs` that runs the smudge command of the operator's own git config (here one
    that fetches, as git-lfs does from the URL a pushed `.lfsconfig` names, from the host's
    loopback). Each job reads one of those files from its code folder: it holds the bytes
    committed, and no filter of the runner's host ever ran (the server is never asked)."""
    made = attack("attributes", {})
    fetch = (f"{sys.executable} -c \"import sys, urllib.request; sys.stdin.buffer.read(); "
             f"sys.stdout.write(urllib.request.urlopen('{made.url()}').read().decode())\"")
    made.git_config = {"filter.lfs.smudge": fetch}
    attributes = "".join(f"{path} {asks}\n" for path, (asks, _) in ATTRIBUTED.items())
    made.files = {".gitattributes": attributes}
    for index, (path, (_, content)) in enumerate(ATTRIBUTED.items()):
        in_work_tree = content.encode("utf-16") if "encoding" in attributes.splitlines()[index] \
            else content.encode()
        made.files |= {path: in_work_tree,
                       **job(f"read-{index}", "cat", params={"path": f"/runyard/code/{path}"})}
    outcome = made.run()
    assert_contained(outcome, host)
    for index, (path, (_, content)) in enumerate(ATTRIBUTED.items()):
        status = outcome.job(f"read-{index}")["status"]
        assert status["state"] == "completed", status
        assert status["results"] == {"content": content}, (path, status["results"])


# --- 16. where the records go --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "file"])
def test_a_results_branch_that_climbs_out_of_refs(attack: Callable[..., Attack], host: Host,
                                                  kind: str) -> None:
    """Attack 16: `results: {branch: ../../../..HOST-PATH}` in project.yaml, naming a named pipe
    (the runner would wait on it for ever; /dev/zero would fill its memory) or a file of 40
    characters (the runner would take it for the branch's commit) on the runner's host. The
    branch name is invalid, so the push is recorded `invalid` on the default results branch
    within seconds, blamed at project.yaml, and nothing of the host's file gets out."""
    target = host.tmp / f"results-{kind}"
    if not target.exists():
        if kind == "fifo":
            os.mkfifo(target)
        else:
            target.write_text(host.token[:40])
    climbing = "../" * 40 + str(target).lstrip("/")
    made = attack(f"results-{kind}", with_project(f"results: {{branch: '{climbing}'}}\n"))
    outcome = made.run(timeout=30)
    assert_contained(outcome, host, limit=30)
    assert_invalid(outcome, "project.yaml")
    assert any("not a valid git branch name" in str(p) for p in outcome.push["problems"]), outcome.push
    assert host.token[:40] not in outcome.output


def test_a_results_branch_that_is_the_code_branch(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 16 by a valid name: `results: {branch: main}`, the branch pushed. The runner
    (root, past any hook that guards the branch) would commit records onto the code and
    replace its `report/` folder. A branch holding other files than a results branch's is
    never written: main stays at the pushed revision, nothing runs, and the push is
    recorded, failed and saying why, on the default results branch."""
    made = attack("results-main", {**with_project("results: {branch: main}\n"),
                                   **job("look", "cat", params={"path": "/etc/hostname"})})
    outcome = made.run()
    assert_contained(outcome, host)
    assert outcome.status == "failed" and "not a results branch" in outcome.push["reason"], outcome.push
    assert outcome.records == []
    assert git(outcome.bare, "rev-parse", "main").strip() == outcome.revision


# --- 17. work without end in the runner itself ---------------------------------------------


@pytest.mark.parametrize("case", ["uncapped", "all-excluded"])
def test_a_hyper_grid_too_large_for_the_runner(attack: Callable[..., Attack], host: Host,
                                               case: str) -> None:
    """Attack 17: a grid of 10**12 combinations, expanded by the runner before any container
    starts: without max_trials (every trial listed in the runner's memory), or with
    max_trials 1 and excludes that remove every combination (searched for ever). The first
    is invalid at push; the second fails within seconds; the runner ends either way."""
    grid = {f"p{i}": list(range(10)) for i in range(12)}
    hyper: dict[str, Any] = {"strategy": "grid", "params": grid}
    if case == "all-excluded":
        hyper |= {"max_trials": 1, "exclude": [{"p0": value} for value in range(10)]}
    outcome = attack(f"grid-{case}", job("grid", "echo_inputs", hyper=hyper)).run(timeout=60)
    assert_contained(outcome, host, limit=60)
    if case == "uncapped":
        assert_invalid(outcome, "jobs/grid.yaml")
        assert any("over the 100000 a job may have" in str(p) for p in outcome.push["problems"])
    else:
        assert outcome.status == "failed" and "exclude entries remove almost every" in \
            outcome.push["reason"], outcome.push


# --- 18. texts no encoder takes -------------------------------------------------------------

ODD_NAMES = ["data/\udcff.txt", "data/new\nline.txt", "data/\x1b[31mred.txt", "-rf", "--output=x",
             "src/\udcfe/mod.py"]


def test_file_names_and_results_that_are_not_unicode(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 18: files whose names hold a byte that is not UTF-8, a newline, a terminal
    escape, or look like options, listed in the push's plan; and a run whose results and
    error hold lone surrogates (JSON escapes). The push and the run are recorded (each odd
    character written as its escape), not an internal error with the push left unknown."""
    made = attack("odd-text", {**{name: "x\n" for name in ODD_NAMES}, **job("odd", "odd_text"),
                               **job("look", "cat", params={"path": "/runyard/code/-rf"})})
    outcome = made.run()
    assert_contained(outcome, host)
    assert outcome.status == "failed", outcome.push  # the job `odd` raised on purpose
    listed = json.dumps(outcome.push["plan"])
    assert "data/\\\\udcff.txt" in listed and "new\\nline" in listed, listed
    assert outcome.job("look")["status"]["results"] == {"content": "x\n"}
    odd = outcome.job("odd")["status"]
    assert (odd["state"], odd["reason"]) == ("failed", "error"), odd
    assert odd["results"] == {"odd": "bad \\udcff and \\ud800 text", "key-\\udcfe": 1}, odd
    assert "\\udcff" in odd["error"], odd


# --- 19. a base image from the host's own registry ---------------------------------------


def test_base_images_from_a_registry_on_the_hosts_loopback(attack: Callable[..., Attack],
                                                           host: Host) -> None:
    """Attack 19: base images whose registry is the host's loopback, as 127.0.0.1:PORT,
    localhost, [::1], 127.1 and 2130706433: the engine (on the host, for the push) would
    connect there to pull, any port (a blind GET), or a local registry's images of other
    projects. Refused before the engine is asked: the server never sees a request."""
    made = attack("registry-loop", {})
    port, port6, name = host.server.port, host.server.port6, f"{made.label}/img:token"
    images = [f"127.0.0.1:{port}/{name}", f"localhost:{port}/{name}", f"[::1]:{port6}/{name}",
              f"127.1:{port}/{name}", f"2130706433:{port}/{name}"]
    for index, image in enumerate(images):
        made.files = {**made.files,
                      **function(f"base-{index}", "cat", environment={"base_image": image}),
                      **job(f"look-{index}", "cat", function=f"base-{index}",
                            params={"path": "/etc/hostname"})}
    asked_before = len(host.server.seen)
    outcome = made.run()
    assert_contained(outcome, host)
    assert host.server.seen[asked_before:] == [], "the engine asked the host's loopback server"
    assert outcome.status in ("refused", "failed"), outcome.push
    assert all(r["status"]["state"] != "completed" for r in outcome.records), outcome.records
    said = json.dumps(outcome.push)
    assert said.count("an address of this runner's own or private network") >= len(images), said


# --- 20. a small push of many bytes --------------------------------------------------------


def test_a_tree_of_more_bytes_than_a_run_may_have(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 20: 96 MiB of zeros in one committed file, which git stores in some 100 KiB,
    with --max-disk 64Mi: the runner would unpack every byte of it for the run's code (and
    a push of gigabytes as cheaply). Refused before the code is written: the push fails
    saying why, and nothing ran."""
    made = attack("zeros", {"data/zeros.bin": bytes(96 * MiB),
                            **job("look", "cat", params={"path": "/etc/hostname"})}, ["--max-disk", "64Mi"])
    outcome = made.run()
    assert_contained(outcome, host)
    assert outcome.status == "failed" and "a run may have on disk" in outcome.push["reason"], outcome.push
    assert outcome.records == []


# --- 21. more runs at once than the host has room for -------------------------------------


def test_runs_at_once_are_the_operators_to_bound(attack: Callable[..., Attack], host: Host) -> None:
    """Attack 21: `hyper.parallel: 1000` (and trials that are pipelines of parallel steps
    multiply it): every run at once has a scratch of up to --max-disk, a container, a
    thread, so the push would take as much of the host's disk and memory as it asks. With
    --max-runs 2, at most 2 of 6 trials ever run at once."""
    made = attack("at-once", job("wide", "hold", params={"seconds": 1.5}, hyper={
        "strategy": "list", "params": {"case": list(range(6))}, "parallel": 1000}),
        ["--max-runs", "2"])
    outcome = made.run()
    assert_contained(outcome, host)
    trials = outcome.trials("wide")
    assert len(trials) == 6 and all(t["status"]["state"] == "completed" for t in trials.values())
    spans = [(datetime.fromisoformat(t["status"]["start"]).timestamp(),
              datetime.fromisoformat(t["status"]["end"]).timestamp()) for t in trials.values()]
    assert most_at_once(spans) <= 2, spans


# --- housekeeping --------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _no_stray_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No scratch disk of this module's pushes stays mounted after them."""
    yield
    base = str(tmp_path_factory.getbasetemp().resolve())
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    stray = [point for point in mounts if point.startswith(base)]
    assert stray == [], f"scratch disks left mounted: {stray}"
