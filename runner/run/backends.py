"""Where a run's process lives: a hardened Docker container, or a local subprocess.

Both backends run the same runtime on the same folder layout; only the paths the
runtime sees differ (`Layout`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol

from runner.model import Resources

if TYPE_CHECKING:
    import docker

OnOutput = Callable[[bytes], None]
NON_ROOT = "65534:65534"


class Layout(NamedTuple):
    """The paths the runtime sees."""

    runtime: str
    code: str
    inputs: str
    work: str
    outputs: str
    spec: str


class Launch(NamedTuple):
    uid: str
    image: str | None
    runtime: Path
    code: Path
    run_dir: Path  # holds spec.json, inputs/, work/, outputs/
    env: dict[str, str]
    resources: Resources
    network: str = "bridge"
    labels: Mapping[str, str] = MappingProxyType({})


class Exit(NamedTuple):
    code: int | None
    reason: str | None = None  # "timeout", "oom", "interrupted"


class Backend(Protocol):
    name: str

    def layout(self, launch: Launch) -> Layout: ...

    def run(self, launch: Launch, on_output: OnOutput) -> Exit: ...

    def stop_all(self) -> None: ...


def host_layout(launch: Launch) -> Layout:
    run_dir = launch.run_dir
    return Layout(str(launch.runtime), str(launch.code), str(run_dir / "inputs"),
                  str(run_dir / "work"), str(run_dir / "outputs"), str(run_dir / "spec.json"))


CONTAINER_LAYOUT = Layout("/runyard/runtime", "/runyard/code", "/runyard/inputs",
                          "/runyard/work", "/runyard/outputs", "/runyard/spec.json")


class LocalBackend:
    """A subprocess of this machine's Python: quick to start, for debugging (MLRun's local=True).

    cpu and memory limits are not enforced here; the timeout is.
    """

    name = "local"

    def __init__(self) -> None:
        self.running: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()

    def layout(self, launch: Launch) -> Layout:
        return host_layout(launch)

    def run(self, launch: Launch, on_output: OnOutput) -> Exit:
        layout = self.layout(launch)
        env = {**os.environ, **launch.env, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        process = subprocess.Popen(
            [sys.executable, "-u", f"{layout.runtime}/entry.py", layout.spec], cwd=layout.work,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        with self.lock:
            self.running.add(process)
        assert process.stdout is not None
        stdout = process.stdout.fileno()
        reader = threading.Thread(target=_pump, args=(lambda n: os.read(stdout, n), on_output),
                                  daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=launch.resources.timeout)
            reason = None
        except subprocess.TimeoutExpired:
            process.kill()
            code, reason = process.wait(), "timeout"
        finally:
            with self.lock:
                self.running.discard(process)
        reader.join()
        return Exit(code, reason if reason else ("interrupted" if code < 0 else None))

    def stop_all(self) -> None:
        with self.lock:
            for process in self.running:
                process.kill()


class DockerBackend:
    """A container: not root, no capabilities, no new privileges, code and inputs read-only."""

    name = "docker"

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def layout(self, launch: Launch) -> Layout:
        return CONTAINER_LAYOUT

    def run(self, launch: Launch, on_output: OnOutput) -> Exit:
        import requests

        inside, run_dir = CONTAINER_LAYOUT, launch.run_dir
        mounts = {
            str(launch.runtime): {"bind": inside.runtime, "mode": "ro"},
            str(launch.code): {"bind": inside.code, "mode": "ro"},
            str(run_dir / "inputs"): {"bind": inside.inputs, "mode": "ro"},
            str(run_dir / "spec.json"): {"bind": inside.spec, "mode": "ro"},
            str(run_dir / "work"): {"bind": inside.work, "mode": "rw"},
            str(run_dir / "outputs"): {"bind": inside.outputs, "mode": "rw"},
        }
        limits = launch.resources
        container = self.client.containers.run(
            launch.image, ["python3", "-u", f"{inside.runtime}/entry.py", inside.spec],
            detach=True, name=f"runyard-{launch.uid}", user=NON_ROOT, working_dir=inside.work,
            environment={**launch.env, "HOME": inside.work, "PYTHONUNBUFFERED": "1",
                         "PYTHONDONTWRITEBYTECODE": "1"},
            volumes=mounts, security_opt=["no-new-privileges"], cap_drop=["ALL"],
            network_mode=launch.network, pids_limit=4096, labels=dict(launch.labels),
            mem_limit=limits.memory, memswap_limit=limits.memory,
            nano_cpus=int(limits.cpu * 1e9) if limits.cpu else None,
        )
        with self.lock:
            self.running.add(container.id)
        stream = container.logs(stream=True, follow=True)
        reader = threading.Thread(target=_drain, args=(stream, on_output), daemon=True)
        reader.start()
        reason = None
        try:
            status = container.wait(timeout=limits.timeout)
            code: int | None = status.get("StatusCode")
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            container.kill()
            code, reason = container.wait().get("StatusCode"), "timeout"
        finally:
            reader.join(timeout=10)
            container.reload()
            if container.attrs["State"].get("OOMKilled"):
                reason = "oom"
            with self.lock:
                self.running.discard(container.id)
            container.remove(force=True)
        return Exit(code, reason)

    def stop_all(self) -> None:
        with self.lock:
            ids = list(self.running)
        for container_id in ids:
            with contextlib.suppress(Exception):  # it may have ended by itself meanwhile
                self.client.containers.get(container_id).kill()


def _pump(read: Callable[[int], bytes], on_output: OnOutput) -> None:
    while chunk := read(65536):
        on_output(chunk)


def _drain(stream: object, on_output: OnOutput) -> None:
    for chunk in stream:  # type: ignore[attr-defined]
        on_output(chunk)
