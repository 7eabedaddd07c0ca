"""Run records on the results branch: one folder per run, readable with `git show`.

    runs/<last two of uid>/<uid>/run.yaml     the record (DESIGN §3)
    runs/<last two of uid>/<uid>/log.txt      its log, capped (the tail kept)
    runs/.../<uid>/attempt-<n>.yaml           earlier attempts, when retried
    artifacts/<key>.yaml                      the newest artifact of each key
    index/running/<uid>                       a run recorded `running`, and its runner
    pushes/<revision>/<branch>.yaml           one record per pushed revision and branch
                                              (`/` in a branch name written %2F)
    pushes/<revision>.yaml                    the older layout: one record per revision
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import yaml

from runner.errors import RunyardError
from runner.record.gitstore import GitStore
from runner.record.model import Artifact, Part, PushRecord, RunRecord, State, dump

RUNNING = "index/running"  # one file per running run, naming its runner


def new_uid() -> str:
    """Sortable by time (milliseconds), unique by a random tail."""
    return f"{int(time.time() * 1000):011x}{os.urandom(3).hex()}"


def run_folder(uid: str) -> str:
    return f"runs/{uid[-2:]}/{uid}"


def push_path(revision: str, ref: str) -> str:
    """Where the record of `revision` pushed to `ref` (a branch) lives."""
    return f"pushes/{revision}/{quote(ref.removeprefix('refs/heads/'), safe='')}.yaml"


class LastPush(NamedTuple):
    revision: str
    ref: str


@dataclass(frozen=True)
class NewestRun(Part):
    """The newest top-level run of a job, as index/jobs/<job>.yaml keeps it."""

    uid: str
    revision: str
    state: State
    end: str | None = None


class ResultsBranch:
    """The records of one project on one branch of its repository."""

    def __init__(self, git_dir: Path, branch: str) -> None:
        self.store = GitStore(git_dir, branch)
        self.branch = branch

    def close(self) -> None:
        """Stop the git process reads go through (the next read starts it again)."""
        self.store.close()

    def write(self, record: RunRecord, log: bytes | None = None,
              extra: Mapping[str, bytes] | None = None) -> str:
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
        return self.store.commit({**files, **(extra or {}), **running},
                                 f"run {meta.uid} {meta.name}: {status.state}")

    def read(self, uid: str) -> RunRecord:
        raw = self.store.read(f"{run_folder(uid)}/run.yaml")
        if raw is None:
            raise RunyardError(f"no run {uid!r} on branch {self.branch}")
        return RunRecord.from_yaml(raw, f"run {uid}")

    def find(self, prefix: str) -> str:
        """The full uid of the one run whose uid starts with `prefix`."""
        matches = [uid for uid in self.uids() if uid.startswith(prefix)]
        if len(matches) != 1:
            what = "no run" if not matches else f"{len(matches)} runs"
            raise RunyardError(f"{what} on branch {self.branch} with uid starting {prefix!r}")
        return matches[0]

    def log(self, uid: str) -> bytes:
        return self.store.read(f"{run_folder(uid)}/log.txt") or b""

    def uids(self) -> list[str]:
        """Every run's uid, newest first."""
        return sorted((p.rsplit("/", 1)[-1] for p in self.store.folders("runs") if p.count("/") == 1),
                      reverse=True)

    def records(self, limit: int | None = None) -> Iterator[RunRecord]:
        for count, uid in enumerate(self.uids()):
            if limit is not None and count >= limit:
                return
            yield self.read(uid)

    def running(self) -> dict[str, str]:
        """The runs recorded `running`: uid -> the runner that started them."""
        return {uid: (self.store.read(f"{RUNNING}/{uid}") or b"").decode()
                for uid in self.store.list(RUNNING)}

    def newest_of_job(self, job: str) -> NewestRun | None:
        raw = self.store.read(f"index/jobs/{job}.yaml")
        return NewestRun.read(yaml.safe_load(raw), f"job {job}'s newest run") if raw else None

    def write_push(self, push: PushRecord) -> str:
        """The record of one processed push, and the newest revision processed."""
        files = {push_path(push.revision, push.ref): push.to_yaml(),
                 "index/last-push.yaml": dump({"revision": push.revision, "ref": push.ref})}
        branch = push.ref.removeprefix("refs/heads/")
        return self.store.commit(files, f"push {push.revision[:12]} to {branch}: {push.status}")

    def push(self, revision: str, ref: str) -> PushRecord | None:
        """The record of `revision` pushed to `ref` (also from the older layout)."""
        found = self._push(push_path(revision, ref))
        if found is None:
            older = self._push(f"pushes/{revision}.yaml")
            found = older if older is not None and older.ref == ref else None
        return found

    def pushes_of(self, revision: str) -> list[PushRecord]:
        """Every record of `revision`, whichever branch it was pushed to."""
        paths = [f"pushes/{revision}/{name}" for name in self.store.list(f"pushes/{revision}")]
        found = [self._push(path) for path in [*paths, f"pushes/{revision}.yaml"]]
        return [push for push in found if push is not None]

    def pushes(self) -> list[PushRecord]:
        """Every push record (both layouts), the newest received first."""
        found = [self._push(f"pushes/{path}") for path in self.store.files("pushes")]
        return sorted((push for push in found if push is not None),
                      key=lambda push: push.received or "", reverse=True)

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


def _mapping(raw: bytes | None) -> dict[str, Any] | None:
    data = yaml.safe_load(raw) if raw else None
    return data if isinstance(data, dict) else None


def _key_path(run_key: str) -> str:
    return f"index/keys/{run_key[:2]}/{run_key}"
