"""Warm trial workers: the trials of a hyper-parameter job forked inside long-lived
containers of the function's image, instead of a container per trial.

A worker is a container started once, with the same hardening and limits as a
run's own, whose first process is the runtime's fork server (runtime/forkserver.py),
reached through two named pipes. It runs one trial at a time, so its memory limit is
exactly the trial's. Its container comes from a WorkerHost: this engine's
(ContainerWorkers), or a swarm's, a service pinned to this node (swarm.SwarmWorkers;
the runner mounts the trials' folders into it, which it can only do here).

Every trial keeps its own folder as any run does (execute._run_dir: spec, inputs,
secrets and a size-bound scratch). For the trial's time, the runner mounts its
parts into the worker at the paths a run's own container has them
(/runyard/inputs and /runyard/secrets read-only, /runyard/work,
/runyard/outputs and /tmp from its scratch), with its spec in /runyard/trial
and its output file in /runyard/log. The worker's mounts of those places are
slaves of a shared mount of the worker's folder, so the runner's mounts appear
inside the running container, and leave it again when the trial ends. A file a
trial leaves behind goes with its scratch; a process it leaves behind is killed
by the fork server before the next trial starts.

A trial's timeout kills the trial's processes, not the worker. A trial that runs
the worker out of memory is recorded `oom` (the kernel's count of the worker's
OOM kills went up); a worker that died is replaced by a new one. (The fork
server itself takes some 15 MB of that limit.) Workers carry the runner's label:
if the runner is killed, their fork servers see their input end and exit, which
ends the trials, and the next runner removes the containers and the mounts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Protocol

from runner.build.engine import DockerEngine, Unreachable
from runner.errors import RunyardError
from runner.project.model import Hyper
from runner.record.results import new_uid
from runner.run.backends import (
    CONTAINER_LAYOUT,
    NON_ROOT_ID,
    DockerBackend,
    Exit,
    Launch,
    Layout,
    OnOutput,
    Placed,
    Ready,
    Unplaced,
    WorkerSpec,
    container_env,
    hardened,
)
from runner.run.execute import Session
from runner.run.forkclient import ForkChannel, ServerGone, follow_file
from runner.run.mounts import (
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOSUID,
    MS_RDONLY,
    MS_REMOUNT,
    MS_SHARED,
    mount,
    unmount,
)
from runner.run.swarm import SwarmBackend, SwarmWorkers

WORKER_LAYOUT = CONTAINER_LAYOUT._replace(spec="/runyard/trial/spec.json")
CONTROL = "/runyard/control"
LOG = "/runyard/log"  # a folder of the trial's scratch with its output file
OUTPUT = "output.log"
# Where a trial's parts go: (in its folder, in the worker, read-only).
PLACES = (("", "/runyard/trial", True), ("inputs", CONTAINER_LAYOUT.inputs, True),
          ("secrets", CONTAINER_LAYOUT.secrets, True),
          ("scratch/work", CONTAINER_LAYOUT.work, False),
          ("scratch/outputs", CONTAINER_LAYOUT.outputs, False),
          ("scratch/tmp", CONTAINER_LAYOUT.tmp, False), ("scratch/log", LOG, False))
WORKER_LABEL = "dev.runyard.worker"
RUN_LABEL = "dev.runyard.run"
START_TIMEOUT = 60.0  # seconds for a new worker to answer
READY = b'{"ready": true}\n'  # the fork server's first reply
KILL_GRACE = 10.0  # seconds for a killed trial to be reaped before its worker is given up


@contextmanager
def trial_backend(session: Session, hyper: Hyper) -> Iterator[Hyper]:
    """Run the trials of `hyper` in warm workers when it asks for process isolation (the
    default on the Docker and swarm backends): the session's backend is a WorkerPool
    meanwhile. Yields `hyper` with the isolation that is used (None on the local backend)."""
    backend = session.backend
    if backend.name == "local":  # a fork server of this host's, whatever the job asks
        yield replace(hyper, isolation=None)
        return
    if hyper.isolation == "container":
        yield hyper
        return
    host = _worker_host(session)
    if host is None:
        yield replace(hyper, isolation="container")
        return
    try:
        pool = WorkerPool(host, session.workdir / f"workers-{new_uid()}")
    except RunyardError as error:
        session.on_line("setup", f"no trial workers ({error.message}): a container per trial")
        yield replace(hyper, isolation="container")
        return
    session.backend = pool
    try:
        yield replace(hyper, isolation="process")
    finally:
        session.backend = backend
        pool.close()


def _worker_host(session: Session) -> WorkerHost | None:
    """Where the session's workers come from; None (and why, said) where it can have none."""
    backend = session.backend
    if os.geteuid() != 0:  # the trials' folders are mounted into the workers
        session.on_line("setup", "trial workers need root (mounts): a container per trial")
        return None
    if isinstance(backend, DockerBackend):
        return ContainerWorkers(backend)
    if isinstance(backend, SwarmBackend):
        if session.shared_runs is None:
            return SwarmWorkers(backend)
        session.on_line("setup", "swarm: with execution.shared, a service per trial (a trial "
                        "worker takes its trials' folders from this node's runner)")
    return None


class WorkerHost(Protocol):
    """Where a worker's container comes from: this engine's containers (ContainerWorkers),
    or a swarm's services (swarm.SwarmWorkers). A handle names the container or service."""

    name: str
    engine: DockerEngine

    def start(self, launch: Launch, worker: WorkerSpec) -> str: ...

    def check(self, handle: str) -> bool:
        """While it starts: raise once it ended, or will not start; True while it waits for
        resources others hold."""

    def container(self, handle: str) -> str:
        """Its container, on this engine, once it runs."""

    def placed(self, handle: str) -> Placed | None: ...

    def kill(self, handle: str) -> None: ...

    def discard(self, handle: str) -> None:
        """Remove it, in the background."""

    def stop_all(self) -> None: ...


class ContainerWorkers:
    """Workers as containers of this engine, with the runtime and the code bound in."""

    name = "docker"

    def __init__(self, docker: DockerBackend) -> None:
        self.docker, self.engine = docker, docker.engine

    def start(self, launch: Launch, worker: WorkerSpec) -> str:
        inside = WORKER_LAYOUT
        config = hardened(launch, worker.labels, worker.env)
        config["HostConfig"]["Mounts"] = [_bind(launch.runtime, inside.runtime),
                                          _bind(launch.code, inside.code), *worker.mounts]
        config.update(Cmd=worker.command, WorkingDir="/")
        try:
            container = self.engine.create_container(worker.name, config)
        except Unreachable as error:  # the engine refused it: the trial fails, the job goes on
            raise _not_started(launch, error) from error
        try:
            self.engine.start(container)
        except Unreachable as error:
            self.docker.discard(container)
            raise _not_started(launch, error) from error
        return container

    def check(self, handle: str) -> bool:
        state = ((self.engine.inspect_container(handle) or {}).get("State") or {})
        if state.get("Status") not in ("created", "running"):
            logs = b"".join(self.engine.logs(handle))[-2000:].decode("utf-8", "replace")
            raise RunyardError(f"trial worker {handle[:12]} ended as it started: {logs}")
        return False

    def container(self, handle: str) -> str:
        return handle

    def placed(self, handle: str) -> Placed | None:
        return None

    def kill(self, handle: str) -> None:
        with contextlib.suppress(*Unreachable):  # it may have ended by itself meanwhile
            self.engine.kill(handle)

    def discard(self, handle: str) -> None:
        self.docker.discard(handle)

    def stop_all(self) -> None:
        self.docker.stop_all()


class WorkerPool:
    """A Backend whose runs are forked in workers: an idle worker of the same image and
    settings if there is one, else a new one."""

    def __init__(self, host: WorkerHost, root: Path) -> None:
        self.host = host
        self.name = host.name
        self.root = root
        self.lock = threading.Lock()
        self.idle: dict[tuple[Any, ...], list[Worker]] = {}
        self.workers: list[Worker] = []
        self.stopping = False
        self.takes = 0  # runs that took a worker
        self.last_run: int | None = None  # the number of runs after which none will come
        (root / "stage").mkdir(parents=True)
        (root / "workers").mkdir()
        try:  # mounts made below it reach the workers' slave mounts (see the module's doc)
            mount(root / "workers", root / "workers", MS_BIND)
            mount(None, root / "workers", MS_SHARED)
        except RunyardError:
            unmount(root / "workers")
            shutil.rmtree(root, ignore_errors=True)
            raise

    def layout(self, launch: Launch) -> Layout:
        return WORKER_LAYOUT

    def run(self, launch: Launch, on_output: OnOutput, ready: Ready) -> Exit:
        try:
            worker = self._take(launch)
        except Unplaced as error:
            return Exit(None, "unplaced", error.message)
        if worker is None:
            return Exit(None, "interrupted")
        try:
            exit_ = worker.run(launch, on_output, ready)
        except BaseException:
            worker.kill()
            raise
        finally:
            self._give_back(worker)
        if exit_.reason is None and self.stopping and exit_.code != 0:
            return Exit(exit_.code, "interrupted")
        return exit_

    def stop_all(self) -> None:
        with self.lock:
            self.stopping = True
            workers = list(self.workers)
        for worker in workers:
            worker.kill()
        self.host.stop_all()

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            workers, self.workers = self.workers, []
            self.idle.clear()
        for worker in workers:  # their fork servers end with their input, and so the containers
            worker.end()
        for worker in workers:  # (removing an ended container is quicker than a running one)
            worker.remove()
        unmount(self.root / "workers")
        shutil.rmtree(self.root, ignore_errors=True)

    def _take(self, launch: Launch) -> Worker | None:
        key = _key(launch)
        while True:
            with self.lock:
                if self.stopping:
                    return None
                idle = self.idle.get(key)
                if idle:
                    self.takes += 1
                    worker = idle.pop()
                    retire = self._done_with_workers()
                else:
                    worker, retire = None, False
            if worker is not None:
                if retire:
                    self._retire_idle()
                return worker
            with contextlib.suppress(_Starved):
                return self._new_worker(launch, key)

    def _new_worker(self, launch: Launch, key: tuple[Any, ...]) -> Worker | None:
        name = new_uid()
        worker = Worker(self.host, launch, self.root / "workers" / name,
                        self.root / "stage" / name, lambda: self._starved(key))
        with self.lock:
            self.takes += 1
            self.workers.append(worker)
            stopping = self.stopping
        if stopping:  # stop_all came while it started
            worker.kill()
            return None
        self._retire_idle()
        return worker

    def _starved(self, key: tuple[Any, ...]) -> bool:
        """A new worker waits for what idle workers hold (a swarm's reservations): True when
        one of its kind is idle now, to be taken instead; else one of another kind goes."""
        with self.lock:
            if self.idle.get(key):
                return True
            other = next((w for workers in self.idle.values() for w in workers), None)
            if other is not None:
                self.idle[other.key].remove(other)
                self.workers.remove(other)
        if other is not None:
            other.remove()
        return False

    def drain(self, runs: int) -> None:
        """No more than `runs` runs come (in all): once they all took a worker, a worker that
        is or falls idle goes at once, while the last trials run, not all at the end."""
        with self.lock:
            self.last_run = runs
        self._retire_idle()

    def _done_with_workers(self) -> bool:
        return self.last_run is not None and self.takes >= self.last_run

    def _retire_idle(self) -> None:
        with self.lock:
            if not self._done_with_workers():
                return
            idle = [worker for workers in self.idle.values() for worker in workers]
            self.idle.clear()
            for worker in idle:
                self.workers.remove(worker)
        for worker in idle:
            worker.remove()

    def _give_back(self, worker: Worker) -> None:
        with self.lock:
            if worker.alive and not self.stopping and not self._done_with_workers():
                self.idle.setdefault(worker.key, []).append(worker)
                return
            if worker in self.workers:
                self.workers.remove(worker)
        worker.remove()


def _key(launch: Launch) -> tuple[Any, ...]:
    """What must be alike for two runs to share a worker: all the container is made with."""
    labels = {k: v for k, v in launch.labels.items() if k != RUN_LABEL}
    return (launch.image, str(launch.runtime), str(launch.code), launch.resources,
            launch.network, tuple(sorted(launch.env.items())), tuple(sorted(labels.items())))


class Worker:
    """One container with a fork server, and its folder on the host: a folder for each of
    PLACES (where a trial's parts are mounted) and control/ (the named pipes)."""

    def __init__(self, host: WorkerHost, launch: Launch, folder: Path, stage: Path,
                 starved: Callable[[], bool]) -> None:
        """`starved`: called while it waits for resources others hold; True gives it up
        (_Starved)."""
        self.key = _key(launch)
        self.folder, self.stage = folder, stage
        self.stopped = False  # killed by the runner
        folder.mkdir()
        for number in range(len(PLACES)):
            (folder / str(number)).mkdir()
        (folder / "control").mkdir()
        stage.mkdir()
        pipes = [folder / "control" / name for name in ("in", "out")]
        for pipe in pipes:
            os.mkfifo(pipe, 0o600)
            os.chown(pipe, NON_ROOT_ID, NON_ROOT_ID)
        labels = {k: v for k, v in launch.labels.items() if k != RUN_LABEL}
        inside = WORKER_LAYOUT
        self.host, self.engine, self.name = host, host.engine, f"runyard-worker-{folder.name}"
        self.starved = starved
        self.handle = host.start(launch, WorkerSpec(
            self.name, {**labels, WORKER_LABEL: "1"}, container_env(launch, inside),
            [_bind(folder / "control", CONTROL),
             *(_bind(folder / str(number), target, read_only=read_only, slave=True)
               for number, (_, target, read_only) in enumerate(PLACES))],
            ["python3", "-u", f"{inside.runtime}/entry.py", "--serve", CONTROL]))
        self.container: str | None = None
        self.channel: ForkChannel | None = None
        try:
            self.channel = self._connect(*pipes)
            self.container = host.container(self.handle)
            self.placed = host.placed(self.handle)
        except BaseException:
            self.kill()
            host.discard(self.handle)
            raise
        for pipe in pipes:  # connected: nothing else in the container may open them now
            pipe.chmod(0)
        found = (self.engine.inspect_container(self.container) or {}).get("Config") or {}
        self.env = dict(item.partition("=")[::2] for item in found.get("Env") or [])
        self.oom_counter = _oom_counter(self.container)

    @property
    def alive(self) -> bool:
        return self.channel is not None and self.channel.open and not self.stopped

    def run(self, launch: Launch, on_output: OnOutput, ready: Ready) -> Exit:
        ready()
        (launch.run_dir / "scratch" / "log").mkdir()
        output = _trial_output(launch.run_dir / "scratch" / "log" / OUTPUT)
        ended = threading.Event()
        reader = threading.Thread(target=follow_file, args=(output, on_output, ended), daemon=True)
        reader.start()
        try:
            self._attach(launch.run_dir)
            ooms = self._ooms()
            code, reason = self._trial(launch)
            if self._ooms() > ooms or (code is None and self._oom_killed()):
                reason = "oom"
        finally:
            self._detach()
            ended.set()
            reader.join(timeout=10)
        return Exit(code, reason, placed=self.placed)

    def _trial(self, launch: Launch) -> tuple[int | None, str | None]:
        assert self.channel is not None
        inside = WORKER_LAYOUT
        try:
            pid = self.channel.start({"spec": inside.spec, "cwd": inside.work, "env": self.env,
                                      "log": f"{LOG}/{OUTPUT}"})
            code = self.channel.wait(pid, launch.resources.timeout or None)
            if code is not None:
                return code, None
            self.channel.kill(pid)
            code = self.channel.wait(pid, KILL_GRACE)
            if code is None:  # the worker does not answer: give it up
                self.kill()
            return code, "timeout"
        except ServerGone:  # the worker died (or was killed) with the trial
            return None, "interrupted" if self.stopped else None

    def kill(self) -> None:
        """Kill the container (its trial with it); the channel sees it go."""
        self.stopped = True
        self.host.kill(self.handle)

    def end(self) -> None:
        if self.channel is not None:
            self.channel.close()

    def remove(self) -> None:
        self.end()
        self.host.discard(self.handle)
        self._detach()

    def _connect(self, requests: Path, replies: Path) -> ForkChannel:
        """Open the pipes once the fork server has; its first reply says it is ready."""
        check = _StartCheck(self.host, self.handle, self.name, self.starved)
        writer = None
        while writer is None:
            try:
                writer = os.open(requests, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                check()
        reader = -1
        try:
            os.set_blocking(writer, True)
            reader = os.open(replies, os.O_RDONLY | os.O_NONBLOCK)
            ready = b""
            while not ready.endswith(b"\n") and len(ready) < len(READY):
                chunk = b""
                with contextlib.suppress(BlockingIOError):
                    chunk = os.read(reader, len(READY) - len(ready))
                if not chunk:  # (no writer yet reads as an empty pipe)
                    check()
                ready += chunk
            if ready != READY:
                raise RunyardError(f"trial worker {self.name} did not start its "
                                   "fork server")
            os.set_blocking(reader, True)
            return ForkChannel(os.fdopen(writer, "wb"), os.fdopen(reader, "rb"))
        except BaseException:
            os.close(writer)
            if reader >= 0:
                os.close(reader)
            raise

    def _attach(self, run_dir: Path) -> None:
        """The trial's parts at their places. A read-only one is made read-only before it
        moves under the shared mount: a remount there would not reach the worker's copy."""
        for number, (part, _, read_only) in enumerate(PLACES):
            source, place = run_dir / part if part else run_dir, self.folder / str(number)
            if not read_only:
                mount(source, place, MS_BIND)
                continue
            mount(source, self.stage, MS_BIND)
            try:
                mount(None, self.stage, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
                mount(self.stage, place, MS_MOVE)
            except RunyardError:
                unmount(self.stage)
                raise

    def _detach(self) -> None:
        for number in range(len(PLACES)):  # (os.path.ismount misses a bind of the same disk)
            unmount(self.folder / str(number))

    def _ooms(self) -> int:
        """How many processes the kernel killed in the worker for its memory limit."""
        if self.oom_counter is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in self.oom_counter.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
        return 0

    def _oom_killed(self) -> bool:
        if self.container is None:
            return False
        with contextlib.suppress(*Unreachable):
            found = self.engine.inspect_container(self.container) or {}
            return bool((found.get("State") or {}).get("OOMKilled"))
        return False


def _not_started(launch: Launch, error: Exception) -> RunyardError:
    return RunyardError(f"could not start a trial worker of {launch.image}: {error}")


class _Starved(Exception):
    """A new worker, waiting for resources, was given up for an idle one."""


class _StartCheck:
    """Called while a worker starts: waits a little, and fails once it ended, will not
    start or took too long (its host asked every half second). The time it waits for
    resources others hold does not count: a container per trial would wait as long."""

    def __init__(self, host: WorkerHost, handle: str, name: str,
                 starved: Callable[[], bool]) -> None:
        self.host, self.handle, self.name, self.starved = host, handle, name, starved
        self.deadline = time.monotonic() + START_TIMEOUT
        self.next_look = time.monotonic() + 0.5

    def __call__(self) -> None:
        time.sleep(0.005)
        now = time.monotonic()
        if now < self.next_look:
            return
        self.next_look = now + 0.5
        if self.host.check(self.handle):
            if self.starved():
                raise _Starved
            self.deadline = now + START_TIMEOUT
        if now > self.deadline:
            raise RunyardError(f"trial worker {self.name} did not answer within "
                               f"{START_TIMEOUT:.0f} s")


def _trial_output(path: Path) -> IO[bytes]:
    """The trial's output file, made by the runner (the trial, nobody, may write it) and
    opened for reading before the trial runs."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.fchown(fd, NON_ROOT_ID, NON_ROOT_ID)
    os.close(fd)
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def _oom_counter(container_id: str) -> Path | None:
    """The file of the worker's cgroup that counts its OOM kills (cgroup v1 or v2)."""
    for path in (f"/sys/fs/cgroup/memory/docker/{container_id}/memory.oom_control",
                 f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.events",
                 f"/sys/fs/cgroup/docker/{container_id}/memory.events"):
        if os.path.exists(path):
            return Path(path)
    return None


def _bind(source: Path, target: str, *, read_only: bool = True,
          slave: bool = False) -> dict[str, Any]:
    bind: dict[str, Any] = {"Type": "bind", "Source": str(source), "Target": target,
                            "ReadOnly": read_only}
    if slave:
        bind["BindOptions"] = {"Propagation": "rslave"}
    return bind
