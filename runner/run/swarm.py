"""The swarm backend: each run a replicated-job service of a Docker Swarm, on any node.

What a run needs travels without a shared disk where Swarm can carry it: the code
snapshot and the runtime in a thin image layer per revision (pushed to the project's
registry, pinned by digest), the spec as a Swarm config, secrets as Swarm secrets.
Inputs and the run's scratch (work, outputs, tmp) are still bind mounts of the runner's
run folder: the task must run on a node that has that folder (README: "Swarm").
Retries stay runyard's: the service never restarts its task.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import requests

from runner.errors import RunyardError
from runner.project.model import Resources
from runner.record.owner import Owner
from runner.run.backends import (
    CONTAINER_LAYOUT,
    LOG_FILE_LIMIT,
    NON_ROOT_ID,
    Exit,
    Launch,
    Layout,
    OnOutput,
    Placed,
    host_layout,
)
from runner.run.reconcile import RUNNER_LABEL

if TYPE_CHECKING:
    import docker

SWARM_LAYOUT = CONTAINER_LAYOUT._replace(secrets="/run/secrets")  # where Swarm mounts secrets
ISOLATED_NETWORK = "runyard-isolated"  # for `network: none`: an internal overlay, no way out
PIDS_LIMIT = 4096
FINAL_STATES = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})
WAITING_STATES = frozenset({"new", "pending", "allocated"})  # not yet on a node
LAYER_LABEL = "dev.runyard.layer"


class TaskState(NamedTuple):
    """What the engine says of a service's one task."""

    state: str
    error: str | None
    exit_code: int | None
    container: str | None
    node: str | None

    @classmethod
    def of(cls, found: Mapping[str, Any]) -> TaskState:
        status = found.get("Status") or {}
        container = status.get("ContainerStatus") or {}
        return cls(status.get("State", "new"), status.get("Err"), container.get("ExitCode"),
                   container.get("ContainerID"), found.get("NodeID"))


def swarm_problem(client: docker.DockerClient) -> str | None:
    """Why this engine cannot run swarm services, or None when it is a swarm manager."""
    swarm = client.info().get("Swarm") or {}
    if swarm.get("ControlAvailable"):
        return None
    state = swarm.get("LocalNodeState", "inactive")
    if state == "active":
        return ("this Docker engine is a swarm worker, not a manager: run runyard on a manager "
                "node (`docker node ls` there lists them)")
    return (f"this Docker engine is not part of a swarm (state: {state}): make it a manager "
            "with `docker swarm init --advertise-addr ADDRESS`, then join workers with the "
            "command `docker swarm join-token worker` prints")


def registry_problem(registry: str, timeout: float = 5.0) -> str | None:
    """Why `registry` (HOST:PORT) does not answer as a registry, or None when it does."""
    errors = []
    for scheme in ("https", "http"):
        try:
            answer = requests.get(f"{scheme}://{registry}/v2/", timeout=timeout)
        except requests.RequestException as error:
            errors.append(f"{scheme}: {type(error).__name__}")
            continue
        if answer.status_code in (200, 401):  # 401: it answers, and wants a login
            return None
        errors.append(f"{scheme}: HTTP {answer.status_code}")
    return f"the registry {registry} does not answer ({'; '.join(errors)})"


def remove_service(client: docker.DockerClient, service: str) -> None:
    """Remove a service and its containers on this node: the engine (20.10) leaves a removed
    service's containers behind, running ones too. (Other nodes' are their engines' to end.)"""
    _quietly(client.api.remove_service, service)
    label = f"com.docker.swarm.service.id={service}"
    with contextlib.suppress(Exception):
        for found in client.api.containers(all=True, filters={"label": label}):
            _quietly(functools.partial(client.api.remove_container, found["Id"], force=True))


def reconcile_services(client: docker.DockerClient, on_note: Callable[[str], None]) -> None:
    """Remove the services, secrets and configs of lost runners (labelled with their runner)."""
    label = {"label": RUNNER_LABEL}
    for kind, listing in (("service", client.api.services), ("secret", client.api.secrets),
                          ("config", client.api.configs)):
        for found in listing(filters=label):
            labels = (found.get("Spec") or {}).get("Labels") or {}
            owner = Owner.parse(labels.get(RUNNER_LABEL, ""))
            if owner is None or not owner.is_lost():
                continue
            if kind == "service":
                remove_service(client, found["ID"])
            else:
                _quietly(getattr(client.api, f"remove_{kind}"), found["ID"])
            name = (found.get("Spec") or {}).get("Name", found["ID"])
            on_note(f"removed {kind} {name} of lost runner {owner}")


class SwarmBackend:
    """A replicated-job service per run: not root, no capabilities, read-only root."""

    name = "swarm"

    def __init__(self, client: docker.DockerClient, registry: str, *,
                 pending_timeout: float = 60.0, poll: float = 0.2) -> None:
        problem = swarm_problem(client)
        if problem:
            raise RunyardError(problem)
        self.client = client
        self.registry = registry
        # How long a task may find no node for it (at most its own timeout): nodes may join.
        self.pending_timeout = pending_timeout
        self.hostnames: dict[str, str] = {}
        self.poll = poll
        self.images: dict[tuple[str, str], str] = {}  # (environment image, code dir) -> pinned
        self.image_lock = threading.Lock()
        self.running: set[str] = set()
        self.stopping = threading.Event()  # an interruption: every run ends, none starts
        self.lock = threading.Lock()
        # Removing a finished run's service and container takes a while; the next run need
        # not wait for it.
        self.removals = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runyard-rm")

    def layout(self, launch: Launch) -> Layout:
        return SWARM_LAYOUT

    def run(self, launch: Launch, on_output: OnOutput) -> Exit:
        import docker

        image = self.image_for(launch)
        made: list[tuple[str, str]] = []  # ("secret" | "config", id), removed at the end
        service = None
        try:
            spec = _config(self.client, launch, made)
            secrets = _secrets(self.client, launch, made)
            service = self.client.api.create_service(
                self._task_template(launch, image, spec, secrets), name=launch.name,
                labels=dict(launch.labels),
                mode=docker.types.ServiceMode("replicated-job", replicas=1))["ID"]
            with self.lock:
                self.running.add(service)
            with _Follow(self.client, service, on_output):
                exit_ = self._wait(service, launch)
            node = exit_.placed.node if exit_.placed else None
            return exit_._replace(placed=Placed(self._hostname(node), service, image))
        except docker.errors.APIError as error:
            raise RunyardError(f"the swarm refused run {launch.uid}: "
                               f"{error.explanation or error}") from error
        except requests.exceptions.ConnectionError as error:
            raise RunyardError(f"lost the Docker engine during run {launch.uid}: {error}") \
                from error
        finally:
            if service is not None:
                with self.lock:
                    self.running.discard(service)
            self.removals.submit(self._remove, service, made)

    def _remove(self, service: str | None, made: list[tuple[str, str]]) -> None:
        """Remove a run's service, its container on this node (the engine leaves it for a
        while), then its secrets and config (not before: the service holds them)."""
        if service is not None:
            remove_service(self.client, service)
        for kind, made_id in made:
            _quietly(getattr(self.client.api, f"remove_{kind}"), made_id)

    def _hostname(self, node: str | None) -> str | None:
        """A node's hostname, as `docker node ls` shows it (its id, if it has left)."""
        import docker

        if node is None:
            return None
        if node not in self.hostnames:
            try:
                self.hostnames[node] = self.client.api.inspect_node(node)["Description"]["Hostname"]
            except docker.errors.APIError:
                return node
        return self.hostnames[node]

    def stop_all(self) -> None:
        self.stopping.set()  # a service created from now on is removed by its own run
        with self.lock:
            services = list(self.running)
        for service in services:
            remove_service(self.client, service)

    def close(self) -> None:
        """Wait for the removal of the finished runs' services, secrets and configs."""
        self.removals.shutdown(wait=True)

    # --- the image: environment + code + runtime -----------------------------------------

    def image_for(self, launch: Launch) -> str:
        """The run's image, `REGISTRY/NAME@sha256:...`: its environment image with the code
        snapshot and the runtime on top, built and pushed once per environment and tree."""
        if launch.image is None:
            raise RunyardError("the swarm backend runs images: the function has none")
        key = (launch.image, str(launch.code))
        with self.image_lock:
            if key not in self.images:
                self.images[key] = self._build_and_push(launch)
            return self.images[key]

    def _build_and_push(self, launch: Launch) -> str:
        import docker

        assert launch.image is not None
        context = run_image_context(launch.image, launch.runtime, launch.code)
        tree = hashlib.sha256(context).hexdigest()[:12]
        name, _, env_hash = launch.image.rpartition(":")
        repository = f"{self.registry}/{name}"
        tag = f"{env_hash}-{tree}"
        try:
            self.client.images.get(f"{repository}:{tag}")
        except docker.errors.ImageNotFound:
            _stream(self.client.api.build(fileobj=io.BytesIO(context), custom_context=True,
                                          tag=f"{repository}:{tag}", rm=True, forcerm=True,
                                          decode=True, labels={LAYER_LABEL: tree}),
                    f"building the run image {repository}:{tag}")
        try:
            pushed = _stream(self.client.api.push(repository, tag, stream=True, decode=True),
                             f"the registry {self.registry} refused the image {repository}:{tag}")
        except RunyardError:
            _quietly(self.client.api.remove_image, f"{repository}:{tag}")
            raise
        if pushed is None:
            raise RunyardError(f"pushing {repository}:{tag} gave no digest")
        return f"{repository}@{pushed}"

    # --- the service ---------------------------------------------------------------------

    def _task_template(self, launch: Launch, image: str, spec: Any, secrets: list[Any]) -> Any:
        import docker

        types = docker.types
        inside, host = SWARM_LAYOUT, host_layout(launch)
        binds = [(host.inputs, inside.inputs, True), (host.work, inside.work, False),
                 (host.outputs, inside.outputs, False), (host.tmp, inside.tmp, False)]
        container = types.ContainerSpec(
            image, command=["python3", "-u", f"{inside.runtime}/entry.py", inside.spec],
            user=f"{NON_ROOT_ID}:{NON_ROOT_ID}", workdir=inside.work, read_only=True,
            # The service carries the runner's label; its containers go with it (and not one
            # by one, as reconcile_containers would remove a lost runner's).
            cap_drop=["ALL"], labels={k: v for k, v in launch.labels.items() if k != RUNNER_LABEL},
            env={**launch.env, "HOME": inside.work, "PYTHONUNBUFFERED": "1",
                 "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": inside.tmp},
            mounts=[types.Mount(target, source, type="bind", read_only=read_only)
                    for source, target, read_only in binds],
            configs=[spec], secrets=secrets)
        return types.TaskTemplate(
            container, resources=_resources(launch.resources),
            restart_policy=types.RestartPolicy(condition="none"),
            placement=types.Placement(constraints=list(launch.placement)),
            log_driver=types.DriverConfig("json-file",
                                          {"max-size": LOG_FILE_LIMIT, "max-file": "1"}),
            networks=self._networks(launch.network))

    def _networks(self, mode: str) -> list[str]:
        if mode == "bridge":
            return []  # a task without networks gets the node's default bridge
        if mode == "host":
            return ["host"]
        found = self.client.api.networks(names=[ISOLATED_NETWORK])
        if found:
            return [found[0]["Id"]]
        with contextlib.suppress(Exception):  # another runner may make it meanwhile
            self.client.api.create_network(ISOLATED_NETWORK, driver="overlay", internal=True,
                                           labels={"dev.runyard.network": "isolated"})
        return [self.client.api.networks(names=[ISOLATED_NETWORK])[0]["Id"]]

    def _wait(self, service: str, launch: Launch) -> Exit:
        """The task's end: its exit code, and why it ended early (timeout, oom, interrupted)."""
        timeout = launch.resources.timeout
        waiting_since = time.monotonic()
        started: float | None = None
        while True:
            if self.stopping.is_set():
                return Exit(None, "interrupted")
            found = self.client.api.tasks(filters={"service": service})
            # The first task is the run: one the swarm makes after it (its node left) is not.
            first = min(found, key=lambda t: t.get("CreatedAt", "")) if found else None
            task = TaskState.of(first) if first else TaskState("new", None, None, None, None)
            now = time.monotonic()
            if task.state in FINAL_STATES:
                return self._ended(task, launch)
            if task.state in WAITING_STATES:
                unplaced = self._unplaced(task, launch, now - waiting_since)
                if unplaced:
                    return Exit(None, "unplaced", unplaced)
            elif started is None:
                started = now
            if started is not None and timeout and now - started > timeout:
                # run() removes the service, once the log is read to this moment
                return Exit(None, "timeout", placed=Placed(task.node, service, ""))
            time.sleep(self.poll)

    def _unplaced(self, task: TaskState, launch: Launch, waited: float) -> str | None:
        """Why the task will not find a node, once that is sure; None while it may."""
        error = task.error or ""
        if "insufficient resources" in error:
            wanted = launch.resources
            if not any(_holds(node, wanted) for node in self.client.api.nodes()):
                return (f"no node of the swarm has {wanted.cpu or 0} cpu, {wanted.memory or 0} "
                        f"bytes of memory and {wanted.gpus} gpus for the run ({error})")
            return None  # other runs hold them now
        limit = min(self.pending_timeout, launch.resources.timeout or self.pending_timeout)
        if waited > limit:
            why = f": {error}" if error else ""
            constraints = ", ".join(launch.placement) or "none"
            return (f"no node of the swarm took the run in {limit:g} s{why} "
                    f"(placement: {constraints})")
        return None

    def _ended(self, task: TaskState, launch: Launch) -> Exit:
        placed = Placed(task.node, "", "")
        if task.state == "complete":  # some engines leave a zero exit code out
            return Exit(task.exit_code or 0, placed=placed)
        if task.state != "failed" or task.exit_code is None:  # it did not end by itself
            why = {"shutdown": "shut the run's task down (its node was drained or left)",
                   "orphaned": "lost the run's task (its node is unreachable)"}.get(
                       task.state, f"{task.state} the run's task")
            return Exit(None, "engine", f"the swarm {why}: {task.error or 'no reason given'}",
                        placed)
        return Exit(task.exit_code, "oom" if self._oom(task, launch) else None, placed=placed)

    def _oom(self, task: TaskState, launch: Launch) -> bool:
        """Whether the kernel killed the task for its memory: the container says so where it
        is on this node; elsewhere a SIGKILL under a memory limit is taken for one."""
        import docker

        if task.container:
            try:
                state = self.client.api.inspect_container(task.container)["State"]
                return bool(state.get("OOMKilled"))
            except docker.errors.NotFound:
                pass
        return task.exit_code == 137 and bool(launch.resources.memory)


class _Follow:
    """Pass on a service's log as it comes; on leaving, what the stream had not yet
    passed on (a service's log stream runs on after its task ends)."""

    def __init__(self, client: docker.DockerClient, service: str, on_output: OnOutput) -> None:
        self.client, self.service, self.on_output = client, service, on_output
        self.passed = 0
        self.closed = False
        self.lock = threading.Lock()

    def __enter__(self) -> _Follow:
        threading.Thread(target=self._follow, daemon=True, name="runyard-swarm-log").start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # the service may be gone: nothing more to read
            whole = b"".join(self.client.api.service_logs(self.service, stdout=True, stderr=True))
            with self.lock:
                self.closed = True
                rest = whole[self.passed:]
            if rest:
                self.on_output(rest)
        self.closed = True

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # ends with the service
            for chunk in self.client.api.service_logs(self.service, follow=True, stdout=True,
                                                      stderr=True):
                with self.lock:
                    if self.closed:
                        return
                    self.passed += len(chunk)
                    self.on_output(chunk)


def _holds(node: Mapping[str, Any], wanted: Resources) -> bool:
    """Whether a ready node has, in all, the cpu, memory and gpus a run reserves."""
    if (node.get("Status") or {}).get("State") != "ready":
        return False
    has = (node.get("Description") or {}).get("Resources") or {}
    gpus = sum(spec.get("DiscreteResourceSpec", {}).get("Value", 0)
               + (1 if spec.get("NamedResourceSpec") else 0)
               for spec in has.get("GenericResources") or ()
               if (spec.get("DiscreteResourceSpec") or spec.get("NamedResourceSpec") or {})
               .get("Kind") == "gpu")
    return bool((wanted.cpu or 0) * 1e9 <= has.get("NanoCPUs", 0)
                and (wanted.memory or 0) <= has.get("MemoryBytes", 0) and wanted.gpus <= gpus)


def _resources(resources: Resources) -> Any:
    import docker

    nano = int(resources.cpu * 1e9) if resources.cpu else None
    limits = docker.types.Resources(
        cpu_limit=nano, mem_limit=resources.memory, cpu_reservation=nano,
        mem_reservation=resources.memory,
        generic_resources={"gpu": resources.gpus} if resources.gpus else None)
    limits.setdefault("Limits", {})["Pids"] = PIDS_LIMIT  # API 1.41; the SDK has no argument
    return limits


def _config(client: docker.DockerClient, launch: Launch, made: list[tuple[str, str]]) -> Any:
    """The run's spec as a Swarm config, read-only at the layout's spec path."""
    import docker

    name = f"{launch.name}-spec"
    found = client.api.create_config(name, (launch.run_dir / "spec.json").read_bytes(),
                                     labels=dict(launch.labels))["ID"]
    made.append(("config", found))
    return docker.types.ConfigReference(found, name, filename=SWARM_LAYOUT.spec,
                                        uid=str(NON_ROOT_ID), gid=str(NON_ROOT_ID), mode=0o444)


def _secrets(client: docker.DockerClient, launch: Launch, made: list[tuple[str, str]]) -> list[Any]:
    """The run's secrets as Swarm secrets: files only the task's user reads, never in its
    environment nor in the service's spec (which names them only)."""
    import docker

    references = []
    for path in sorted((launch.run_dir / "secrets").iterdir()):
        name = f"{launch.name}-{path.name}"
        found = client.api.create_secret(name, path.read_bytes(), labels=dict(launch.labels))["ID"]
        made.append(("secret", found))
        references.append(docker.types.SecretReference(
            found, name, filename=path.name, uid=str(NON_ROOT_ID), gid=str(NON_ROOT_ID),
            mode=0o400))
    return references


def run_image_context(base: str, runtime: Path, code: Path) -> bytes:
    """The build context of a run image, the same bytes for the same files (so its hash
    names the tree): a Dockerfile, the runtime and the code, all owned by root."""
    dockerfile = (f"FROM {base}\nCOPY runtime /runyard/runtime\nCOPY code /runyard/code\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", dockerfile.encode())
        for prefix, root in (("runtime", runtime), ("code", code)):
            for path in _files(root):
                if "__pycache__" in path.parts:
                    continue
                relative = path.relative_to(root).as_posix()
                info = tar.gettarinfo(str(path), f"{prefix}/{relative}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o755 if info.isdir() else (0o755 if info.mode & 0o100 else 0o644)
                if info.isfile():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return buffer.getvalue()


def _files(root: Path) -> Iterator[Path]:
    yield from sorted(root.rglob("*"))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _stream(lines: Any, what: str) -> str | None:
    """Read a build's or a push's progress to its end; the pushed digest, if any."""
    digest = None
    for line in lines:
        if "error" in line:
            detail = (line.get("errorDetail") or {}).get("message") or line["error"]
            raise RunyardError(f"{what}: {str(detail).strip()}")
        digest = (line.get("aux") or {}).get("Digest") or digest
    return digest


def _quietly(action: Any, *args: Any) -> None:
    """Remove what may be gone already (or be going)."""
    import docker

    with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
        action(*args)

