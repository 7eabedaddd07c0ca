"""Execute tasks: prepare a run's folder, run it on a backend, collect what it made,
and record it (every attempt) on the results branch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from runner.model import Function, Project
from runner.record.artifacts import ArtifactStore
from runner.record.results import (
    RECORD_VERSION,
    ResultsBranch,
    cap_log,
    dump,
    new_uid,
    run_folder,
)
from runner.run.backends import Backend, Exit, Launch
from runner.run.inputs import Input, resolve_input
from runner.run.task import ParamLevels, Task

OnLine = Callable[[str, str], None]  # (run name, line of its log)


class ImageRef(NamedTuple):
    tag: str
    image_id: str
    env_hash: str


@dataclass
class Session:
    """What the runs of one invocation share: project, snapshot, backend, stores."""

    project: Project
    code: Path
    workdir: Path
    backend: Backend
    store: ArtifactStore
    results: ResultsBranch
    revision: str | None
    trigger: Mapping[str, Any]
    on_line: OnLine
    images: Mapping[str, ImageRef] = field(default_factory=dict)
    dirty: bool = False
    on_record: Callable[[Mapping[str, Any]], None] = lambda record: None
    abort: threading.Event = field(default_factory=threading.Event)
    memoize: bool = False  # for runs started by a push: skip what already completed
    live_dir: Path | None = None  # where running runs' logs grow, for `runs logs --follow`
    code_hash: Callable[[Function], str | None] = lambda function: None

    def write(self, record: dict[str, Any], log: bytes | None = None,
              extra: Mapping[str, bytes] | None = None) -> dict[str, Any]:
        self.results.write(record, log, extra)
        self.on_record(record)
        return record

    def secrets(self) -> dict[str, str]:
        return {name: os.environ[name] for name in self.project.secrets if os.environ.get(name)}


def runtime_dir() -> Path:
    return Path(str(resources.files("runner") / "runtime"))


def execute(session: Session, task: Task, uid: str | None = None) -> dict[str, Any]:
    """Run `task` (retrying as it asks), record every attempt, return the final record."""
    uid = uid or new_uid()
    earlier: dict[str, bytes] = {}
    for attempt in range(1, task.retries + 2):
        if session.abort.is_set():
            return skip(session, task_record(session, task, uid, attempt), "aborted", "interrupted")
        record, log = _attempt(session, task, uid, attempt)
        last = record["status"]["state"] in ("completed", "aborted", "skipped") \
            or attempt == task.retries + 1
        if last:
            session.write(record, log, earlier)
            if session.live_dir is not None:
                (session.live_dir / f"{uid}.log").unlink(missing_ok=True)
            return record
        folder = run_folder(uid)
        earlier[f"{folder}/attempt-{attempt}.yaml"] = dump(record)
        earlier[f"{folder}/attempt-{attempt}.log"] = log
        session.on_line(task.name, f"attempt {attempt} {record['status']['state']}; retrying")
    raise AssertionError("unreachable")


def _attempt(session: Session, task: Task, uid: str, attempt: int) -> tuple[dict[str, Any], bytes]:
    run_dir = session.workdir / f"{uid}-{attempt}"
    for folder in ("inputs", "work", "outputs"):
        (run_dir / folder).mkdir(parents=True)
        (run_dir / folder).chmod(0o777)  # the container runs as nobody
    record = task_record(session, task, uid, attempt)
    live = session.live_dir / f"{uid}.log" if session.live_dir else None
    log = _Log(session.secrets(), lambda line: session.on_line(task.name, line), live)
    try:
        inputs = [resolve_input(name, uri, session.code, run_dir / "fetched", session.store,
                                session.results) for name, uri in task.inputs.items()]
    except Exception as error:
        return _finish(record, log, Exit(None), error=str(error), reason="input"), log.text()
    record["spec"]["inputs"] = {i.name: {"uri": i.uri, "hash": i.hash, "size": i.size}
                                for i in inputs}
    record["spec"]["run_key"] = run_key(session, task, inputs)
    earlier_run = session.memoize and session.results.completed_with_key(record["spec"]["run_key"])
    if earlier_run:
        # What the earlier run made stands for this one: later steps use its outputs.
        earlier = session.results.read(earlier_run)["status"]
        record["status"].update(skipped_for=earlier_run, results=earlier.get("results", {}),
                                artifacts=earlier.get("artifacts", []))
        end(record, "skipped", "memoized", None)
        return record, b""
    launch = _launch(session, task, uid, run_dir)
    _write_spec(session, task, uid, launch, inputs)
    exit_ = session.backend.run(launch, log.feed)
    outputs = _collect(session, run_dir / "outputs")
    record["status"]["results"] = outputs.results
    record["status"]["artifacts"] = outputs.artifacts
    final = _finish(record, log, exit_, error=outputs.error, aborted=session.abort.is_set())
    shutil.rmtree(run_dir, ignore_errors=True)
    return final, log.text(session.project.log_limit, final)


def succeeded(record: Mapping[str, Any]) -> bool:
    """Completed, or skipped because an identical run completed before (memoized)."""
    status = record["status"]
    return bool(status["state"] == "completed"
                or (status["state"] == "skipped" and status.get("reason") == "memoized"))


def run_key(session: Session, task: Task, inputs: list[Input]) -> str | None:
    """What decides the run's outcome, hashed: resolved spec, code, inputs and image."""
    code = session.code_hash(task.function)
    if code is None:
        return None
    image = session.images.get(task.function.name)
    content = {"function": task.function.name, "handler": task.handler,
               "command": task.function.command, "params": task.params.resolved(),
               "inputs": {i.name: i.hash for i in inputs}, "code": code,
               "image": image.image_id if image else f"local:{session.backend.name}",
               "env": dict(task.function.environment.env), "resources": repr(task.resources)}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def new_record(session: Session, *, uid: str, name: str, job: str | None, iteration: int,
               parent: str | None, labels: Mapping[str, str], params: ParamLevels,
               attempt: int = 1) -> dict[str, Any]:
    """A record in state `running`, started now; callers fill in what they run."""
    return {
        "apiVersion": RECORD_VERSION,
        "kind": "run",
        "metadata": {"uid": uid, "name": name, "project": session.project.name, "job": job,
                     "iteration": iteration, "parent": parent, "labels": dict(labels),
                     "attempt": attempt},
        "spec": {"function": None, "pipeline": None, "handler": None, "command": None,
                 "run_key": None,
                 "params": {**params.to_dict(), "resolved": params.resolved()},
                 "inputs": {}, "hyper": None, "image": None, "image_id": None, "env_hash": None,
                 "revision": session.revision or "", "dirty": session.dirty,
                 "trigger": dict(session.trigger), "backend": session.backend.name,
                 "resources": {}},
        "status": {"state": "running", "reason": None, "start": _iso(datetime.now(UTC)),
                   "end": None, "duration": None, "exit_code": None, "results": {},
                   "artifacts": [], "error": None, "best_iteration": None, "trials": [],
                   "logs": "log.txt", "log_truncated": False, "skipped_for": None},
    }


def task_record(session: Session, task: Task, uid: str, attempt: int = 1) -> dict[str, Any]:
    record = new_record(session, uid=uid, name=task.name, job=task.job,
                        iteration=task.iteration, parent=task.parent, labels=task.labels,
                        params=task.params, attempt=attempt)
    image = session.images.get(task.function.name)
    function = task.function
    record["spec"].update(
        function=function.name, handler=task.handler,
        command=list(function.command) if function.command else None,
        image=image.tag if image else None, image_id=image.image_id if image else None,
        env_hash=image.env_hash if image else None,
        resources={k: v for k, v in task.resources.__dict__.items() if v})
    return record


def skip(session: Session, record: dict[str, Any], state: str, reason: str,
         error: str | None = None) -> dict[str, Any]:
    """Record a run that never started: `skipped` (or `aborted`), and why."""
    end(record, state, reason, error)
    return session.write(record, b"")


def end(record: dict[str, Any], state: str, reason: str | None = None,
        error: str | None = None) -> dict[str, Any]:
    status = record["status"]
    ended = datetime.now(UTC)
    status.update(state=state, reason=reason, error=error, end=_iso(ended),
                  duration=round((ended - datetime.fromisoformat(status["start"]))
                                 .total_seconds(), 3))
    return record


def _launch(session: Session, task: Task, uid: str, run_dir: Path) -> Launch:
    function = task.function
    env = {**session.project.env, **function.environment.env, **session.secrets()}
    image = session.images.get(function.name)
    return Launch(uid=uid, image=image.tag if image else None, runtime=runtime_dir(),
                  code=session.code, run_dir=run_dir, env=env, resources=task.resources,
                  network=function.network,
                  labels={"dev.runyard.project": session.project.name, "dev.runyard.run": uid})


def _write_spec(session: Session, task: Task, uid: str, launch: Launch,
                inputs: list[Input]) -> None:
    layout = session.backend.layout(launch)
    placed = {}
    for item in inputs:
        target = launch.run_dir / "inputs" / item.name / item.path.name
        target.parent.mkdir(parents=True)
        _link_or_copy(item.path, target)
        placed[item.name] = {"url": item.uri, "hash": item.hash,
                             "path": f"{layout.inputs}/{item.name}/{item.path.name}"}
    function = task.function
    spec = {"uid": uid, "name": task.name, "project": session.project.name,
            "function": function.name, "code": function.code, "handler": task.handler,
            "command": list(function.command) if function.command else None,
            "params": task.params.to_dict(), "resolved": task.params.resolved(),
            "inputs": placed, "secrets": list(session.project.secrets),
            "paths": {"code": layout.code, "work": layout.work, "outputs": layout.outputs}}
    (launch.run_dir / "spec.json").write_text(json.dumps(spec, default=str))


class _Outputs(NamedTuple):
    results: dict[str, Any]
    artifacts: list[dict[str, Any]]
    error: str | None


def _collect(session: Session, outputs: Path) -> _Outputs:
    results = _read_json(outputs / "results.json", {})
    listed = _read_json(outputs / "artifacts.json", [])
    error = _read_json(outputs / "error.json", None)
    artifacts = []
    for item in listed if isinstance(listed, list) else []:
        path = outputs / "artifacts" / str(item.get("path", ""))
        if not path.is_file():
            continue
        stored = session.store.put(path)
        artifacts.append({"key": item["key"], "kind": item.get("kind") or "file",
                          "hash": stored.hash, "size": stored.size, "uri": stored.uri})
    message = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None
    return _Outputs(results if isinstance(results, dict) else {}, artifacts, message)


def _finish(record: dict[str, Any], log: _Log, exit_: Exit, *, error: str | None = None,
            reason: str | None = None, aborted: bool = False) -> dict[str, Any]:
    status = record["status"]
    ended = datetime.now(UTC)
    status["end"] = _iso(ended)
    status["duration"] = round((ended - datetime.fromisoformat(status["start"])).total_seconds(), 3)
    status["exit_code"] = exit_.code
    failed = reason or exit_.reason or (exit_.code != 0 and "exit") or None
    status["state"] = "failed" if failed else "completed"
    if failed and aborted:
        status.update(state="aborted", reason="interrupted", error="stopped by an interruption")
        return record
    if not failed:
        return record
    status["reason"] = "error" if failed == "exit" and error else failed
    limit = record["spec"]["resources"].get("memory")
    status["error"] = {
        "timeout": f"timed out after {record['spec']['resources'].get('timeout')} s",
        "oom": f"killed: out of memory (limit {limit} bytes)",
        "interrupted": "stopped by an interruption",
    }.get(failed) or error or f"exit code {exit_.code}: {log.tail()}"
    return record


class _Log:
    """A run's output: secrets masked, kept in full for the record, passed on by line."""

    def __init__(self, secrets: Mapping[str, str], emit: Callable[[str], None],
                 live: Path | None = None) -> None:
        self.masks = [value.encode() for value in secrets.values() if value]
        self.emit = emit
        self.live = live  # a file another process may follow (`runs logs --follow`)
        self.data = bytearray()
        self.pending = b""
        self.lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        with self.lock:
            self.pending += chunk
            *lines, self.pending = self.pending.split(b"\n")
            self._lines(lines)

    def _lines(self, lines: list[bytes]) -> None:
        masked = []
        for raw in lines:
            for mask in self.masks:
                raw = raw.replace(mask, b"***")
            masked.append(raw + b"\n")
            self.emit(raw.decode("utf-8", "replace"))
        self.data += b"".join(masked)
        if self.live is not None and masked:  # one write per chunk, not per line
            with self.live.open("ab") as live:
                live.write(b"".join(masked))

    def text(self, limit: int | None = None, record: dict[str, Any] | None = None) -> bytes:
        with self.lock:
            if self.pending:
                self._lines([self.pending])
                self.pending = b""
        data = bytes(self.data)
        if limit is None:
            return data
        capped, cut = cap_log(data, limit)
        if record is not None:
            record["status"]["log_truncated"] = cut
        return capped

    def tail(self, lines: int = 5) -> str:
        return "\n".join(bytes(self.data).decode("utf-8", "replace").splitlines()[-lines:])


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return default


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")
