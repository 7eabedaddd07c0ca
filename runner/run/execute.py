"""Execute tasks: prepare a run's folder, run it on a backend, collect what it made,
and record it (every attempt) on the results branch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from runner.errors import RunyardError
from runner.files import package_file
from runner.project.model import Function, Limits, Project, Resources
from runner.project.policy import Policy
from runner.record.artifacts import ArtifactStore
from runner.record.model import (
    Metadata,
    Params,
    RunInput,
    RunRecord,
    RunResources,
    Spec,
    State,
    Status,
    Trigger,
    now,
)
from runner.record.owner import Owner
from runner.record.results import ResultsBranch, new_uid, run_folder
from runner.run import scratch
from runner.run.backends import NON_ROOT_ID, Backend, DockerBackend, Exit, Launch
from runner.run.inputs import Input, resolve_input
from runner.run.outputs import read_outputs
from runner.run.secrets import Secrets
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
    trigger: Trigger
    on_line: OnLine
    images: Mapping[str, ImageRef] = field(default_factory=dict)
    dirty: bool = False
    on_record: Callable[[RunRecord], None] = lambda record: None
    abort: threading.Event = field(default_factory=threading.Event)
    memoize: bool = False  # for runs started by a push: skip what already completed
    rerun_of: str | None = None  # the run a top-level run of this session repeats
    live_dir: Path | None = None  # where running runs' logs grow, for `runs logs --follow`
    # where attempts' inputs and outputs are staged instead, in a folder every swarm node mounts
    shared_runs: Path | None = None
    # a function's files (YAML, code, requirements) and their git object ids; None for a working tree
    code_files: Callable[[Function], Mapping[str, str | None] | None] = lambda function: None
    tree: str | None = None  # the revision's git tree
    policy: Policy = field(default_factory=Policy)
    run_network: str | None = None  # the network `bridge` runs join; None: the engine's default
    secrets: Secrets = field(default_factory=Secrets)
    owner: Owner = field(default_factory=Owner.current)
    # work a run need not wait for: its `running` record while it starts, the removal of
    # its folder while its final record is written (open_session waits for it at the end)
    aside: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=4, thread_name_prefix="runyard-aside"))
    # held by each attempt while it has a folder and a scratch: trials and steps at once,
    # however they nest, are at most the operator's max_runs
    slots: contextlib.AbstractContextManager[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        runs = self.policy.max_runs
        self.slots = threading.BoundedSemaphore(runs) if runs else contextlib.nullcontext()

    def at_once(self, parallel: int) -> int:
        """How many of `parallel` runs asked for at once may run at once."""
        return min(parallel, self.policy.max_runs or parallel)

    @property
    def limits(self) -> Limits:
        return self.project.limits.within(self.policy.limits)

    def write(self, record: RunRecord, log: bytes | None = None,
              extra: Mapping[str, bytes] | None = None) -> RunRecord:
        """Record `record` (secrets masked everywhere) and return what was recorded."""
        record = record.masked(self.secrets.mask)
        self.results.write(record, None if log is None else self.secrets.mask_bytes(log),
                           {path: self.secrets.mask_bytes(data) for path, data in (extra or {}).items()})
        self.on_record(record)
        return record


def runtime_dir() -> Path:
    return package_file("runtime")


def forget_live(live_dir: Path, uid: str) -> None:
    """Remove a run's files in the live folder (see cli/follow.py), once it is recorded
    as ended."""
    for suffix in (".log", ".runner", ".detached"):
        (live_dir / f"{uid}{suffix}").unlink(missing_ok=True)


def execute(session: Session, task: Task, uid: str | None = None) -> RunRecord:
    """Run `task` (retrying as it asks), record every attempt, return the final record."""
    uid = uid or new_uid()
    earlier: dict[str, bytes] = {}
    for attempt in range(1, task.retries + 2):
        if session.abort.is_set():
            return skip(session, task_record(session, task, uid, attempt), "aborted", "interrupted")
        record, log = _attempt(session, task, uid, attempt)
        last = record.status.state in ("completed", "aborted", "skipped") \
            or attempt == task.retries + 1
        if last:
            recorded = session.write(record, log, earlier)
            if session.live_dir is not None:
                forget_live(session.live_dir, uid)
            return recorded
        folder = run_folder(uid)
        earlier[f"{folder}/attempt-{attempt}.yaml"] = record.to_yaml()
        earlier[f"{folder}/attempt-{attempt}.log"] = log
        session.on_line(task.name, f"attempt {attempt} {record.status.state}; retrying")
    raise AssertionError("unreachable")


def _attempt(session: Session, task: Task, uid: str, attempt: int) -> tuple[RunRecord, bytes]:
    record = task_record(session, task, uid, attempt)
    live = session.live_dir / f"{uid}.log" if session.live_dir else None
    log = _Log(session.secrets, lambda line: session.on_line(task.name, line), live,
               min(session.project.log_limit, session.limits.log))
    with session.slots, _run_dir(session, uid, attempt) as (run_dir, staged):
        try:
            inputs = [resolve_input(name, uri, session.code, session.store, session.results,
                                    session.policy) for name, uri in task.inputs.items()]
        except RunyardError as error:
            return _finish(record, log, Exit(None), error=error.message, reason="input"), log.text()[0]
        key = run_key(session, task, inputs)
        record = replace(record, spec=replace(
            record.spec, run_key=key,
            inputs={i.name: RunInput(uri=i.uri, hash=i.hash, size=i.size) for i in inputs}))
        earlier_run = session.results.completed_with_key(key) if session.memoize and key else None
        if earlier_run:
            # What the earlier run made stands for this one: later steps use its outputs.
            earlier = session.results.read(earlier_run).status
            record = replace(record, status=replace(record.status, skipped_for=earlier_run,
                                                    results=earlier.results,
                                                    artifacts=earlier.artifacts))
            return record.ended("skipped", "memoized", None), b""
        try:
            launch = _launch(session, task, uid, run_dir, staged)
        except RunyardError as error:
            return _finish(record, log, Exit(None), error=error.message, reason="refused"), log.text()[0]
        _write_spec(session, task, uid, launch, inputs)
        own = session.backend.name == "docker" and isinstance(session.backend, DockerBackend)
        record = replace(record, status=replace(  # (a trial worker's container is not the run's)
            record.status, containers=(launch.name,) if own else ()))
        # `running`, with its runner (a lost runner is found by the next), and the scratch are
        # made aside while the backend sets the run up (creates its container); `ready` waits
        # for both, so no run starts unrecorded, and the block's end for both, whatever happens.
        running = session.aside.submit(session.write, record)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runyard-scratch") as making:
            made = making.submit(_make_scratch, session, run_dir) if staged is None else None

            def ready() -> None:
                if made is not None:
                    made.result()
                running.result()

            try:
                exit_ = session.backend.run(launch, log.feed, ready)
            except RunyardError as error:  # the engine went away: the run failed, the runner goes on
                return _finish(record, log, Exit(None), error=error.message, reason="engine"), log.text()[0]
            finally:
                running.result()
        outputs = read_outputs(launch.data_dir / "scratch" / "outputs", session.store,
                               session.limits)
        full = scratch.is_full(launch.data_dir / "scratch")
    record = replace(record, status=replace(
        record.status, results=outputs.results, artifacts=outputs.artifacts))
    if exit_.placed is not None:
        record = replace(record, status=replace(
            record.status, node=exit_.placed.node, service=exit_.placed.service,
            image_digest=exit_.placed.image_digest))
    reason = "outputs" if outputs.refusal else ("disk" if full and exit_.code != 0 else None)
    message = outputs.refusal or (f"the run filled its scratch disk (limit {session.limits.disk} "
                                  "bytes)" if reason == "disk" else outputs.error)
    final = _finish(record, log, exit_, error=message, reason=reason, aborted=session.abort.is_set())
    text, cut = log.text()
    return replace(final, status=replace(final.status, log_truncated=cut)), text


@contextlib.contextmanager
def _run_dir(session: Session, uid: str, attempt: int) -> Iterator[tuple[Path, Path | None]]:
    """The attempt's folder: spec, secrets, inputs and (`_make_scratch`) a size-bound
    scratch; or, with a shared folder, its inputs and outputs staged there instead (no loop
    mount: the other nodes would not see it). Both removed after, aside (the run's record
    need not wait for it)."""
    run_dir = session.workdir / f"{uid}-{attempt}"
    staged = session.shared_runs / run_dir.name if session.shared_runs else None
    run_dir.mkdir(parents=True)
    try:
        (run_dir / "secrets").mkdir(mode=0o755)
        if staged is not None:
            _stage(staged)
        else:
            (run_dir / "inputs").mkdir(mode=0o755)
        yield run_dir, staged
    finally:
        session.aside.submit(_remove_run_dir, run_dir, staged)


def _stage(staged: Path) -> None:
    """An attempt's inputs/ and scratch/outputs/ in the shared folder, out of sight of other
    users of the nodes (the task sees only its mounts), the outputs its user's."""
    staged.mkdir(mode=0o700)
    (staged / "inputs").mkdir(mode=0o755)
    outputs = staged / "scratch" / "outputs"
    outputs.mkdir(parents=True, mode=0o700)
    if os.geteuid() == 0:
        os.chown(outputs, NON_ROOT_ID, NON_ROOT_ID)
    else:
        outputs.chmod(0o777)


def _make_scratch(session: Session, run_dir: Path) -> None:
    templates = session.workdir.parent / scratch.TEMPLATES  # shared by the runners of a repository
    if not scratch.make(run_dir / "scratch", session.limits.disk, templates):
        session.on_line("setup", "scratch disk not bounded (runyard needs root to mount one)")


def _remove_run_dir(run_dir: Path, staged: Path | None) -> None:
    scratch.remove(run_dir / "scratch")
    shutil.rmtree(run_dir, ignore_errors=True)
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)


def run_key(session: Session, task: Task, inputs: list[Input]) -> str | None:
    """What decides the run's outcome, hashed: resolved spec, code, inputs and image."""
    files = session.code_files(task.function)
    if files is None:
        return None
    code = ",".join(f"{path}={object_id}" for path, object_id in files.items())
    image = session.images.get(task.function.name)
    content = {"job": task.job, "function": task.function.name, "handler": task.handler,
               "command": task.function.command, "params": task.params.resolved(),
               "inputs": {i.name: i.hash for i in inputs}, "code": code,
               "image": image.image_id if image else f"local:{session.backend.name}",
               "env": dict(task.function.environment.env), "resources": repr(task.resources)}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def new_record(session: Session, *, uid: str, name: str, job: str | None, iteration: int,
               parent: str | None, labels: Mapping[str, str], params: ParamLevels,
               attempt: int = 1) -> RunRecord:
    """A record in state `running`, started now; callers fill in what they run."""
    return RunRecord(
        Metadata(uid=uid, name=name, project=session.project.name, job=job, iteration=iteration,
                 parent=parent, labels=dict(labels), attempt=attempt,
                 rerun_of=None if parent else session.rerun_of),
        Spec(params=Params(project=dict(params.project), pipeline=dict(params.pipeline),
                           job=dict(params.job), override=dict(params.override),
                           trial=dict(params.trial), step=dict(params.step), resolved=params.resolved()),
             revision=session.revision or "", tree=session.tree, dirty=session.dirty,
             trigger=session.trigger,
             backend=session.backend.name),
        Status(state="running", start=now(), logs="log.txt", runner=str(session.owner),
               host=session.owner.host))


def task_record(session: Session, task: Task, uid: str, attempt: int = 1) -> RunRecord:
    record = new_record(session, uid=uid, name=task.name, job=task.job,
                        iteration=task.iteration, parent=task.parent, labels=task.labels,
                        params=task.params, attempt=attempt)
    image = session.images.get(task.function.name)
    function = task.function
    return replace(record, spec=replace(
        record.spec, function=function.name, handler=task.handler,
        command=tuple(function.command) if function.command else None,
        image=image.tag if image else None, image_id=image.image_id if image else None,
        env_hash=image.env_hash if image else None, resources=_resources(task.resources),
        code=dict(session.code_files(function) or {})))


def _resources(resources: Resources) -> RunResources:
    """The limits that are set (none is 0)."""
    return RunResources(cpu=resources.cpu or None, memory=resources.memory or None,
                        timeout=resources.timeout or None, gpus=resources.gpus or None)


def skip(session: Session, record: RunRecord, state: State, reason: str,
         error: str | None = None) -> RunRecord:
    """Record a run that never started: `skipped` (or `aborted`), and why."""
    return session.write(record.ended(state, reason, error), b"")


def _launch(session: Session, task: Task, uid: str, run_dir: Path,
            staged: Path | None) -> Launch:
    function = task.function
    if function.network == "host" and not session.policy.host_network:
        raise RunyardError(f"function {function.name} asks for the host's network, which this "
                           "runner's operator does not allow")
    image = session.images.get(function.name)
    network = function.network
    if network == "bridge" and session.run_network is not None:
        network = session.run_network
    return Launch(uid=uid, image=image.tag if image else None, runtime=runtime_dir(),
                  code=session.code, run_dir=run_dir,
                  env={**session.project.env, **function.environment.env},
                  resources=task.resources, network=network,
                  placement=(*function.placement, *task.placement), staged=staged,
                  labels={"dev.runyard.project": session.project.name, "dev.runyard.run": uid,
                          "dev.runyard.runner": str(session.owner)})


def _write_spec(session: Session, task: Task, uid: str, launch: Launch,
                inputs: list[Input]) -> None:
    layout = session.backend.layout(launch)
    placed = {}
    for item in inputs:
        target = launch.data_dir / "inputs" / item.name / item.filename
        target.parent.mkdir(parents=True)
        _place(session.store.local_path(item.hash), target, link=session.backend.name != "local")
        placed[item.name] = {"url": item.uri, "hash": item.hash,
                             "path": f"{layout.inputs}/{item.name}/{item.filename}"}
    secrets = session.secrets.for_function(task.function)
    for name, value in secrets.items():
        _write_secret(launch.run_dir / "secrets" / name, value, session.backend.name != "local")
    function = task.function
    deadline = task.resources.timeout
    spec = {"uid": uid, "name": task.name, "project": session.project.name,
            "function": function.name, "code": function.code, "handler": task.handler,
            "command": list(function.command) if function.command else None,
            "params": task.params.to_dict(), "resolved": task.params.resolved(),
            "inputs": placed, "secrets": sorted(secrets),
            # the run ends itself a little after the runner's own timeout: with no runner left
            "deadline": deadline + DEADLINE_GRACE if deadline else None,
            "paths": {"code": layout.code, "work": layout.work, "outputs": layout.outputs,
                      "secrets": layout.secrets}}
    (launch.run_dir / "spec.json").write_text(json.dumps(spec, default=str))


DEADLINE_GRACE = 10.0


def _place(stored: Path, target: Path, *, link: bool) -> None:
    """An input where the run reads it: the store's own file where the run cannot write it
    (a read-only mount), else a copy, so no run ever changes a stored object."""
    if link:
        with contextlib.suppress(OSError):
            os.link(stored, target)
            return
    shutil.copyfile(stored, target)


def _write_secret(path: Path, value: str, for_container: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    if for_container:  # the container runs as nobody: its own file, and nobody else's
        os.chown(path, NON_ROOT_ID, NON_ROOT_ID)
        os.chown(path.parent, NON_ROOT_ID, NON_ROOT_ID)
        path.parent.chmod(0o500)


def _finish(record: RunRecord, log: _Log, exit_: Exit, *, error: str | None = None,
            reason: str | None = None, aborted: bool = False) -> RunRecord:
    record = replace(record, status=replace(record.status, exit_code=exit_.code))
    failed = reason or exit_.reason or (exit_.code != 0 and "exit") or None
    if not failed:
        return record.ended("completed")
    if aborted:
        return record.ended("aborted", "interrupted", "stopped by an interruption")
    limits = record.spec.resources
    message = {
        "timeout": f"timed out after {limits.timeout} s",
        "oom": f"killed: out of memory (limit {limits.memory} bytes)",
        "interrupted": "stopped by an interruption",
    }.get(failed) or error or exit_.message or f"exit code {exit_.code}: {log.tail()}"
    return record.ended("failed", "error" if failed == "exit" and error else failed, message)


class _Log:
    """A run's output: secrets masked, passed on by line, and its tail kept for the record
    (never more than the log limit in memory, however much the run prints)."""

    def __init__(self, secrets: Secrets, emit: Callable[[str], None], live: Path | None,
                 limit: int) -> None:
        self.secrets = secrets
        self.emit = emit
        self.live = live  # a file another process may follow (`runs logs --follow`)
        self.limit = limit
        self.kept: deque[bytes] = deque()
        self.kept_size = self.total = 0
        self.pending = b""
        self.lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        with self.lock:
            self.pending += chunk
            *lines, self.pending = self.pending.split(b"\n")
            if len(self.pending) > self.limit:  # one endless line: cut it into pieces
                lines.extend(self._piece())
            self._lines(lines)

    def _piece(self) -> list[bytes]:
        """The endless line so far, masked, less its last bytes that may begin a secret
        the run has not finished printing: they stay pending, to be masked with the rest."""
        masked = self.secrets.mask_bytes(self.pending)
        cut = max(len(masked) - self.secrets.longest + 1, 0)
        piece, self.pending = masked[:cut], masked[cut:]
        return [piece] if piece else []

    def _lines(self, lines: list[bytes]) -> None:
        masked = [self.secrets.mask_bytes(raw) + b"\n" for raw in lines]
        for line in masked:
            self.emit(line[:-1].decode("utf-8", "replace"))
            self._keep(line)
        if self.live is not None and masked:  # one write per chunk, not per line
            with self.live.open("ab") as live:
                live.write(b"".join(masked))

    def _keep(self, line: bytes) -> None:
        self.kept.append(line)
        self.kept_size += len(line)
        self.total += len(line)
        while self.kept_size > self.limit and len(self.kept) > 1:
            self.kept_size -= len(self.kept.popleft())

    def text(self) -> tuple[bytes, bool]:
        """The log kept, and whether it was cut to the limit."""
        with self.lock:
            if self.pending:
                self._lines([self.pending])
                self.pending = b""
            data = b"".join(self.kept)[-self.limit:]
            cut = self.total > len(data)
        if not cut:
            return data, False
        note = f"[runyard: log cut to its last {len(data)} bytes of {self.total}]\n".encode()
        return note + data, True

    def tail(self, lines: int = 5) -> str:
        with self.lock:
            recent = b"".join(list(self.kept)[-lines:])
        return recent.decode("utf-8", "replace").rstrip("\n")

