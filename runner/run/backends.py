"""Where a run's process lives: a hardened Docker container, or a local subprocess.

Both backends run the same runtime on the same folder layout; only the paths the
runtime sees differ (`Layout`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from runner.build.engine import DockerEngine, EngineError, Unreachable
from runner.errors import RunyardError
from runner.project.model import Resources
from runner.run.forkclient import ForkChannel, ServerGone, follow_file

OnOutput = Callable[[bytes], None]
Ready = Callable[[], None]  # returns once the run may start: its scratch made, its record written
NON_ROOT_ID = 65534  # nobody
NON_ROOT = f"{NON_ROOT_ID}:{NON_ROOT_ID}"
LOG_FILE_LIMIT = "16m"  # the engine's own copy of a run's output, on the host's disk
# the engine's events that tell a run's container ended (`oom` comes before its `die`)
_ENDS: dict[str, str | list[str]] = {"type": "container", "event": ["die", "oom"]}


class Layout(NamedTuple):
    """The paths the runtime sees."""

    runtime: str
    code: str
    inputs: str
    work: str
    outputs: str
    spec: str
    secrets: str
    tmp: str


class Launch(NamedTuple):
    uid: str
    image: str | None
    runtime: Path
    code: Path
    run_dir: Path  # holds spec.json, secrets/, and inputs/ and scratch/ unless `staged`
    env: dict[str, str]
    resources: Resources
    network: str = "bridge"
    labels: Mapping[str, str] = MappingProxyType({})
    placement: tuple[str, ...] = ()  # where a backend of many machines may run it
    staged: Path | None = None  # inputs/ and scratch/ here, in a folder every node mounts

    @property
    def name(self) -> str:
        """The container's name: one per attempt."""
        return f"runyard-{self.run_dir.name}"

    @property
    def data_dir(self) -> Path:
        """The folder of the run's inputs/ and scratch/."""
        return self.staged or self.run_dir


class Exit(NamedTuple):
    code: int | None
    reason: str | None = None  # "timeout", "oom", "interrupted", "unplaced", "node"
    message: str | None = None  # why, when the reason alone does not say
    placed: Placed | None = None  # where a backend of many machines ran it


class WorkerSpec(NamedTuple):
    """A trial worker's container (runner/run/workers.py), as its pool asks a backend for it:
    the image, runtime and code are its launch's."""

    name: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    mounts: list[dict[str, Any]]  # the control pipes and the places of a trial's parts
    command: list[str]


class Unplaced(RunyardError):
    """No node will take a run: a run that waits for one is given up (reason `unplaced`)."""


class Placed(NamedTuple):
    """Where a run ran, on a backend of many machines."""

    node: str | None
    service: str
    image_digest: str


class Backend(Protocol):
    name: str

    def layout(self, launch: Launch) -> Layout: ...

    def run(self, launch: Launch, on_output: OnOutput, ready: Ready) -> Exit:
        """Run `launch` to its end, passing on its output. `ready` is called before the run's
        process starts: a backend may set the run up meanwhile."""

    def stop_all(self) -> None: ...

    def close(self) -> None: ...


def host_layout(launch: Launch) -> Layout:
    run_dir, scratch = launch.run_dir, launch.data_dir / "scratch"
    return Layout(str(launch.runtime), str(launch.code), str(launch.data_dir / "inputs"),
                  str(scratch / "work"), str(scratch / "outputs"), str(run_dir / "spec.json"),
                  str(run_dir / "secrets"), str(scratch / "tmp"))


CONTAINER_LAYOUT = Layout("/runyard/runtime", "/runyard/code", "/runyard/inputs",
                          "/runyard/work", "/runyard/outputs", "/runyard/spec.json",
                          "/runyard/secrets", "/tmp")


class LocalBackend:
    """This machine's Python, for quick debugging (MLRun's local=True): each run is a
    child of a fork server that has the interpreter and the runtime loaded, so a
    trial costs a fork, not a Python start-up. cpu and memory are not limited here;
    the timeout is.
    """

    name = "local"

    def __init__(self) -> None:
        self.server = _ForkServer()
        self.running: set[int] = set()
        self.lock = threading.Lock()

    def layout(self, launch: Launch) -> Layout:
        return host_layout(launch)

    def run(self, launch: Launch, on_output: OnOutput, ready: Ready) -> Exit:
        ready()
        layout = self.layout(launch)
        output = launch.run_dir / "output.log"
        output.touch()
        env = {**os.environ, **launch.env, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "TMPDIR": layout.tmp}
        pid = self.server.start(launch.runtime, layout.spec, layout.work, env, output)
        with self.lock:
            self.running.add(pid)
        ended = threading.Event()
        reader = threading.Thread(target=follow_file, args=(output.open("rb"), on_output, ended),
                                  daemon=True)
        reader.start()
        try:
            code, reason = self.server.wait(pid, launch.resources.timeout), None
            if code is None:
                _kill_group(pid)
                code, reason = self.server.wait(pid, None), "timeout"
        finally:
            with self.lock:
                self.running.discard(pid)
            ended.set()
            reader.join()
        interrupted = code is not None and code < 0 and reason is None
        return Exit(code, reason or ("interrupted" if interrupted else None))

    def stop_all(self) -> None:
        with self.lock:
            for pid in self.running:
                _kill_group(pid)

    def close(self) -> None:
        self.server.close()


class _ForkServer:
    """A fork server on this host (runtime/forkserver.py), started at the first run."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: ForkChannel | None = None
        self.lock = threading.Lock()

    def start(self, runtime: Path, spec: str, cwd: str, env: Mapping[str, str],
              log: Path) -> int:
        try:
            return self._running(runtime).start({"spec": spec, "cwd": cwd, "env": dict(env),
                                                 "log": str(log)})
        except ServerGone:
            code = self.process.poll() if self.process else None
            raise RuntimeError(f"the local backend's fork server died ({code})") from None

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The run's exit code (None when the server died), or None when `timeout`
        seconds passed first."""
        assert self.channel is not None
        try:
            return self.channel.wait(pid, timeout)
        except ServerGone:
            return None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.channel is not None
            self.channel.close()
            self.process.wait(timeout=10)

    def _running(self, runtime: Path) -> ForkChannel:
        with self.lock:
            if self.process is None or self.process.poll() is not None or self.channel is None:
                self.process = subprocess.Popen(
                    [sys.executable, "-u", str(runtime / "entry.py"), "--serve"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                    env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
                assert self.process.stdin is not None and self.process.stdout is not None
                self.channel = ForkChannel(self.process.stdin, self.process.stdout)
            return self.channel


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class DockerBackend:
    """A container: not root, no capabilities, no new privileges, code and inputs read-only.

    A run's end is told by the engine's events (`die`, and `oom` before it), and its output
    comes from an attach: both as the container's process ends. The engine's answer to a
    wait comes only once it has taken the container's network and mounts down, some 50 ms
    later; it then removes the container itself (AutoRemove), with or without this runner.
    """

    name = "docker"

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine
        self.running: set[str] = set()
        self.lock = threading.Lock()
        # Removing a container (one that never started, a trial worker) takes a while; the
        # next run need not wait for it.
        self.removals = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runyard-rm")

    def layout(self, launch: Launch) -> Layout:
        return CONTAINER_LAYOUT

    def run(self, launch: Launch, on_output: OnOutput, ready: Ready) -> Exit:
        try:
            container = self.engine.create_container(launch.name, container_config(launch))
        except Unreachable as error:
            raise _lost(launch, error) from error
        try:
            ready()  # its folder made and its record written while the engine created it
            return self._follow(launch, container, on_output)
        except BaseException:
            self.discard(container)
            raise

    def _follow(self, launch: Launch, container: str, on_output: OnOutput) -> Exit:
        """Start the container and follow it to its end (killed after its timeout)."""
        with self.lock:
            self.running.add(container)
        try:
            # opened before the start, so nothing it prints and not its end are missed
            with self.engine.events(_ENDS | {"container": container}) as events, \
                    self.engine.attach(container) as output:
                reader = threading.Thread(target=_drain, args=(output, on_output), daemon=True)
                self.engine.start(container)
                reader.start()
                with _Deadline(self.engine, container, launch.resources.timeout) as deadline:
                    code, oom = _ending(events)
                reader.join(timeout=10)
        except Unreachable as error:  # the engine went away: not the run's doing
            raise _lost(launch, error) from error
        finally:
            with self.lock:
                self.running.discard(container)
        return Exit(code, "oom" if oom else "timeout" if deadline.passed else None)

    def discard(self, container: str) -> None:
        """Remove the container in the background (`close` waits for it)."""
        self.removals.submit(self._remove, container)

    def _remove(self, container: str) -> None:
        with contextlib.suppress(*Unreachable):  # gone already, or no engine to ask
            self.engine.remove_container(container)

    def close(self) -> None:
        """Wait for the removal of the containers discarded."""
        self.removals.shutdown(wait=True)

    def stop_all(self) -> None:
        with self.lock:
            ids = list(self.running)
        for container in ids:
            with contextlib.suppress(*Unreachable):  # it may have ended by itself meanwhile
                self.engine.kill(container)


def container_config(launch: Launch) -> dict[str, Any]:
    """The engine's ContainerCreate body of a run: its image, the runtime, the mounts and
    every hardening and limit."""
    inside, host = CONTAINER_LAYOUT, host_layout(launch)
    config = hardened(launch, launch.labels, container_env(launch, inside))
    config["HostConfig"]["Binds"] = [
        f"{host.runtime}:{inside.runtime}:ro", f"{host.code}:{inside.code}:ro",
        f"{host.inputs}:{inside.inputs}:ro", f"{host.spec}:{inside.spec}:ro",
        f"{host.secrets}:{inside.secrets}:ro", f"{host.work}:{inside.work}:rw",
        f"{host.outputs}:{inside.outputs}:rw", f"{host.tmp}:{inside.tmp}:rw"]
    config["HostConfig"]["AutoRemove"] = True
    return {**config, "Cmd": ["python3", "-u", f"{inside.runtime}/entry.py", inside.spec],
            "WorkingDir": inside.work}


def container_env(launch: Launch, inside: Layout) -> dict[str, str]:
    return {**launch.env, "HOME": inside.work, "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": inside.tmp}


def hardened(launch: Launch, labels: Mapping[str, str], env: Mapping[str, str]) -> dict[str, Any]:
    """What every container of a run (or of a trial worker) is made with: not root, no
    capabilities, no new privileges, a read-only root, the run's limits and labels."""
    limits = launch.resources
    host_config: dict[str, Any] = {
        "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"], "CapDrop": ["ALL"],
        "NetworkMode": launch.network, "PidsLimit": 4096,
        "LogConfig": {"Type": "json-file", "Config": {"max-size": LOG_FILE_LIMIT, "max-file": "1"}},
    }
    if limits.memory:
        host_config.update(Memory=limits.memory, MemorySwap=limits.memory)
    if limits.cpu:
        host_config["NanoCpus"] = int(limits.cpu * 1e9)
    return {"Image": launch.image, "User": NON_ROOT, "Labels": dict(labels),
            "Env": [f"{name}={value}" for name, value in env.items()], "HostConfig": host_config}


def _lost(launch: Launch, error: Exception) -> RunyardError:
    if isinstance(error, EngineError) and error.status is not None:
        return RunyardError(f"the Docker engine refused run {launch.uid}: {error}")
    return RunyardError(f"lost the Docker engine during run {launch.uid}: {error}")


class _Deadline:
    """Kills a container when its time is up, and says whether it did."""

    def __init__(self, engine: DockerEngine, container: str, timeout: float | None) -> None:
        self.engine, self.container = engine, container
        self.passed = False
        self.timer = threading.Timer(timeout, self._kill) if timeout else None

    def __enter__(self) -> _Deadline:
        if self.timer is not None:
            self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()  # a kill under way has said whether it killed

    def _kill(self) -> None:
        try:
            self.engine.kill(self.container)
            self.passed = True
        except Unreachable:  # it ended by itself meanwhile, or the engine is gone (the run says so)
            pass


def _ending(events: Iterator[dict[str, Any]]) -> tuple[int | None, bool]:
    """A container's exit code, and whether it ran out of memory, from its events."""
    oom = False
    for event in events:
        if event.get("Action") == "oom":
            oom = True
        elif event.get("Action") == "die":
            code = ((event.get("Actor") or {}).get("Attributes") or {}).get("exitCode")
            return (int(code) if isinstance(code, str) and code.isdigit() else None), oom
    raise EngineError("the engine stopped sending the run's events")


def _drain(output: Iterator[bytes], on_output: OnOutput) -> None:
    """Pass on a container's output as it comes."""
    try:
        for chunk in output:
            on_output(chunk)
    except Unreachable:  # the engine went away: the run is lost, and said so
        on_output(b"runyard: the container's output was cut off: the engine stopped sending it\n")
