"""Run records on the results branch: one folder per run, readable with `git show`.

    runs/<last two of uid>/<uid>/run.yaml     the record (DESIGN §3)
    runs/<last two of uid>/<uid>/log.txt      its log, capped (the tail kept)
    runs/.../<uid>/attempt-<n>.yaml           earlier attempts, when retried
    artifacts/<key>.yaml                      the newest artifact of each key
    index/running/<uid>                       a run recorded `running`, and its runner
    index/running-pushes/<revision>@<branch>  a push recorded `running`, and its runner
    pushes/<revision>/<branch>.yaml           one record per pushed revision and branch
                                              (`/` in a branch name written %2F)
    pushes/<revision>.yaml                    the older layout: one record per revision
    report/                                   the report (runner.views.site), written by the
                                              runner with each push record
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

import yaml

from runner.errors import RunyardError
from runner.forked import forked_map
from runner.frozen import frozen
from runner.record import index
from runner.record.gitstore import AtCommit, GitStore
from runner.record.index import IndexRow, row_of
from runner.record.model import Artifact, Part, PushRecord, RunRecord, State, dump

TOP_FOLDERS = ("runs", "artifacts", "index", "pushes", "report")  # all a results branch holds
RUNNING = "index/running"  # one file per running run, naming its runner
RUNNING_PUSHES = "index/running-pushes"  # one file per push being processed, naming its runner
MIN_PREFIX = 7  # characters of a uid shown, as git shows commits
PARSED_A_PROCESS = 1000  # records parsed a process, at least, when there are many to parse


def new_uid() -> str:
    """Random, so that a few leading characters tell runs apart, as git's object ids do.
    (Older runyards made uids of 17 characters that began with the time.)"""
    return os.urandom(8).hex()  # as secrets.token_hex, without its hmac and hashlib


def run_folder(uid: str) -> str:
    return f"runs/{uid[-2:]}/{uid}"


def push_path(revision: str, ref: str) -> str:
    """Where the record of `revision` pushed to `ref` (a branch) lives."""
    return f"pushes/{revision}/{quote(ref.removeprefix('refs/heads/'), safe='')}.yaml"


class Listing(NamedTuple):
    """Every run's index row, the newest first, and what could not be read."""

    rows: list[IndexRow]
    problems: list[str]


class LastPush(NamedTuple):
    revision: str
    ref: str


@frozen
class NewestRun(Part):
    """The newest top-level run of a job, as index/jobs/<job>.yaml keeps it."""

    uid: str
    revision: str
    state: State
    end: str | None = None


class ResultsBranch:
    """The records of one project on one branch of its repository."""

    def __init__(self, git_dir: Path, branch: str) -> None:
        self.store = GitStore(git_dir, branch, own=TOP_FOLDERS)
        self.branch = branch

    def close(self) -> None:
        """Stop the git process reads go through (the next read starts it again)."""
        self.store.close()

    def write(self, record: RunRecord, log: bytes | None = None,
              extra: Mapping[str, bytes] | None = None) -> str:
        """Commit the record with its log, `extra` files and index row; records that other
        threads write meanwhile may land in the same commit (in the order they were written)."""
        meta, status = record.metadata, record.status
        folder = run_folder(meta.uid)
        files = {f"{folder}/run.yaml": record.to_yaml()}
        if log is not None:
            files[f"{folder}/log.txt"] = log
        if status.state == "completed":
            for artifact in status.artifacts:
                files[f"artifacts/{artifact.key}.yaml"] = dump(
                    replace(artifact, producer=meta.uid).to_dict())
        if meta.job and not meta.parent:
            files[f"index/jobs/{meta.job}.yaml"] = dump(
                NewestRun(meta.uid, record.spec.revision, status.state, status.end).to_dict())
        if record.spec.run_key and status.state == "completed":
            files[_key_path(record.spec.run_key)] = meta.uid.encode()
        running: dict[str, bytes | None] = {
            f"{RUNNING}/{meta.uid}": str(status.runner).encode() if status.state == "running" else None}
        row = row_of(record)
        return self.store.commit({**files, **(extra or {}), **running},
                                 f"run {meta.uid} {meta.name}: {status.state}",
                                 derived=lambda base: index.with_rows(base, [row]), group=True)

    def read(self, uid: str, commit: str | None = None) -> RunRecord:
        read = _parsed(uid, self.store.read(f"{run_folder(uid)}/run.yaml", commit), self.branch)
        if isinstance(read, RunyardError):
            raise read
        return read

    def find(self, prefix: str) -> str:
        """The full uid of the one run whose uid starts with `prefix`."""
        matches = [uid for uid in self._uids_starting(prefix) if uid.startswith(prefix)]
        if len(matches) != 1:
            what = "no run" if not matches else f"{len(matches)} runs"
            some = sorted(matches)[:5]  # enough to pick from; a longer prefix tells them apart
            shown = f": {', '.join(some)}{', ...' if len(matches) > len(some) else ''}" if some else ""
            raise RunyardError(f"{what} on branch {self.branch} with uid starting {prefix!r}"
                               f"{shown}")
        return matches[0]

    def _uids_starting(self, prefix: str) -> list[str]:
        """The uids that may start with `prefix`: two shards of the index, when it holds them."""
        return self._uids_sharing({prefix[:2]}) if len(prefix) >= 2 else self.uids()

    def _uids_sharing(self, starts: set[str]) -> list[str]:
        """The uids that start with any of these two characters (or more, without an index)."""
        if self.indexed():
            try:
                return [row.uid for start in starts for path in index.shards_of(start)
                        for row in index.decode(self.store.read(path) or b"")]
            except index.IndexProblem:
                pass
        return self.uids()

    def short_prefixes(self, uids: Iterable[str]) -> dict[str, str]:
        """Each of `uids`, shortened to the fewest characters (MIN_PREFIX at least) that no
        other run's uid on the branch starts with."""
        wanted = list(uids)
        return unique_prefixes(wanted, self._uids_sharing({uid[:2] for uid in wanted}))

    def log(self, uid: str) -> bytes:
        return self.store.read(f"{run_folder(uid)}/log.txt") or b""

    def logs(self, uids: Sequence[str]) -> list[bytes]:
        """The log of each run, in one stream of requests."""
        return [raw or b"" for raw in self.store.read_all([f"{run_folder(uid)}/log.txt"
                                                            for uid in uids])]

    def uids(self, commit: str | None = None) -> list[str]:
        """Every run's uid, from the folders of the records."""
        return [path.rsplit("/", 1)[-1] for path in self.store.folders("runs", commit)
                if path.count("/") == 1]

    def records(self, limit: int | None = None) -> Iterator[RunRecord]:
        """The records, children too, the newest first (those that cannot be read left out)."""
        for read in self.read_all([row.uid for row in self.listing(children=True).rows[:limit]]):
            if isinstance(read, RunRecord):
                yield read

    def read_all(self, uids: Sequence[str], commit: str | None = None
                 ) -> list[RunRecord | RunyardError]:
        """The record of each uid, or what is wrong with it; read in one stream of requests
        (a stream a process, when there are many)."""
        commit = commit or self.store.tip()

        def read(share: Sequence[str]) -> list[RunRecord | RunyardError]:
            raws = self.store.read_all([f"{run_folder(uid)}/run.yaml" for uid in share], commit)
            return [_parsed(uid, raw, self.branch) for uid, raw in zip(share, raws, strict=True)]

        # when there are many, a process a core, each reading through its own git
        return forked_map(read, list(uids), PARSED_A_PROCESS, before_fork=self.store.close)

    def indexed(self) -> bool:
        """Whether the branch's index holds every run (see runner.record.index)."""
        return self.store.read(index.VERSION_PATH) == str(index.VERSION).encode()

    def listing(self, children: bool = False) -> Listing:
        """The rows of the top-level runs (with `children`, of their trials and steps too),
        the newest first: from the index; from the records when there is no index."""
        if self.store.tip() is None:  # no run recorded yet: nothing to read, nothing to say
            return Listing([], [])
        if self.indexed():
            try:
                folders = [index.TOP, index.CHILDREN] if children else [index.TOP]
                rows = [row for folder in folders for raw in self.store.contents(folder).values()
                        for row in index.decode(raw)]
                return Listing(_newest_first(rows), [])
            except index.IndexProblem as problem:
                why = f"its index cannot be read ({problem})"
        else:
            why = "it has no index of this runyard's version"
        rows, problems = self._rows_from_records()
        note = (f"branch {self.branch}: {why}, so every record was read; "
                "`runyard runs reindex` makes the index")
        kept = rows if children else [row for row in rows if not row.parent]
        return Listing(_newest_first(kept), [note, *problems])

    def all_records(self, commit: str | None = None) -> list[tuple[str, RunRecord | RunyardError]]:
        """Every run's uid and its record, or what is wrong with it, as of `commit` (the
        tip), read in one stream of requests."""
        uids = self.uids(commit)
        return list(zip(uids, self.read_all(uids, commit), strict=True))

    def _rows_from_records(self, commit: str | None = None) -> tuple[list[IndexRow], list[str]]:
        rows, problems = [], []
        for uid, read in self.all_records(commit):
            if isinstance(read, RunRecord):
                rows.append(row_of(read))
            else:
                problems.append(f"{run_folder(uid)}/run.yaml: {read}")
        return rows, problems

    def reindex(self) -> Listing:
        """Write the index anew from the records, in one commit (made again from the records
        of the newest commit when another lands first); its rows, and the records that could
        not be read (left out of it)."""
        made: list[Listing] = []

        def fresh_index(base: AtCommit) -> dict[str, bytes | None]:
            rows, problems = self._rows_from_records(base.commit)
            made.append(Listing(_newest_first(rows), problems))
            stale = {f"{folder}/{name}": None for folder in (index.TOP, index.CHILDREN)
                     for name in self.store.list(folder, base.commit)}
            return {**stale, **index.shards(rows)}

        if self.store.head() is None:
            return Listing([], [])
        self.store.commit({}, "index of the runs", derived=fresh_index)
        return made[-1]

    def running(self) -> dict[str, str]:
        """The runs recorded `running`: uid -> the runner that started them."""
        return {uid: (self.store.read(f"{RUNNING}/{uid}") or b"").decode()
                for uid in self.store.list(RUNNING)}

    def newest_of_job(self, job: str) -> NewestRun | None:
        raw = self.store.read(f"index/jobs/{job}.yaml")
        return NewestRun.read(yaml.safe_load(raw), f"job {job}'s newest run") if raw else None

    def write_push(self, push: PushRecord, extra: Mapping[str, bytes | None] | None = None,
                   *, newest: bool = True) -> str:
        """The record of one push (with `extra` files written or, where None, removed in the
        same commit), and with `newest`, the newest revision processed."""
        running = push.status == "running"
        files: dict[str, bytes | None] = {
            **(extra or {}), push_path(push.revision, push.ref): push.to_yaml(),
            f"{RUNNING_PUSHES}/{_running_push_name(push.revision, push.ref)}":
                str(push.runner).encode() if running else None}
        if newest and not running:
            files["index/last-push.yaml"] = dump({"revision": push.revision, "ref": push.ref})
        branch = push.ref.removeprefix("refs/heads/")
        return self.store.commit(files, f"push {push.revision[:12]} to {branch}: {push.status}")

    def running_pushes(self) -> dict[LastPush, str]:
        """The pushes recorded `running`: (revision, ref) -> the runner that took them."""
        found = {}
        for name in self.store.list(RUNNING_PUSHES):
            revision, _, branch = name.partition("@")
            found[LastPush(revision, f"refs/heads/{unquote(branch)}")] = (
                self.store.read(f"{RUNNING_PUSHES}/{name}") or b"").decode()
        return found

    def push(self, revision: str, ref: str) -> PushRecord | None:
        """The record of `revision` pushed to `ref` (also from the older layout)."""
        found = self._push(push_path(revision, ref))
        if found is None:
            older = self._push(f"pushes/{revision}.yaml")
            found = older if older is not None and older.ref == ref else None
        return found

    def pushed_revisions(self) -> set[str]:
        """The revisions a push record is kept of, on any branch."""
        return {name.removesuffix(".yaml") for name in self.store.list("pushes")}

    def pushes_of(self, revision: str) -> list[PushRecord]:
        """Every record of `revision`, whichever branch it was pushed to."""
        paths = [f"pushes/{revision}/{name}" for name in self.store.list(f"pushes/{revision}")]
        found = [self._push(path) for path in [*paths, f"pushes/{revision}.yaml"]]
        return [push for push in found if push is not None]

    def pushes(self) -> list[PushRecord]:
        """Every push record (both layouts), the newest received first."""
        found = []
        for _, push in self.push_records():
            if isinstance(push, RunyardError):
                raise push
            found.append(push)
        return sorted(found, key=lambda push: push.received or "", reverse=True)

    def push_records(self, commit: str | None = None
                     ) -> list[tuple[str, PushRecord | RunyardError]]:
        """Every push record (both layouts) by its path, or what is wrong with it, as of
        `commit` (the tip), read in one stream of requests."""
        paths = [f"pushes/{path}" for path in self.store.files("pushes", commit)]
        return [(path, _parsed_push(path, raw))
                for path, raw in zip(paths, self.store.read_all(paths, commit), strict=True) if raw]

    def _push(self, path: str) -> PushRecord | None:
        raw = self.store.read(path)
        return PushRecord.from_yaml(raw, f"push {path}") if raw else None

    def last_push(self) -> LastPush | None:
        last = _mapping(self.store.read("index/last-push.yaml"))
        return LastPush(str(last["revision"]), str(last.get("ref", ""))) if last else None

    def completed_with_key(self, run_key: str) -> str | None:
        """The uid of a completed run with this run key, if there is one."""
        raw = self.store.read(_key_path(run_key))
        return raw.decode() if raw else None

    def newest_artifact(self, key: str) -> Artifact | None:
        raw = self.store.read(f"artifacts/{key}.yaml")
        return Artifact.read(yaml.safe_load(raw), f"artifact {key}") if raw else None


def _parsed(uid: str, raw: bytes | None, branch: str) -> RunRecord | RunyardError:
    if raw is None:
        return RunyardError(f"no run {uid!r} on branch {branch}")
    try:
        return RunRecord.from_yaml(raw, f"run {uid}")
    except RunyardError as error:
        return error


def _parsed_push(path: str, raw: bytes) -> PushRecord | RunyardError:
    try:
        return PushRecord.from_yaml(raw, f"push {path}")
    except RunyardError as error:
        return error


def unique_prefixes(uids: Iterable[str], others: Iterable[str] = ()) -> dict[str, str]:
    """Each of `uids`, shortened to the fewest characters (MIN_PREFIX at least) that neither
    another of them nor any of `others` starts with."""
    wanted = list(uids)
    among = sorted({*wanted, *others})
    return {uid: _shortest(uid, among) for uid in wanted}


def _shortest(uid: str, among: list[str]) -> str:
    """`uid`'s shortest prefix that neither neighbour in the sorted `among` shares."""
    at = bisect_left(among, uid)
    neighbours = [among[i] for i in (at - 1, at + 1) if 0 <= i < len(among)]
    shared = max((_common_length(uid, other) for other in neighbours), default=0)
    return uid[:max(MIN_PREFIX, shared + 1)]


def _common_length(a: str, b: str) -> int:
    return next((at for at, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


def _newest_first(rows: list[IndexRow]) -> list[IndexRow]:
    return sorted(rows, key=lambda row: (row.start or "", row.uid), reverse=True)


def _mapping(raw: bytes | None) -> dict[str, Any] | None:
    data = yaml.safe_load(raw) if raw else None
    return data if isinstance(data, dict) else None


def _running_push_name(revision: str, ref: str) -> str:
    return f"{revision}@{quote(ref.removeprefix('refs/heads/'), safe='')}"


def _key_path(run_key: str) -> str:
    return f"index/keys/{run_key[:2]}/{run_key}"
